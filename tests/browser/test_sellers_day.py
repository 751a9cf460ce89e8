"""A seller's day in a real Chromium, on both databases, in English and in Indonesian.

ana sells (extension 101), hana is the head. Calls are played through the real FastAGI
component by the emulator:

- Siti, ana's customer, rings twice while ana is away: the pops come and go by themselves,
  and the missed calls leave one callback task, not two;
- ana finds it on the Tasks page, due, and calls Siti back from her deal (click-to-call: the
  phone system's AMI is the emulator's server); Siti picks up, and the task is done by
  itself;
- a new number rings and ana answers: the CRM opened a deal for it, now hers; ana renames
  the caller's contact from the deal (the deal takes the name) and merges it with the
  customer the phone book already had;
- hana moves one of ana's deals meanwhile; ana drags her stale card and is told so on the
  card, in view.

In Indonesian no page ana meets shows English text the catalog translates (every message of
the catalog, cut at its placeholders, looked for in the page).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import expect
from test_call_durations import seller_calls_out
from webtools import WebServer

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user, stages_by_name
from pbx_crm.db import transaction
from pbx_crm.people import users
from pbx_crm.webui.app import load_translations

CATALOG = (Path(__file__).resolve().parents[2] / "webui" / "locale" / "id" / "LC_MESSAGES"
           / "messages.po")
SITI, SITI_E164 = "+62 811-2000-3000", "+6281120003000"
RUDI, RUDI_E164 = "+62 813-7700-9911", "+6281377009911"
MISSED_FADES_S = 15  # a missed call's pop fades after a few seconds


def english_phrases() -> list[str]:
    """The fixed parts (between placeholders) of every message the Indonesian catalog says
    otherwise, long enough to be words of their own."""
    with CATALOG.open("rb") as file:
        catalog = read_po(file, locale="id")
    phrases = set()
    for message in catalog:
        if not message.id or not message.string:
            continue
        english = message.id if isinstance(message.id, tuple) else (message.id,)
        translated = " ".join(message.string if isinstance(message.string, tuple)
                              else (message.string,))
        for text in english:
            for part in re.split(r"%\(\w+\)[sd]|%[sd]", text):
                part = part.strip(" .,:;()“”\"'·-")
                if len(part) >= 8 and " " in part and part not in translated:
                    phrases.add(part)
    return sorted(phrases)


def english_left(page, language: str) -> list[str]:
    if language != "id":
        return []
    shown = page.locator("body").inner_text()
    return [phrase for phrase in english_phrases() if phrase in shown]


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        pipeline = make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        make_user(session, "hana", role="head")
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI,))
        make_deal(session, ana, title="Office fit-out", contact_id=siti.id)
        # The phone book knows Rudi by his office number only.
        rudi = make_contact(session, name="Rudi Hartono", phones=("(021) 555-0123",))
        make_deal(session, ana, title="Warehouse racks", contact_id=rudi.id)
        other = make_contact(session, name="Dewi Lestari", phones=("+62 812-9000-1000",))
        website = make_deal(session, ana, title="Website redesign", contact_id=other.id)
        stage = stages_by_name(session, pipeline)
    return {"ana": ana, "website": website, "stage": stage}


@pytest.fixture
def web(ami, engine):
    with WebServer(ami, engine) as web:
        yield web




@pytest.mark.parametrize("language", ["en", "id"])
def test_a_sellers_day(open_page, crm, engine, pbx, server, listener, language):
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm["ana"].user_id, language)
    say = load_translations(language)
    ana = open_page("ana")
    problems = []
    ana.on("pageerror", lambda error: problems.append(str(error)))
    ana.on("console", lambda message: problems.append(message.text)
           if message.type == "error" and "status of 409" not in message.text else None)
    pops = ana.locator("#screenpops .pop")
    assert english_left(ana, language) == []  # the board

    # Siti rings twice while ana is away: pops come and go by themselves.
    pbx.call(pbx.trunk_call(SITI, "Siti"), answered_by=None, dialstatus="NOANSWER")
    pops.first.wait_for()
    assert english_left(ana, language) == []  # a missed call's pop
    pbx.call(pbx.trunk_call(SITI, "Siti"), answered_by=None, dialstatus="NOANSWER")
    expect(pops).to_have_count(0, timeout=MISSED_FADES_S * 1000)

    # One callback task for both calls, due, on the Tasks page.
    ana.click("#menu-tasks")
    ana.wait_for_url("**/tasks")
    callback = ana.locator("li.task", has_text=SITI_E164)
    expect(callback).to_have_count(1)
    expect(callback.locator(".task-title")).to_have_text(say.ngettext(
        "Call back %(number)s (%(num)d missed call)",
        "Call back %(number)s (%(num)d missed calls)", 2) % {"number": SITI_E164, "num": 2})
    expect(ana.locator("#tasks-done li.task", has_text=SITI_E164)).to_have_count(0)
    assert english_left(ana, language) == []

    # ana calls Siti back from the deal; Siti picks up: the customer is reached, task done.
    callback.locator("a.task-deal").click()
    ana.wait_for_url("**/deals/*")
    ana.locator("ul.phones form button.call").first.click()
    expect(ana.locator("ul.phones .call-status")).to_contain_text("+6281120003000")
    assert english_left(ana, language) == []  # the deal page, the call under way
    [originate] = server.originates
    server.replay(seller_calls_out(originate["ChannelId"], dial_status="ANSWER", billed=40))
    done = ana.locator("#tasks-done li.task", has_text=SITI_E164)
    for _ in range(40):  # the call's end is written once its grace is over
        assert listener.wait_idle(10)
        ana.goto("/tasks")
        if done.count():
            break
        ana.wait_for_timeout(250)
    expect(done).to_have_count(1)
    expect(ana.locator("#tasks-overdue li.task, #tasks-today li.task, #tasks-upcoming li.task")
           ).to_have_count(0)

    # A new number rings and ana answers: the CRM opened a deal for it, now hers.
    pbx.call(pbx.trunk_call(RUDI, None), answered_by="101", talk=65)
    ana.goto("/board")
    ana.locator("li.card a.title", has_text=RUDI_E164).click()
    ana.wait_for_url("**/deals/*")
    call_from = say.gettext("Call from %(number)s")  # the title the PBX gave, in her words
    expect(ana.locator("#deal-title")).to_have_text(call_from % {"number": RUDI_E164})
    assert english_left(ana, language) == []  # the deal, its call on the timeline

    # ana names the caller from the deal; the deal takes the name; then the duplicate goes.
    ana.click("#contact-link")
    ana.wait_for_url("**/contacts/*")
    ana.fill("#contact-form input[name=name]", "Rudi Hartono")
    ana.click("#contact-form button[type=submit]")
    expect(ana.locator("#contact-name")).to_have_text("Rudi Hartono")
    expect(ana.locator("#contact-deals")).to_contain_text(call_from % {"number": "Rudi Hartono"})
    ana.fill("#merge-search input[name=q]", "Hartono")
    ana.click("#merge-search button[type=submit]")
    ana.click("#merge-candidates .merge-pick")
    assert english_left(ana, language) == []  # the merge's confirmation
    ana.click("#merge-confirm")
    ana.wait_for_url("**/contacts/*?merged=1")
    expect(ana.locator("#contact-deals tbody tr")).to_have_count(2)
    expect(ana.locator("#contact-phones")).to_contain_text("(021) 555-0123")
    assert english_left(ana, language) == []

    # hana moves "Website redesign" meanwhile; ana's stale drag is refused on the card.
    deal, stage = crm["website"], crm["stage"]
    ana.goto("/board")
    hana = open_page("hana")
    hana.goto(f"/deals/{deal.id}")
    hana.select_option("#stage-select", str(stage["Closing"].id))
    hana.click("#stage-form button[type=submit]")
    expect(hana.locator("#deal-stage")).to_have_text("Closing")
    card = ana.locator(f"#deal-{deal.id}")
    with ana.expect_response(f"**/deals/{deal.id}/move") as refused:
        card.drag_to(ana.locator(f'ul.cards[data-stage-id="{stage["Commercial proposal"].id}"]'))
    assert refused.value.status == 409
    note = card.locator(".card-refusal")
    expect(note).to_be_in_viewport()
    assert not re.search(r"version|versi", note.inner_text())
    assert english_left(ana, language) == []
    assert problems == []  # no script error, nothing the Content-Security-Policy refused
