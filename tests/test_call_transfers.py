"""Transfers and call legs through the services alone, as the AMI listener calls them: who
owns the deal after a transfer, where the pop goes, how the talk is split.

The recorded Asterisk calls play these through the real AMI stack in
``test_ami_listener_queues.py``; here each rule is shown on its own, with fixed times.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from factories import at, make_contact, make_deal, make_pipeline, make_user, timeline_of
from pbx_crm.funnel import call_legs, calls, events, transfers
from pbx_crm.models import Deal, Event
from pbx_crm.people.language import Words, catalog
from pbx_crm.rules.phones import ExtensionPlan, classify_caller


@dataclass(frozen=True)
class Leg:
    """What the call tracker's ``Leg`` reads (the services import nothing of telephony)."""

    extension: str
    device: str
    outcome: str
    ring_seconds: float | None
    answered: bool


def ring(session, uniqueid: str):
    return calls.record_inbound_call(
        session, uniqueid=uniqueid, linkedid=uniqueid,
        caller=classify_caller("+62 812-3456-7890", region="ID",
                               extensions=ExtensionPlan.parse("100-199")),
        caller_name="Budi", did="2150001", create_deals=True, region="ID", now=at(0))


def floor(session):
    make_pipeline(session)
    return {login: make_user(session, login, extensions=[extension])
            for login, extension in [("ana", "101"), ("budi", "102"), ("citra", "103")]}


def pops(session, kind: str, linkedid: str) -> list[int | None]:
    return list(session.exec(select(Event.target_user_id).where(
        Event.kind == kind, Event.linkedid == linkedid).order_by(Event.id)))


def said_in_indonesian(entry) -> str:
    return Words.from_kept(entry.data["say"]).said(catalog("id").gettext)


def test_ana_answers_a_new_caller_and_hands_him_to_budi_who_then_owns_the_deal(session):
    sellers = floor(session)
    lookup = ring(session, "1.1")
    call = calls.record_answer(session, uniqueid="1.1", extension="101", now=at(1))
    assert session.get(Deal, lookup.deal_id).owner_id == sellers["ana"].user_id

    transfers.record_transfer(session, call, from_extension="101", to_extension="102",
                              kind=transfers.BLIND, now=at(2))

    ana, budi = sellers["ana"].user_id, sellers["budi"].user_id
    assert session.get(Deal, lookup.deal_id).owner_id == budi
    entries = timeline_of(session, session.get(Deal, lookup.deal_id))
    assert [entry.body for entry in entries][-2:] == ["Call transferred from Ana to Budi",
                                                      "Assigned to Budi"]
    assert said_in_indonesian(entries[-2]) == "Panggilan dialihkan dari Ana ke Budi"
    assert pops(session, events.CALL_ENDED, "1.1") == [ana]  # her card ends
    assert pops(session, events.RINGING, "1.1") == [None, budi]  # his card opens...
    assert pops(session, events.ANSWERED, "1.1")[-2:] == [None, budi]  # ...answered by him


def test_a_deal_with_an_owner_stays_hers_unless_transfers_move_owner(session):
    sellers = floor(session)
    contact = make_contact(session)
    deal = make_deal(session, sellers["citra"], contact_id=contact.id)
    ring(session, "2.1")
    call = calls.record_answer(session, uniqueid="2.1", extension="101", now=at(1))

    transfers.record_transfer(session, call, from_extension="101", to_extension="102",
                              kind=transfers.ATTENDED, now=at(2))
    assert session.get(Deal, deal.id).owner_id == sellers["citra"].user_id

    transfers.record_transfer(session, call, from_extension="102", to_extension="101",
                              kind=transfers.BLIND, move_owner=True, now=at(3))
    assert session.get(Deal, deal.id).owner_id == sellers["ana"].user_id


def test_a_transfer_to_a_phone_that_is_no_sellers_names_the_extension(session):
    sellers = floor(session)
    lookup = ring(session, "3.1")
    call = calls.record_answer(session, uniqueid="3.1", extension="101", now=at(1))
    transfers.record_transfer(session, call, from_extension="101", to_extension="600",
                              kind=transfers.BLIND, now=at(2))
    deal = session.get(Deal, lookup.deal_id)
    line = next(e for e in timeline_of(session, deal) if e.data and "transfer" in e.data)
    assert line.body == "Call transferred from Ana to ext 600"
    assert said_in_indonesian(line) == "Panggilan dialihkan dari Ana ke ekstensi 600"
    assert deal.owner_id == sellers["ana"].user_id


def test_a_calls_legs_are_written_once_and_the_talk_is_split_by_who_talked(session):
    floor(session)
    ring(session, "4.1")
    call = calls.record_answer(session, uniqueid="4.1", extension="101", now=at(1))
    legs = (Leg("101", "101", "answered", 2.0, True), Leg("102", "102b", "answered", 1.5, True))

    for _ in range(2):  # a replayed end replaces the legs
        call_legs.record_call_end(session, call, legs=legs, talk_by=(("101", 2), ("102", 5)))

    written = call_legs.legs_of(session, call.id)
    assert [(leg.position, leg.extension, leg.device, leg.talk_seconds) for leg in written] == [
        (0, "101", "101", 2), (1, "102", "102b", 5)]
    assert all(leg.user_id is not None for leg in written)


def test_a_caller_who_gave_up_in_the_queue_is_missed_with_the_wait_on_the_timeline(session):
    floor(session)
    lookup = ring(session, "5.1")
    call = calls.record_hangup(session, uniqueid="5.1", dial_status="", hangup_cause=16,
                               now=at(1))
    assert call.disposition == "abandoned"

    call_legs.record_call_end(session, call, legs=[Leg("101", "101", "cancelled", None, False)],
                              queue="sales", hold_seconds=6)

    deal = session.get(Deal, lookup.deal_id)
    line = next(e for e in timeline_of(session, deal) if e.call_id == call.id)
    assert line.body == "Inbound call abandoned: +6281234567890, after 6 s in the queue"
    assert said_in_indonesian(line).endswith(", setelah 6 dtk dalam antrean")
    assert (line.data["queue"], line.data["hold_seconds"]) == ("sales", 6)
    assert (call.queue, call.hold_seconds) == ("sales", 6)


def test_the_sellers_own_phone_answering_is_not_the_customer_answering_a_call_out(session):
    floor(session)
    deal = make_deal(session, make_user(session, "dewi", extensions=["104"]),
                     contact_id=make_contact(session).id)
    calls.record_outbound_call(session, uniqueid="6.1", linkedid="6.1", extension="104",
                               dialed=classify_caller("081234567890", region="ID",
                                                      extensions=ExtensionPlan.parse("100-199")),
                               clicked_deal_id=deal.id)
    calls.record_answer(session, uniqueid="6.1", extension="104", now=at(1))
    call = calls.record_hangup(session, uniqueid="6.1", dial_status="NOANSWER",
                               hangup_cause=16, now=at(2))
    assert (call.answered_at, call.disposition) == (None, "missed")
