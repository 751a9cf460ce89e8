"""A call's legs on the deal page and the contact page, over real HTTP, on both databases.

ana (101, a desk phone 101a and a softphone 101b), budi (102) and citra (103) sell; hana is
the head. Calls are written through the services as the AMI listener writes them (the answer,
the hangup, the transfer, the legs at the call's end). A caller who went through the sales
queue, rang several sellers, or was handed from one seller to another shows under the call's
line how it went: the queue and the wait, each seller rung with how long and how it ended (on
which device, for ana's second one), who talked how long, by name, in the reader's language.
A call that rang one seller's phone shows as it always did. The legs of all the page's calls
are read at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from sqlalchemy import event

from factories import ADMIN, at, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.db import transaction
from pbx_crm.funnel import call_legs, calls, transfers
from pbx_crm.people import users
from pbx_crm.rules.phones import ExtensionPlan, classify_caller
from webtools import signed_in

SITI = "+62 811-2000-3000"


@dataclass(frozen=True)
class Leg:
    """What the call tracker's ``Leg`` reads (the services import nothing of telephony)."""

    extension: str
    device: str
    outcome: str
    ring_seconds: float | None
    answered: bool = False


@pytest.fixture
def crm(engine):
    with transaction(engine) as session:
        make_pipeline(session)
        team = {login: make_user(session, login, extensions=extensions, role=role)
                for login, extensions, role in [("ana", ["101"], "seller"),
                                                ("budi", ["102"], "seller"),
                                                ("citra", ["103"], "seller"),
                                                ("hana", [], "head")]}
        users.set_devices(session, ADMIN, team["ana"].user_id, "101", ["101a", "101b"])
        siti = make_contact(session, name="Siti Rahmawati", phones=(SITI,))
        deal = make_deal(session, team["ana"], title="Office fit-out", contact_id=siti.id)
    return {"deal": deal.id, "contact": siti.id, **team}


def ring(session, uniqueid: str, minute: int):
    return calls.record_inbound_call(
        session, uniqueid=uniqueid, linkedid=uniqueid,
        caller=classify_caller(SITI, region="ID", extensions=ExtensionPlan.parse("100-199")),
        caller_name="Siti", did="2150001", create_deals=True, region="ID", now=at(minute))


def queue_call(engine, uniqueid: str, minute: int):
    """Siti waits 6 s in the sales queue; ana and citra ring 3 s, budi answers and talks."""
    with transaction(engine) as session:
        ring(session, uniqueid, minute)
        calls.record_answer(session, uniqueid=uniqueid, extension="102", now=at(minute))
        call = calls.record_hangup(session, uniqueid=uniqueid, dial_status="",
                                   hangup_cause=16, now=at(minute + 1))
        call_legs.record_call_end(
            session, call, legs=[Leg("101", "101a", "cancelled", 3.0),
                                 Leg("102", "102", "answered", 3.0, True),
                                 Leg("103", "103", "cancelled", 3.0)],
            talk_by=[("102", 40)], queue="sales", hold_seconds=6, talk_seconds=40)


def transferred_call(engine, uniqueid: str, minute: int):
    """ana answers on her softphone, talks 65 s and hands Siti to budi, who talks 30 s;
    a phone that is nobody's (600) rang first and was not answered."""
    with transaction(engine) as session:
        ring(session, uniqueid, minute)
        call = calls.record_answer(session, uniqueid=uniqueid, extension="101b",
                                   now=at(minute))
        transfers.record_transfer(session, call, from_extension="101", to_extension="102",
                                  kind=transfers.BLIND, now=at(minute + 1))
        call = calls.record_hangup(session, uniqueid=uniqueid, dial_status="ANSWER",
                                   hangup_cause=16, answered_seconds=95, now=at(minute + 2))
        call_legs.record_call_end(
            session, call, legs=[Leg("600", "600", "noanswer", 15.2),
                                 Leg("101", "101b", "answered", 2.0, True),
                                 Leg("102", "102", "answered", 4.0, True)],
            talk_by=[("101", 65), ("102", 30)])


def plain_call(engine, uniqueid: str, minute: int):
    """ana's own phone rings, she answers and talks: one leg."""
    with transaction(engine) as session:
        ring(session, uniqueid, minute)
        calls.record_answer(session, uniqueid=uniqueid, extension="101", now=at(minute))
        call = calls.record_hangup(session, uniqueid=uniqueid, dial_status="ANSWER",
                                   hangup_cause=16, answered_seconds=20, now=at(minute + 1))
        call_legs.record_call_end(session, call,
                                  legs=[Leg("101", "101", "answered", 5.0, True)],
                                  talk_by=[("101", 20)])


class _Stories(HTMLParser):
    """The call stories of a page, each as its lines read (the queue's, then the legs')."""

    def __init__(self, page: str):
        super().__init__()
        self.found: list[list[str]] = []
        self.spans: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "span":
            self.spans.append(dict(attrs).get("class") or "")
            if self.spans[-1] == "call-story":
                self.found.append([])
            elif self.spans[-1] in ("call-queue", "call-legs"):
                self.found[-1].append("")

    def handle_endtag(self, tag):
        if tag == "span":
            self.spans.pop()

    def handle_data(self, data):
        if "call-queue" in self.spans or "call-legs" in self.spans:
            self.found[-1][-1] += data


def stories(page: str) -> list[list[str]]:
    return [[" ".join(line.split()) for line in story] for story in _Stories(page).found]


def set_language(engine, crm, login: str, language: str) -> None:
    with transaction(engine) as session:
        users.set_language(session, ADMIN, crm[login].user_id, language)


def test_a_queue_call_tells_the_wait_and_each_seller_rung_by_name(web, crm, engine):
    queue_call(engine, "1.1", 0)
    deal_page = signed_in(web, "ana").get(f"/deals/{crm['deal']}").text

    assert stories(deal_page) == [[
        "Queue sales · waited 6 s",
        "Ana on 101a: rang 3 s · Budi: answered after 3 s, talked 40 s · Citra: rang 3 s"]]


def test_a_transferred_call_says_who_talked_how_long_in_the_readers_language(
        web, crm, engine):
    transferred_call(engine, "2.1", 0)
    ana = signed_in(web, "ana")

    deal_page = ana.get(f"/deals/{crm['deal']}").text
    assert "Call transferred from Ana to Budi" in deal_page
    told = ["ext 600: rang 15 s, no answer · Ana on 101b: answered after 2 s, talked 1 min 5 s"
            " · Budi: answered after 4 s, talked 30 s"]
    assert stories(deal_page) == [told]
    assert stories(ana.get(f"/contacts/{crm['contact']}").text) == [told]

    set_language(engine, crm, "ana", "id")
    told = ["ekstensi 600: berdering 15 dtk, tidak dijawab · Ana di 101b: dijawab setelah "
            "2 dtk, bicara 1 mnt 5 dtk · Budi: dijawab setelah 4 dtk, bicara 30 dtk"]
    assert stories(ana.get(f"/deals/{crm['deal']}").text) == [told]
    assert stories(ana.get(f"/contacts/{crm['contact']}").text) == [told]


def test_a_call_that_rang_one_sellers_phone_shows_as_it_always_did(web, crm, engine):
    plain_call(engine, "3.1", 0)
    ana = signed_in(web, "ana")
    for path in (f"/deals/{crm['deal']}", f"/contacts/{crm['contact']}"):
        page = ana.get(path).text
        assert "call-story" not in page
        assert "1:00" in page  # the call's line, as before (answered to hung up)


def test_the_legs_of_all_the_pages_calls_are_read_in_one_query(web, crm, engine):
    for n in range(6):
        (queue_call, transferred_call, plain_call)[n % 3](engine, f"4.{n}", n * 10)
    hana = signed_in(web, "hana")
    reads = []

    def count(conn, cursor, statement, *args):
        if "call_legs" in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        deal_page = hana.get(f"/deals/{crm['deal']}").text
        assert len(reads) == 1 and len(stories(deal_page)) == 4
        contact_page = hana.get(f"/contacts/{crm['contact']}").text
        assert len(reads) == 2 and len(stories(contact_page)) == 4
    finally:
        event.remove(engine, "before_cursor_execute", count)
