"""The contact's page in a real Chromium, on both databases and in both languages: a seller
opens a caller's contact from the deal card, names it (the number-titled deal takes the
name), and merges it with the duplicate the phone book already had; in Indonesian, nothing
of the page's own wording is left in English (checked against the catalogs).

The team: ana sells, hana is the head. +62 811-3770-0991 called without a caller name: the
PBX made an Unsorted deal "Call from +6281137700991". The phone book has the same customer
as "Budi Santoso" (with the same mobile and the office number), in a deal of ana's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from playwright.sync_api import expect

from factories import ADMIN, PBX, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.db import transaction
from pbx_crm.funnel import deals
from pbx_crm.people import users
from pbx_crm.webui.app import load_translations

WEBUI = Path(__file__).resolve().parents[2] / "webui"
CALLER = "+6281137700991"


def page_wording() -> set[str]:
    """The English texts the contact's pages say themselves (not the data they show)."""
    found = set()
    for path, method in ((WEBUI / "templates" / "contact.html", "jinja2"),
                         (WEBUI / "templates" / "contact_merge.html", "jinja2"),
                         (WEBUI / "routes_contacts.py", "python")):
        for _, message, _, _ in extract_from_file(
                method, str(path), keywords={"_": None, "gettext": None},
                options={"extensions": "jinja2.ext.i18n"}):
            found.add(message)
    return found


def english_left(text: str, language: str) -> list[str]:
    """Those of the pages' English texts (their fixed parts, around any value) that show in
    ``text`` although ``language``'s catalog says them otherwise."""
    catalog = load_translations(language)
    left = []
    for message in page_wording():
        if catalog.gettext(message) == message:
            continue  # the same in both languages, or English itself
        for part in re.split(r"“?%\(\w+\)[sd]”?", message):
            if len(part.strip()) >= 6 and part.strip() in text:
                left.append(message)
    return sorted(left)


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        make_user(session, "hana", role="head")
        call = deals.deal_for_caller(session, PBX, e164=CALLER, caller_name="", region="ID",
                                     create=True)
        duplicate = make_contact(session, name="Budi Santoso",
                                 phones=["0811 3770 0991", "(021) 555-0123"])
        make_deal(session, ana, title="Website redesign", contact_id=duplicate.id)
    return {"ana": ana, "deal": call.deal, "contact_id": call.contact_id}


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_seller_names_a_callers_contact_from_the_deal_card_and_merges_its_duplicate(
        open_page, crm, engine, language):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    say = load_translations(language).gettext

    def call_from(caller):  # the title the PBX gave, in ana's language
        return say("Call from %(number)s") % {"number": caller}

    page = open_page("ana")
    problems = []
    # The refused form answers 400, which Chromium logs as a failed load: not a problem.
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and "status of 400" not in message.text else None)

    page.goto(f"/deals/{crm['deal'].id}")
    expect(page.locator("#deal-title")).to_have_text(call_from(CALLER))
    page.click("#contact-link")
    page.wait_for_url(f"**/contacts/{crm['contact_id']}")
    expect(page.locator("#contact-name")).to_have_text(CALLER)
    main = page.locator("main")
    assert english_left(main.inner_text(), language) == []

    # A name left empty is refused next to the field, in ana's language.
    page.fill("#contact-form input[name=name]", "")
    page.click("#contact-form button[type=submit]")
    expect(page.locator("#name-error")).to_have_text(say("A contact needs a name."))
    page.fill("#contact-form input[name=name]", "Budi Santoso")
    page.fill("#contact-form input[name=company]", "PT Maju")
    page.click("#contact-form button[type=submit]")
    expect(page.locator("#contact-name")).to_have_text("Budi Santoso")
    expect(page.locator("#contact-deals")).to_contain_text(call_from("Budi Santoso"))

    # The phone book's "Budi Santoso" is the same customer: found by number, then merged.
    page.fill("#merge-search input[name=q]", "0811-3770-0991")
    page.click("#merge-search button[type=submit]")
    expect(page.locator("#merge-candidates .merge-pick")).to_have_text(["Budi Santoso"])
    page.fill("#merge-search input[name=q]", "santoso")
    page.click("#merge-search button[type=submit]")
    page.click("#merge-candidates .merge-pick")
    expect(page.locator("#merge-deals")).to_have_text("1")
    assert english_left(main.inner_text(), language) == []
    page.click("#merge-confirm")

    page.wait_for_url(f"**/contacts/{crm['contact_id']}?merged=1")
    expect(page.locator(".message.notice")).to_have_text(say("The two contacts are one now."))
    expect(page.locator("#contact-deals tbody tr")).to_have_count(2)
    expect(page.locator("#contact-deals")).to_contain_text("Website redesign")
    expect(page.locator("#contact-phones")).to_contain_text("(021) 555-0123")
    assert english_left(main.inner_text(), language) == []
    assert problems == []  # nothing the Content-Security-Policy refused, no script error

    page.click(f"#contact-deals a[href='/deals/{crm['deal'].id}']")
    expect(page.locator("#deal-title")).to_have_text(call_from("Budi Santoso"))
    expect(page.locator("#contact-link")).to_have_text("Budi Santoso")


@pytest.mark.parametrize("language", ["en", "id"])
def test_on_a_phone_the_contact_page_fits_its_width(open_page, crm, engine, language):
    """At 390 px the deals and calls tables scroll inside their panel; the page itself does
    not scroll sideways."""
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    page = open_page("ana", viewport={"width": 390, "height": 844})
    page.goto(f"/contacts/{crm['contact_id']}")
    expect(page.locator("#contact-calls")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
