"""A blind transfer in a real Chromium, on both databases, in English and in Indonesian.

ana (101) and budi (102) sell, each with the board open. A caller the CRM does not know
rings; the emulator plays the call as Asterisk 22 does (capture 13: ``BlindTransfer``, then
the caller's own channel dials budi) through its AMI server into the CRM's listener, and the
dialplan's hooks through the real FastAGI component:

- ana's phone rings and she answers: her pop says she answered;
- ana hands the caller to budi: budi's phone rings and he answers; the caller's card pops in
  budi's browser, answered by him, and ana's card ends;
- the call over, the deal (budi's now: it was waiting in Unsorted) says on its timeline that
  the call went from ana to budi, and how long each of them talked.
"""

from __future__ import annotations


import pytest
from playwright.sync_api import expect
from telephony import eventually
from test_sellers_day import english_left
from webtools import WebServer

from factories import ADMIN, make_pipeline, make_user
from pbx_crm.db import transaction
from pbx_crm.funnel import call_legs, calls
from pbx_crm.people import users
from pbx_crm.simulator.ami_calls import ScenarioBuilder
from pbx_crm.simulator.pbx import answering_leg
from pbx_crm.simulator.transfer_calls import blind_transfer
from pbx_crm.webui.app import load_translations

CALLER, CALLER_E164 = "+62 857-4400-1234", "+6285744001234"
DID = "2150001"
WAIT = 10.0


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        return {login: make_user(session, login, extensions=[extension])
                for login, extension in [("ana", "101"), ("budi", "102")]}


@pytest.fixture
def web(ami, engine):
    with WebServer(ami, engine) as web:
        yield web


def pop(page):
    return page.locator("#screenpops .pop")


def told(say, seller: str, leg) -> str:
    """A leg of the call's story as the catalog words it, with the leg's own figures."""
    def seconds(value) -> str:
        return say("%(seconds)s s") % {"seconds": round(value)}
    answered = say("answered after %(ring)s") % {"ring": seconds(leg.ring_seconds)}
    return say("%(seller)s: %(what)s") % {"seller": seller, "what": say(
        "%(answer)s, talked %(talk)s") % {"answer": answered, "talk": seconds(leg.talk_seconds)}}


@pytest.mark.parametrize("language", ["en", "id"])
def test_ana_hands_a_caller_to_budi_his_browser_pops_hers_ends_the_deal_tells_who_talked(
        open_page, crm, engine, pbx, server, listener, language):
    with transaction(engine) as session:
        for seller in crm.values():
            users.set_language(session, ADMIN, seller.user_id, language)
    say = load_translations(language).gettext
    ana, budi = open_page("ana"), open_page("budi")
    problems = []
    for page in (ana, budi):
        page.on("pageerror", lambda error: problems.append(str(error)))

    # The caller comes in: the lookup opens a deal in Unsorted; ana's phone rings.
    inbound = pbx.trunk_call(CALLER, "Rudi", did=DID)
    played = blind_transfer(ScenarioBuilder(epoch=1796600000), CALLER, DID, "101", "102",
                            caller_name="Rudi", inbound=(inbound.name, inbound.uniqueid))
    assert pbx.incoming(inbound).variables["CRM_STATUS"] == calls.NEW
    deal_id = deal_of(engine, inbound.uniqueid)
    server.replay(played.phases["ringing"])
    expect(pop(ana)).to_have_count(1)

    # ana picks up (Dial's U() hook on her leg): her card says she answered.
    server.replay(played.phases["answered"])
    pbx.answered(inbound, leg=answering_leg(inbound, *played.answered_leg, did=DID))
    server.replay(played.phases["talk"])
    expect(pop(ana)).to_have_attribute("data-state", "answered")
    expect(pop(ana)).to_contain_text(say("Answered by %(name)s") % {"name": "Ana"})
    assert english_left(ana, language) == []

    # ana transfers the caller to budi, whose phone rings; he answers.
    server.replay(played.phases["transferred"])
    expect(pop(budi)).to_have_attribute("data-state", "ringing")
    server.replay(played.phases["talk-2"])
    expect(pop(budi)).to_have_attribute("data-state", "answered")
    expect(pop(budi)).to_contain_text(say("Answered by %(name)s") % {"name": "Budi"})
    expect(pop(budi).locator(".pop-deal")).to_have_attribute("href", f"/deals/{deal_id}")
    expect(pop(ana)).to_have_attribute("data-state", "ended")
    assert english_left(budi, language) == []

    # budi hangs up; the hangup handler runs, the caller's channel goes.
    server.replay(played.phases["hangup"])
    pbx.hangup(inbound, played.dialstatus, talk=played.answered_time)
    server.replay(played.phases["gone"])
    eventually(lambda: len(legs_of(engine, inbound.uniqueid)) == 2, timeout=WAIT,
               what="the call's legs written")

    # The deal, budi's now, tells the transfer and who talked how long.
    budi.goto(f"/deals/{deal_id}")
    expect(budi.locator("#deal-owner")).to_have_text("Budi")
    expect(budi.locator("ol.timeline")).to_contain_text(
        say("Call transferred from %(from_seller)s to %(to_seller)s")
        % {"from_seller": "Ana", "to_seller": "Budi"})
    anas, budis = legs_of(engine, inbound.uniqueid)  # as the call tracker timed them
    expect(budi.locator(".call-story .call-legs")).to_have_text(
        f"{told(say, 'Ana', anas)} · {told(say, 'Budi', budis)}")
    assert english_left(budi, language) == []
    assert problems == []


def deal_of(engine, uniqueid: str) -> int:
    with transaction(engine, read_only=True) as session:
        return calls.find_call(session, uniqueid).deal_id


def legs_of(engine, uniqueid: str) -> list:
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, uniqueid)
        return call_legs.legs_of(session, call.id) if call else []
