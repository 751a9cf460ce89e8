"""The AMI listener: calls played by the loopback AMI server become pops and call records.

Each test is a call as a seller lives it: the phone rings and the card pops in that seller's
browser (an event row targeted at them), whoever answers owns the Unsorted deal, the other
phones' pops close. The AGI side is set up through the same services the hooks call. Real
sockets on 127.0.0.1, both databases, and no sleeps: every wait is on the listener's progress
condition or the server's, with a deadline.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select

from factories import make_contact, make_deal, make_pipeline, make_user
from pbx_crm.funnel import calls, events
from pbx_crm.agi import HOOKS
from pbx_crm.telephony.dispatcher import HookContext
from pbx_crm.telephony.agi_protocol import AgiRequest
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from pbx_crm.config import Settings
from pbx_crm.db import is_sqlite, make_engine, transaction
from pbx_crm.models import Call, Deal, Event, utcnow
from pbx_crm.rules.phones import ExtensionPlan, classify_caller

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "ami"
BUDI = "+62 812-3456-7890"
BUDI_E164 = "+6281234567890"
DID = "2150001"
WAIT = 5.0


@pytest.fixture
def settings(tmp_path, engine, server):
    return Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                    ami_host=server.host, ami_port=server.port, ami_username="crm",
                    ami_secret="secret")


@pytest.fixture
def start_listener(engine, settings):
    """A running listener whose first resync is done; stopped at the end."""
    started = []

    def start(**options) -> AmiListener:
        factory = partial(AmiClient, reconnect_delay=0.01, connect_timeout=WAIT,
                          action_timeout=WAIT)
        listener = AmiListener(engine, settings, client_factory=factory,
                               **{"hangup_grace": 0, **options})
        started.append(listener.start())
        assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
        return listener

    yield start
    for listener in started:
        listener.stop()


@pytest.fixture
def sellers(engine):
    """ana 101, budi 102, citra 103, a head, and the Sales pipeline: login -> Actor."""
    with transaction(engine) as session:
        make_pipeline(session)
        return {login: make_user(session, login, extensions=extensions, role=role)
                for login, extensions, role in [("ana", ["101"], "seller"),
                                                ("budi", ["102"], "seller"),
                                                ("citra", ["103"], "seller"),
                                                ("hana", [], "head")]}


def incoming_hook_ran(engine, *, uniqueid: str, linkedid: str, caller: str = BUDI):
    """What the AGI ``incoming`` hook records before Dial (a new caller: an Unsorted deal)."""
    with transaction(engine) as session:
        return calls.record_inbound_call(
            session, uniqueid=uniqueid, linkedid=linkedid,
            caller=classify_caller(caller, region="ID", extensions=ExtensionPlan.parse("100-999")),
            caller_name="Budi", did=DID, create_deals=True, region="ID")


def events_of(engine, kind: str) -> list[Event]:
    with transaction(engine, read_only=True) as session:
        return list(session.exec(select(Event).where(Event.kind == kind).order_by(Event.id)))


def targets(engine, kind: str) -> list[int | None]:
    return [event.target_user_id for event in events_of(engine, kind)]


def call_of(engine, uniqueid: str) -> Call:
    with transaction(engine, read_only=True) as session:
        return calls.find_call(session, uniqueid)


def owner_of(engine, deal_id: int) -> int | None:
    with transaction(engine, read_only=True) as session:
        return session.get(Deal, deal_id).owner_id


# --- the recorded call --------------------------------------------------------------------


def test_the_recorded_answered_call_pops_for_ana_and_makes_her_the_owner(
        engine, sellers, server, start_listener, settings):
    ana = sellers["ana"]
    lookup = incoming_hook_ran(engine, uniqueid="1795892488.1", linkedid="1795892488.0")
    assert targets(engine, events.RINGING) == [None]  # the hook told the heads only
    listener = start_listener()

    server.replay((CAPTURES / "01-answered.ami.raw").read_bytes())
    assert listener.wait_idle(WAIT)

    ringing = events_of(engine, events.RINGING)
    assert [e.target_user_id for e in ringing] == [None, ana.user_id]
    pop = ringing[1]
    assert (pop.linkedid, pop.deal_id) == ("1795892488.0", lookup.deal_id)
    assert pop.payload["uniqueid"] == "1795892488.1"
    assert pop.payload["caller"] == BUDI_E164 and pop.payload["extension"] == "101"
    call = call_of(engine, "1795892488.1")
    assert (call.answered_by_id, call.answered_exten) == (ana.user_id, "101")
    assert owner_of(engine, lookup.deal_id) == ana.user_id
    # No hangup hook ran in this capture: the listener closed the call when it ended.
    assert (call.disposition, call.ended_at is not None) == ("answered", True)
    answered = targets(engine, events.ANSWERED)
    assert answered == [None, ana.user_id]

    # The AGI answered hook runs for the same call: nothing is recorded twice.
    request = AgiRequest.from_env({
        "agi_network": "yes", "agi_network_script": "answered", "agi_arg_1": "1795892488.1",
        "agi_channel": "Local/101@phones-00000001;1", "agi_uniqueid": "1795892488.2"})
    with transaction(engine) as session:
        HOOKS["answered"].run(session, request, HookContext(settings, utcnow()))
    assert targets(engine, events.ANSWERED) == answered
    assert call_of(engine, "1795892488.1").answered_at == call.answered_at


# --- synthesized PJSIP calls ----------------------------------------------------------------


def test_a_ring_group_pops_for_each_seller_and_budi_who_answers_owns_the_deal(
        engine, sellers, server, start_listener):
    listener = start_listener()
    call = server.scenarios.ring_pjsip(BUDI, DID, ["101", "102", "103"], answer="102")
    lookup = incoming_hook_ran(engine, uniqueid=call.linkedid, linkedid=call.linkedid)

    server.replay(call.data)
    assert listener.wait_idle(WAIT)

    ana, budi, citra = (sellers[login].user_id for login in ("ana", "budi", "citra"))
    assert sorted(filter(None, targets(engine, events.RINGING))) == [ana, budi, citra]
    assert sorted(targets(engine, events.STOPPED_RINGING)) == sorted([ana, citra])
    assert owner_of(engine, lookup.deal_id) == budi
    assert call_of(engine, call.linkedid).answered_exten == "102"
    assert listener.failures == 0


def test_phones_ringing_before_the_call_is_recorded_learn_the_new_callers_deal(
        engine, sellers, server, start_listener):
    """The dialplan rings the group as soon as the lookup answered, and the recording (the new
    caller's Unsorted deal) may commit a moment later: the pops shown meanwhile name no deal,
    then learn it, so nobody is offered to create a second one."""
    listener = start_listener()
    call = server.scenarios.ring_pjsip(BUDI, DID, ["101", "102"], stop_after="ringing")
    server.replay(call.data)
    assert listener.wait_idle(WAIT)
    first = events_of(engine, events.RINGING)
    ana, budi = sellers["ana"].user_id, sellers["budi"].user_id
    assert sorted(e.target_user_id or 0 for e in first) == [0, ana, budi]
    assert {e.payload["deal_id"] for e in first} == {None}

    lookup = incoming_hook_ran(engine, uniqueid=call.linkedid, linkedid=call.linkedid)
    assert lookup.deal_id is not None
    assert listener.wait_until(lambda: len(events_of(engine, events.RINGING)) == 6, WAIT)
    updates = events_of(engine, events.RINGING)[3:]
    assert sorted(e.target_user_id or 0 for e in updates) == [0, ana, budi]
    assert all(e.payload["update"] and e.deal_id == lookup.deal_id for e in updates)
    assert listener.failures == 0


def test_a_phone_nobody_owns_pops_nothing(engine, sellers, server, start_listener):
    listener = start_listener()
    server.ring_pjsip(BUDI, DID, ["109"], answer="109")
    assert listener.wait_idle(WAIT)
    assert events_of(engine, events.RINGING) == []
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(Call)).all() == []


def test_a_call_without_the_agi_hooks_pops_the_contacts_deal_and_tells_the_heads(
        engine, sellers, server, start_listener):
    ana = sellers["ana"]
    with transaction(engine) as session:
        contact = make_contact(session)
        deal = make_deal(session, ana, contact_id=contact.id)
    listener = start_listener()

    server.ring_pjsip(BUDI, DID, ["101"], answer="101")
    assert listener.wait_idle(WAIT)

    ringing = events_of(engine, events.RINGING)
    assert [e.target_user_id for e in ringing] == [ana.user_id, None]
    assert {e.deal_id for e in ringing} == {deal.id}
    assert ringing[0].payload["status"] == calls.FOUND
    assert ringing[0].payload["recorded"] is False
    assert targets(engine, events.CALL_ENDED) == [None, ana.user_id]
    with transaction(engine, read_only=True) as session:  # read-only: nothing recorded
        assert session.exec(select(Call)).all() == []
        assert len(session.exec(select(Deal)).all()) == 1


def test_a_seller_added_while_the_listener_runs_pops_after_the_refresh(
        engine, sellers, server, start_listener):
    listener = start_listener(refresh_interval=0.05)
    assert "104" not in listener.extensions
    with transaction(engine) as session:
        dewi = make_user(session, "dewi", extensions=["104"])
    assert listener.wait_until(lambda: "104" in listener.extensions, WAIT)

    server.ring_pjsip(BUDI, DID, ["104"], answer="104")
    assert listener.wait_idle(WAIT)
    assert dewi.user_id in targets(engine, events.RINGING)


def test_after_asterisk_restarts_the_listener_resyncs_and_goes_on(
        engine, sellers, server, start_listener):
    listener = start_listener()
    call = server.scenarios.ring_pjsip(BUDI, DID, ["101", "102"], answer="102",
                                       stop_after="ringing")
    lookup = incoming_hook_ran(engine, uniqueid=call.linkedid, linkedid=call.linkedid)
    server.replay(call.data)
    assert listener.wait_idle(WAIT)

    server.drop_clients()  # as when Asterisk restarts
    assert listener.wait_until(lambda: listener.resyncs >= 2, WAIT)
    assert [a["Action"] for a in server.actions].count("CoreShowChannels") == 2

    server.replay(call.rest)
    assert listener.wait_idle(WAIT)
    ana, budi = sellers["ana"].user_id, sellers["budi"].user_id
    # The resync knew both phones were ringing already: one pop each, not two.
    assert sorted(filter(None, targets(engine, events.RINGING))) == sorted([ana, budi])
    assert targets(engine, events.STOPPED_RINGING) == [ana]
    assert owner_of(engine, lookup.deal_id) == budi


def _unreachable_engine(engine, tmp_path):
    """An engine of the same kind whose database is not there: every transaction fails."""
    if is_sqlite(engine):
        broken = make_engine(f"sqlite:///{tmp_path / 'gone' / 'crm.sqlite3'}")
        shutil.rmtree(tmp_path / "gone")
        return broken
    url = make_url(engine.url.render_as_string(False)).set(database="pbx_crm_no_such_db")
    return make_engine(url.render_as_string(False))


def test_a_database_error_is_logged_and_the_listener_goes_on(
        engine, sellers, server, start_listener, tmp_path, caplog):
    listener = start_listener()
    call = server.scenarios.ring_pjsip(BUDI, DID, ["101", "102"], answer="102",
                                       stop_after="ringing")
    lookup = incoming_hook_ran(engine, uniqueid=call.linkedid, linkedid=call.linkedid)

    listener.engine = broken = _unreachable_engine(engine, tmp_path)
    server.replay(call.data)  # two phones ring: both pops fail to be written
    assert listener.wait_idle(WAIT)
    assert listener.failures == 2
    assert "not written to the CRM; going on" in caplog.text
    assert targets(engine, events.RINGING) == [None]

    listener.engine = engine  # the database is back
    broken.dispose()
    server.replay(call.rest)
    assert listener.wait_idle(WAIT)
    assert owner_of(engine, lookup.deal_id) == sellers["budi"].user_id
    assert listener.failures == 2


def test_the_hangup_hook_stays_the_source_of_how_a_call_ended(
        engine, sellers, server, start_listener):
    listener = start_listener(hangup_grace=60)
    call = server.scenarios.ring_pjsip(BUDI, DID, ["101"], abandon=True)
    incoming_hook_ran(engine, uniqueid=call.linkedid, linkedid=call.linkedid)
    server.replay(call.data)
    assert listener.wait_idle(WAIT)
    assert call_of(engine, call.linkedid).ended_at is None  # the listener gives the hook time

    with transaction(engine) as session:  # the hangup hook: the caller gave up
        calls.record_hangup(session, uniqueid=call.linkedid, dial_status="CANCEL",
                            hangup_cause=16)
    listener.stop()  # call ends still in their grace are handled now
    assert call_of(engine, call.linkedid).disposition == "abandoned"
    assert listener.failures == 0 and listener.signals_handled >= 3


def test_a_call_the_hangup_hook_missed_is_closed_by_the_listener(
        engine, sellers, server, start_listener):
    listener = start_listener(hangup_grace=60)
    call = server.scenarios.ring_pjsip(BUDI, DID, ["101", "102"])  # nobody answers
    lookup = incoming_hook_ran(engine, uniqueid=call.linkedid, linkedid=call.linkedid)
    server.replay(call.data)
    assert listener.wait_idle(WAIT)
    listener.stop()
    ended = call_of(engine, call.linkedid)
    assert ended.disposition == "missed" and ended.ended_at is not None
    assert owner_of(engine, lookup.deal_id) is None
    assert sorted(targets(engine, events.STOPPED_RINGING)) == sorted(
        [sellers["ana"].user_id, sellers["budi"].user_id])


def test_start_ami_runs_the_listener_and_stays_off_without_a_host(
        engine, sellers, server, settings):
    from pbx_crm.components import AmiOff, start_ami

    assert isinstance(start_ami(settings.replace(ami_host=""), engine), AmiOff)
    listener = start_ami(settings, engine)
    try:
        assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
        assert listener.extensions == {"101", "102", "103"}
        assert server.actions[0]["Events"] == "call,user,cdr,agent"
    finally:
        listener.stop()
    assert server.wait_until(lambda: server.clients == 0, WAIT)
