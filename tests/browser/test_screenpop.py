"""Screen-pops in a real Chromium, on both databases: a call played through the real FastAGI
component pops the caller's deal in the ringing seller's browser and not in another seller's;
a new caller's card offers a deal with the number filled in; who answered is shown.

The team: ana (101) owns the deal of Budi Santoso, who calls; budi (102) sells too; hana is
the head.
"""

from __future__ import annotations

import dataclasses

import pytest
from factories import make_contact, make_deal, make_pipeline, make_user
from sqlmodel import select
from telephony import Pbx

from pbx_crm.db import transaction
from pbx_crm.models import User

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


@pytest.fixture
def pbx(engine, tmp_path):
    pbx = Pbx(engine, tmp_path / "pbx")
    yield pbx
    pbx.stop()


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
