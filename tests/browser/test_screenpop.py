"""Screen-pops in a real Chromium, on both databases: a call played through the real FastAGI
component pops the caller's deal in the ringing seller's browser and not in another seller's;
a new caller's card links to the Unsorted deal the CRM opened (and offers one, with the number
filled in, only where the CRM opened none); a withheld caller's card offers nothing to create;
who answered is shown, and once another seller's answer made the deal theirs, the others' cards
no longer offer it. Pops stay calm: an ended one fades (a missed call sooner than an
answered one), at most three are stacked, and never over the header. In Indonesian a pop says
nothing of its own in English (checked against the catalog).

The team: ana (101) owns the deal of Budi Santoso, who calls; budi (102) sells too; hana is
the head.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from playwright.sync_api import expect
from sqlmodel import select

from pbx_crm.db import transaction
from pbx_crm.funnel import calls
from pbx_crm.models import Contact, ContactPhone, Deal, User
from pbx_crm.people import users
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from pbx_crm.webui.app import load_translations

SCREENPOP = Path(__file__).resolve().parents[2] / "webui" / "templates" / "_screenpop.html"
WAIT = 10.0

BUDI = "+62 812-3456-7890"
STRANGER = "+62 857-1111-2222"


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana", extensions=["101"])
        budi = make_user(session, "budi", extensions=["102"])
        make_user(session, "hana", role="head")
        caller = make_contact(session, name="Budi Santoso", phones=(BUDI,))
        own = make_contact(session, name="Sari Wulandari", phones=("+62 813-5555-6666",))
        make_deal(session, ana, title="Website redesign", contact_id=caller.id)
        make_deal(session, budi, title="ERP rollout", contact_id=own.id)


def pops(page):
    return page.locator("#screenpops .pop")


def test_a_ring_pops_the_deal_in_the_ringing_sellers_browser_only(open_page, crm, pbx):
    ana, budi = open_page("ana"), open_page("budi")
    call = pbx.trunk_call(BUDI, "Budi")
    pbx.incoming(call)
    card = pops(ana)
    card.first.wait_for()
    assert card.count() == 1
    assert card.locator(".pop-deal").inner_text() == "Website redesign"
    assert card.locator(".pop-deal").get_attribute("href").startswith("/deals/")
    assert "Budi Santoso" in card.inner_text()
    # budi's own caller rings next: his first pop is that one, so ana's never reached him.
    pbx.incoming(pbx.trunk_call("+62 813-5555-6666", "Sari"))
    pops(budi).first.wait_for()
    assert pops(budi).count() == 1
    assert pops(budi).locator(".pop-deal").inner_text() == "ERP rollout"
    # ana answers: her card says so; the call ends and the card can be dismissed.
    pbx.answered(call, "101")
    ana.locator('#screenpops .pop[data-state="answered"]').wait_for()
    assert "Answered by Ana" in card.inner_text()
    pbx.hangup(call, "ANSWER", talk=5)
    ana.locator("#screenpops .pop .pop-dismiss").click()
    card.first.wait_for(state="detached")
    assert pops(budi).count() == 1  # nothing of ana's call reached budi


def test_a_pop_survives_moving_to_another_page(open_page, crm, pbx):
    ana = open_page("ana")
    pbx.incoming(pbx.trunk_call(BUDI, "Budi"))
    pops(ana).first.wait_for()
    ana.click("a#new-deal")
    ana.wait_for_url("**/deals/new")
    pops(ana).first.wait_for()
    assert pops(ana).count() == 1


def test_a_new_callers_card_offers_a_deal_with_the_number_filled_in(open_page, crm, pbx):
    pbx.dispatcher.settings = dataclasses.replace(pbx.dispatcher.settings,
                                                  unknown_callers_create_deals=False)
    hana = open_page("hana")
    pbx.incoming(pbx.trunk_call(STRANGER, "Stranger"))
    card = pops(hana)
    card.first.wait_for()
    assert "New caller" in card.inner_text()
    hana.click("#screenpops .pop-create")
    hana.wait_for_url("**/deals/new?**")
    assert hana.input_value("input[name=phone]") == "+6285711112222"
    assert hana.input_value("input[name=contact_name]") == "Stranger"
    hana.click("#new-deal-form button[type=submit]")
    hana.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
    assert "Stranger" in hana.locator("main").inner_text()
    assert "Call from +6285711112222" in hana.locator("main").inner_text()


def test_markup_in_a_pop_stays_text(open_page, crm, engine):
    from pbx_crm.funnel import events

    ana = open_page("ana")
    with transaction(engine, read_only=True) as session:
        ana_id = session.exec(select(User.id).where(User.login == "ana")).one()
    name = '<img src=x onerror="window.pwned=1">'
    with transaction(engine) as session:
        events.emit(session, events.RINGING, target_user_id=ana_id, linkedid="x1",
                    payload={"linkedid": "x1", "caller": "+6285700000000", "status": "NEW",
                             "caller_name": name, "deal_id": None})
    card = pops(ana)
    card.first.wait_for()
    assert name in card.inner_text()
    assert card.locator("img").count() == 0
    assert ana.evaluate("window.pwned") is None


def test_signed_out_in_another_tab_the_pops_stop_and_the_page_offers_to_sign_in(open_page, crm,
                                                                                 pbx):
    board = open_page("ana")
    pbx.incoming(pbx.trunk_call(BUDI, "Budi"))
    pops(board).first.wait_for()
    other_tab = board.context.new_page()
    other_tab.goto("/board")
    other_tab.click("form.logout button")
    other_tab.wait_for_url("**/login")
    pbx.incoming(pbx.trunk_call(BUDI, "Budi"))
    note = board.locator("#screenpops .pop-stopped")
    note.wait_for()
    assert "You were signed out" in note.inner_text()
    assert pops(board).count() == 1  # the note only: the open card went with the session
    note.locator("a").click()
    board.wait_for_url("**/login?next=%2Fboard")


# --- pops that stay calm ----------------------------------------------------------------------


def pop_of(page, call):
    return page.locator(f'#screenpops .pop[data-linkedid="{call.uniqueid}"]')


def shown_calls(page) -> set[str]:
    return set(pops(page).evaluate_all("cards => cards.map(card => card.dataset.linkedid)"))


@contextmanager
def ami_listening(engine, settings, server):
    """The AMI listener on the emulator's AMI server: it pops the phones that ring."""
    ami = settings.replace(ami_host=server.host, ami_port=server.port, ami_username="crm",
                           ami_secret="secret")
    listener = AmiListener(engine, ami, client_factory=partial(
        AmiClient, reconnect_delay=0.01, connect_timeout=WAIT, action_timeout=WAIT))
    listener.start()
    try:
        assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
        yield listener
    finally:
        listener.stop()


def test_ended_pops_fade_a_missed_call_sooner_than_an_answered_one(open_page, crm, pbx):
    ana = open_page("ana")
    ana.clock.install()  # the page's timers, moved on below instead of waited for
    ana.reload()
    talked, missed = pbx.trunk_call(BUDI, "Budi"), pbx.trunk_call(BUDI, "Budi")
    pbx.incoming(talked)
    pbx.answered(talked, "101")
    pbx.incoming(missed)
    expect(pops(ana)).to_have_count(2)
    pbx.hangup(missed, "NOANSWER")
    pbx.hangup(talked, "ANSWER", talk=3)
    expect(pop_of(ana, talked)).to_have_attribute("data-state", "ended")
    expect(pop_of(ana, missed)).to_have_attribute("data-state", "ended")

    ana.clock.run_for(3_000)  # a missed call's pop stays 4 s after its end, then fades
    assert pop_of(ana, missed).count() == 1
    ana.clock.run_for(2_000)
    expect(pop_of(ana, missed)).to_have_count(0)
    assert pop_of(ana, talked).count() == 1  # an answered call's stays 8 s
    ana.clock.run_for(4_000)
    expect(pop_of(ana, talked)).to_have_count(0)
    ana.reload()  # gone for good: not back from the tab's storage
    expect(pops(ana)).to_have_count(0)


def test_at_most_three_pops_and_the_oldest_ended_one_goes_first(open_page, crm, pbx):
    hana = open_page("hana")
    first, second, third, fourth, fifth = (pbx.trunk_call(f"+62 857-1111-222{n}", "")
                                           for n in range(1, 6))
    for call in (first, second, third):
        pbx.incoming(call)
    expect(pops(hana)).to_have_count(3)
    pbx.hangup(second, "NOANSWER")
    expect(pop_of(hana, second)).to_have_attribute("data-state", "ended")

    pbx.incoming(fourth)  # the ended one makes room, though the first is older
    expect(pop_of(hana, fourth)).to_have_count(1)
    assert shown_calls(hana) == {first.uniqueid, third.uniqueid, fourth.uniqueid}
    pbx.incoming(fifth)  # all ringing: the oldest makes room
    expect(pop_of(hana, fifth)).to_have_count(1)
    assert shown_calls(hana) == {third.uniqueid, fourth.uniqueid, fifth.uniqueid}


def test_pops_stay_below_the_header_and_sign_out_stays_clickable(open_page, crm, pbx):
    hana = open_page("hana", viewport={"width": 1000, "height": 520})
    for n in range(1, 4):
        pbx.incoming(pbx.trunk_call(f"+62 857-1111-222{n}", f"Caller {n}"))
    expect(pops(hana)).to_have_count(3)
    header = hana.locator("header.top").bounding_box()
    box = hana.locator("#screenpops").bounding_box()
    assert box["y"] >= header["y"] + header["height"]
    sign_out = hana.locator("form.logout button")
    at = sign_out.bounding_box()
    assert hana.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('form.logout')"
                         " !== null", [at["x"] + at["width"] / 2, at["y"] + at["height"] / 2])
    sign_out.click()
    hana.wait_for_url("**/login")


def page_wording() -> set[str]:
    """The English texts of the pop card's own (the data it shows aside)."""
    return {message for _, message, _, _ in extract_from_file(
        "jinja2", str(SCREENPOP), keywords={"_": None},
        options={"extensions": "jinja2.ext.i18n"})}


def english_left(text: str, language: str) -> list[str]:
    """The pop's English texts (their fixed parts, around any value) found in ``text``
    although ``language``'s catalog says them otherwise."""
    catalog = load_translations(language)
    left = []
    for message in page_wording():
        if catalog.gettext(message) == message:
            continue
        for part in re.split(r"%\(\w+\)s", message):
            if len(part.strip()) >= 6 and part.strip() in text:
                left.append(message)
    return sorted(left)


def speaking(engine, login: str, language: str):
    with transaction(engine) as session:
        user = session.exec(select(User).where(User.login == login)).one()
        users.set_language(session, ADMIN, user.id, language)
    return load_translations(language).gettext


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_new_callers_pop_links_to_the_unsorted_deal_the_crm_opened(open_page, crm, pbx,
                                                                     engine, language):
    say = speaking(engine, "hana", language)
    hana = open_page("hana")
    call = pbx.trunk_call(STRANGER, "")
    pbx.incoming(call)
    card = pop_of(hana, call)
    expect(card.locator(".pop-deal")).to_have_text(say("New deal in Unsorted"))
    assert card.locator(".pop-create").count() == 0
    assert say("New caller") in card.inner_text()
    assert card.inner_text().count("+6285711112222") == 1  # the number, once
    assert english_left(card.inner_text(), language) == []

    card.locator(".pop-deal").click()
    hana.wait_for_url("**/deals/*")
    with transaction(engine, read_only=True) as session:
        [deal] = session.exec(select(Deal).join(Contact).join(ContactPhone).where(
            ContactPhone.e164 == "+6285711112222")).all()
        assert hana.url.endswith(f"/deals/{deal.id}")
        assert calls.find_call(session, call.uniqueid).deal_id == deal.id
    assert hana.locator("#deal-stage").inner_text() == say("Unsorted")


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_withheld_callers_pop_offers_nothing_to_create(open_page, crm, pbx, engine,
                                                         language):
    say = speaking(engine, "hana", language)
    hana = open_page("hana")
    call = pbx.trunk_call("anonymous", "Anonymous", callingpres=35)
    pbx.incoming(call)
    card = pop_of(hana, call)
    expect(card.locator(".pop-caller")).to_have_text(say("Number withheld"))
    assert card.locator(".pop-create").count() == 0
    assert card.locator(".pop-deal").count() == 0
    assert "anonymous" not in card.inner_text().lower()
    pbx.hangup(call, "NOANSWER")
    expect(card).to_have_attribute("data-state", "ended")
    assert card.locator(".pop-create").count() == 0
    assert english_left(card.inner_text(), language) == []


def test_a_phone_ringing_before_the_call_is_recorded_gets_the_new_deal_not_a_create_button(
        open_page, crm, engine, settings, server):
    """The dialplan rings the phones as soon as the lookup answered: ana's pop (from the AMI
    listener) may come before the CRM recorded the call and opened the Unsorted deal. It
    names the deal once it is there, and offers nothing to create meanwhile."""
    with ami_listening(engine, settings, server):
        ana = open_page("ana")
        ringing = server.scenarios.ring_pjsip(STRANGER, "2150001", ["101"],
                                              stop_after="ringing")
        server.replay(ringing.data)
        card = ana.locator(f'#screenpops .pop[data-linkedid="{ringing.linkedid}"]')
        expect(card.locator(".pop-caller")).to_have_text("+6285711112222")
        assert card.locator(".pop-create").count() == 0

        with transaction(engine) as session:  # the incoming hook's recording, a moment late
            lookup = calls.record_inbound_call(
                session, uniqueid=ringing.linkedid, linkedid=ringing.linkedid,
                caller=classify_caller(STRANGER, region="ID",
                                       extensions=ExtensionPlan.parse("100-999")),
                caller_name=None, did="2150001", create_deals=True, region="ID")
        link = card.locator(".pop-deal")
        expect(link).to_have_attribute("href", f"/deals/{lookup.deal_id}")
        assert card.locator(".pop-create").count() == 0
        assert "New caller" in card.inner_text()


def test_once_another_seller_answers_a_ring_group_pop_stops_offering_her_deal(
        open_page, crm, engine, settings, server, pbx):
    """A new caller rings ana, budi and citra at once: each pop links to the Unsorted deal the
    CRM opened and offers a task for it. citra answers, so the deal is hers: ana's pop says
    who answered, and no longer links to the deal (a 403) nor offers a task (refused). The
    head may open every deal: her pop keeps it."""
    with transaction(engine) as session:
        make_user(session, "citra", extensions=["103"])
    with ami_listening(engine, settings, server):
        ana, hana = open_page("ana"), open_page("hana")
        call = pbx.trunk_call(STRANGER, "")
        pbx.incoming(call)
        group = server.scenarios.ring_pjsip(STRANGER, call.extension, ["101", "102", "103"],
                                            stop_after="ringing",
                                            inbound=(call.name, call.uniqueid))
        server.replay(group.data)
        card = pop_of(ana, call)
        expect(card.locator(".pop-deal")).to_have_text("New deal in Unsorted")
        card.locator(".pop-task-open").click()
        card.locator(".pop-task-title").fill("Send the price list")

        pbx.answered(call, "103")
        expect(card.locator(".pop-state")).to_have_text("Answered by Citra")
        expect(card.locator(".pop-deal")).to_have_count(0)
        assert card.locator(".pop-task").count() == 0
        assert card.locator(".pop-note").inner_text() == (
            "The caller has a deal with another seller.")
        head = pop_of(hana, call)
        expect(head.locator(".pop-state")).to_have_text("Answered by Citra")
        assert head.locator(".pop-deal").count() == 1

        pbx.hangup(call, "ANSWER", talk=5)
        expect(card).to_have_attribute("data-state", "ended")
        assert card.locator(".pop-deal").count() == 0
        assert card.locator(".pop-task").count() == 0
