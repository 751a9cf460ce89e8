"""Whole calls, as the PBX plays them and the CRM records them.

Each test is one story: Asterisk (the emulator, over real sockets) runs the dialplan's hooks
against the real FastAGI server with its dispatcher and spool, on SQLite and on PostgreSQL. A
story checks both sides: the channel variables the dialplan gets back, and what the CRM wrote
(the call, the deal and its owner, the timeline, the tasks, the events for the browsers).

Cast: ana (seller, ext. 101), budi (seller, ext. 102), hana (head, ext. 200); the trunk
delivers "Budi" <+62 812-3456-7890> on DID 2150001 unless a story says otherwise.
"""

from __future__ import annotations

import dataclasses
import io
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import update
from sqlmodel import select

from factories import ADMIN, make_contact, make_deal, make_pipeline, make_user
from pbx_crm.funnel import contacts
from pbx_crm.components import DATABASE_WORKERS
from pbx_crm.telephony.agi_protocol import read_env
from pbx_crm.db import transaction
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import (Call, Contact, ContactPhone, Deal, Event, Stage, Task, TimelineEntry,
                            User, utcnow)
from pbx_crm.simulator.agi import fastagi_env_block
from pbx_crm.simulator.agi_commands import parse_args
from pbx_crm.telephony.spool import MAX_ATTEMPTS
from telephony import (CALLER, DID, DatabaseLock, Pbx, TcpProxy, closed_port, eventually,
                       proxied_engine)

CALLER_E164 = "+6281234567890"
LOOKUP_VARIABLES = ["CRM_STATUS", "CRM_DEAL_ID", "CRM_CONTACT_ID", "CRM_CALLER_NAME",
                    "CRM_OWNER_EXTEN"]


# --- the stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crm:
    ana: int
    budi: int
    hana: int


@pytest.fixture
def crm(engine):
    """The Sales funnel and its people, committed before the phones ring."""
    with transaction(engine) as session:
        make_pipeline(session)
        people = {login: make_user(session, login, role=role, extensions=[exten]).user_id
                  for login, role, exten in (("ana", "seller", "101"), ("budi", "seller", "102"),
                                             ("hana", "head", "200"))}
    return Crm(**people)


@pytest.fixture
def make_pbx(engine, tmp_path):
    pbxes = []

    def make(engine=engine, **options) -> Pbx:
        pbx = Pbx(engine, tmp_path / f"pbx{len(pbxes)}", **options)
        pbxes.append(pbx)
        return pbx

    yield make
    for pbx in pbxes:
        pbx.stop()


@pytest.fixture
def pbx(make_pbx, crm):
    return make_pbx()


@pytest.fixture
def hold_database(engine, make_pbx):
    """Another client locks the database; released at the latest when the test ends (before
    the PBX stops, so no hook is left waiting)."""
    locks = []

    def hold(**options) -> DatabaseLock:
        locks.append(DatabaseLock(engine, **options))
        return locks[-1]

    yield hold
    for lock in locks:
        lock.release()


@contextmanager
def reading(engine):
    with transaction(engine, read_only=True) as session:
        yield session


def the_call(engine, uniqueid) -> Call:
    with reading(engine) as session:
        return session.exec(select(Call).where(Call.uniqueid == uniqueid)).one()


def all_of(engine, model, *where) -> list:
    with reading(engine) as session:
        return list(session.exec(select(model).where(*where).order_by(model.id)))


def stage_of(engine, deal_id) -> str:
    with reading(engine) as session:
        return session.get(Stage, session.get(Deal, deal_id).stage_id).name


def events_of(engine, linkedid) -> list[tuple[str, int | None]]:
    return [(e.kind, e.target_user_id) for e in all_of(engine, Event, Event.linkedid == linkedid)]


def call_entries(engine, deal_id) -> list[TimelineEntry]:
    return all_of(engine, TimelineEntry, TimelineEntry.deal_id == deal_id,
                  TimelineEntry.kind == "call")


def slow_lookups(pbx: Pbx) -> threading.Event:
    """From now on the lookup (the real one) reads only once the returned event is set: the
    database slow to answer (on SQLite no lock holds a read)."""
    may_go = threading.Event()
    incoming = pbx.dispatcher.hooks["incoming"]

    def slow_lookup(*args):
        may_go.wait(10)
        return incoming.answer(*args)

    pbx.dispatcher.hooks = {**pbx.dispatcher.hooks,
                            "incoming": dataclasses.replace(incoming, answer=slow_lookup)}
    return may_go


def replay_until_empty(pbx: Pbx) -> None:
    """Replay the spool until nothing waits in it (a replay stops at the first sign that the
    database is still away, and a hook that overran its budget may still be committing)."""
    eventually(lambda: pbx.dispatcher.replay_spooled() >= 0 and pbx.spool.counts()[0] == 0,
               what="the spool to empty")


def between(step, moment) -> bool:
    return step.started <= moment <= step.ended


def set_variable_names(transcript) -> set[str]:
    """The variables a session set; fails if it sent any other command than ``SET VARIABLE``
    or one ``EXEC MSet`` (of plain values), or a variable of its own making."""
    names = []
    for command in transcript.commands:
        words = parse_args(command)  # as Asterisk's AGI parser reads the line
        if words[:2] == ["EXEC", "MSet"] and len(words) == 3:
            names += [pair.partition("=")[0] for pair in words[2].split(",")]
        else:
            assert words[:2] == ["SET", "VARIABLE"] and len(words) == 4, transcript.commands
            names.append(words[2])
    assert len(names) == len(set(names)) and set(names) <= set(LOOKUP_VARIABLES), names
    return set(names)


# --- 1. a new caller, answered ----------------------------------------------------------------


def test_a_new_caller_rings_ana_answers_and_takes_the_new_deal_and_the_call_lands_on_it(
        engine, crm, pbx):
    inbound = pbx.trunk_call(CALLER, "Budi")

    lookup = pbx.incoming(inbound)

    deal, = all_of(engine, Deal)
    contact, = all_of(engine, Contact)
    assert lookup.transcript.agistatus == "SUCCESS"
    # The dialplan waits for one read: a caller nobody knows, no seller to ring first. The
    # deal is made right after, and its number reaches the browsers with the ring. Empty
    # variables are not sent: the dialplan cleared them before asking.
    assert set_variable_names(lookup.transcript) == {"CRM_STATUS"}
    assert lookup.variables == {"CRM_STATUS": "NEW"}
    # While the phones ring: a contact with the trunk's name, a deal in Unsorted, nobody's yet.
    assert (contact.name, deal.contact_id, deal.title, deal.source) == (
        "Budi", contact.id, "Call from Budi", "call")
    assert [p.e164 for p in all_of(engine, ContactPhone)] == [CALLER_E164]
    assert (stage_of(engine, deal.id), deal.owner_id) == ("Unsorted", None)

    answer = pbx.answered(inbound, "101")

    assert answer.transcript.agistatus == "SUCCESS"
    assert answer.transcript.commands == []  # the bridge waits for this hook: one round trip
    with reading(engine) as session:
        owned = session.get(Deal, deal.id)
    assert (owned.owner_id, stage_of(engine, deal.id)) == (crm.ana, "Opportunity")

    end = pbx.hangup(inbound, "ANSWER", talk=3)

    assert end.transcript.agistatus == "SUCCESS" and not end.transcript.hangup_notified
    assert end.variables == {"CRM_DISPOSITION": "answered"}
    call = the_call(engine, inbound.uniqueid)
    assert (call.direction, call.caller_raw, call.caller_e164, call.caller_name, call.did) == (
        "inbound", CALLER, CALLER_E164, "Budi", DID)
    assert (call.linkedid, call.deal_id, call.contact_id) == (inbound.uniqueid, deal.id,
                                                               contact.id)
    assert (call.disposition, call.answered_exten, call.answered_by_id, call.hangup_cause) == (
        "answered", "101", crm.ana, 16)
    assert between(lookup, call.ringing_at) and between(answer, call.answered_at)
    assert between(end, call.ended_at)
    entry, = call_entries(engine, deal.id)
    assert entry.body == f"Inbound call answered: {CALLER_E164}, 3 s"
    facts = dict(entry.data)
    assert facts.pop("say")["template"] == "%(call)s, %(seconds)s s"  # the body's words
    assert facts == {"direction": "inbound", "disposition": "answered",
                          "talk_seconds": 3, "answered_exten": "101"}
    assert (entry.call_id, entry.created_at) == (call.id, call.ended_at)
    assert [e.body for e in all_of(engine, TimelineEntry, TimelineEntry.deal_id == deal.id,
                                   TimelineEntry.kind == "assignment")] == ["Taken by Ana"]
    assert all_of(engine, Task) == []
    # The browsers: the heads see the ring (nobody owns the deal yet), ana her answer.
    assert events_of(engine, inbound.linkedid) == [
        ("ringing", None), ("answered", None), ("answered", crm.ana),
        ("call_ended", None), ("call_ended", crm.ana)]
    ringing = all_of(engine, Event, Event.kind == "ringing")[0]
    assert ringing.payload["status"] == "NEW" and ringing.payload["caller_name"] == "Budi"
    assert ringing.deal_id == deal.id and ringing.created_at == call.ringing_at
    assert pbx.spool.counts() == (0, 0)


def test_the_answering_phone_may_be_a_pjsip_device_as_well_as_a_local_channel(engine, crm, pbx):
    inbound = pbx.trunk_call()
    pbx.incoming(inbound)

    pbx.answered(inbound, "102", device="pjsip")  # PJSIP/102-0000000x

    call = the_call(engine, inbound.uniqueid)
    deal, = all_of(engine, Deal)
    assert (call.answered_exten, call.answered_by_id, deal.owner_id) == ("102", crm.budi,
                                                                         crm.budi)


# --- 2-4. nobody answers, the caller gives up, the phone is busy ------------------------------


@pytest.mark.parametrize("dialstatus, disposition, callback", [
    ("NOANSWER", "missed", True),
    ("CANCEL", "abandoned", True),
    ("BUSY", "busy", False),
])
def test_an_unanswered_new_caller_stays_in_unsorted_with_the_call_on_the_deal(
        engine, crm, pbx, dialstatus, disposition, callback):
    inbound = pbx.trunk_call()

    steps = pbx.call(inbound, answered_by=None, dialstatus=dialstatus)

    assert steps["incoming"].variables["CRM_STATUS"] == "NEW"
    assert steps["hangup"].variables == {"CRM_DISPOSITION": disposition}
    deal, = all_of(engine, Deal)
    call = the_call(engine, inbound.uniqueid)
    assert (call.disposition, call.answered_at, call.answered_exten) == (disposition, None, None)
    assert (stage_of(engine, deal.id), deal.owner_id) == ("Unsorted", None)
    entry, = call_entries(engine, deal.id)
    assert entry.body == f"Inbound call {disposition}: {CALLER_E164}"
    assert entry.data["talk_seconds"] == 0
    tasks = all_of(engine, Task)
    if callback:
        # Unsorted: the callback waits, unassigned, for whoever takes the deal.
        task, = tasks
        assert (task.kind, task.deal_id, task.assignee_id, task.call_id) == (
            "callback", deal.id, None, call.id)
        assert task.title == f"Call back {CALLER_E164} ({disposition} call)"
        assert task.due_at > call.ended_at
    else:
        assert tasks == []
    assert events_of(engine, inbound.linkedid) == [("ringing", None), ("call_ended", None)]


@pytest.fixture
def sitis_deal(engine, crm):
    """A known customer: Siti's contact and an open deal, both budi's."""
    with transaction(engine) as session:
        budi = Actor.of(session.get(User, crm.budi))
        contact = contacts.create_contact(session, ADMIN, name="Siti Rahmawati",
                                          phones=["0811-2000-3000"], region="ID",
                                          owner_id=crm.budi)
        deal = make_deal(session, budi, title="Office fit-out", contact_id=contact.id)
        return deal.id, contact.id


SITI = "+62 811-2000-3000"


def test_a_missed_call_from_a_known_customer_leaves_a_callback_task_for_their_seller(
        engine, crm, pbx, sitis_deal):
    deal_id, _ = sitis_deal
    inbound = pbx.trunk_call(SITI, "SITI MOBILE")

    steps = pbx.call(inbound, answered_by=None, dialstatus="NOANSWER")

    assert steps["incoming"].variables["CRM_OWNER_EXTEN"] == "102"
    task, = all_of(engine, Task)
    assert (task.deal_id, task.assignee_id, task.kind) == (deal_id, crm.budi, "callback")
    assert stage_of(engine, deal_id) == "Opportunity"
    # Budi's browser showed the pop, so it hears that the call ended.
    assert events_of(engine, inbound.linkedid) == [
        ("ringing", None), ("ringing", crm.budi), ("call_ended", None), ("call_ended", crm.budi)]


# --- 5. withheld numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("number, name, callingpres, raw", [
    ("anonymous", "Anonymous", 35, "anonymous"),  # presentation prohibited (06 A)
    (None, None, 67, "unknown"),  # no caller ID at all: the environment says "unknown" (06 B)
], ids=["anonymous", "no-caller-id"])
def test_an_anonymous_caller_gets_no_contact_or_deal_but_the_call_is_recorded(
        engine, crm, pbx, number, name, callingpres, raw):
    inbound = pbx.trunk_call(number, name, callingpres=callingpres)

    steps = pbx.call(inbound, answered_by="101", talk=12)

    assert steps["incoming"].variables == {"CRM_STATUS": "ANONYMOUS"}  # the rest empty
    assert all_of(engine, Contact) == [] and all_of(engine, Deal) == []
    call = the_call(engine, inbound.uniqueid)
    assert (call.caller_raw, call.caller_e164, call.caller_name, call.deal_id) == (
        raw, None, None, None)
    assert (call.disposition, call.answered_exten, call.answered_by_id) == ("answered", "101",
                                                                            crm.ana)
    assert all_of(engine, Task) == [] and all_of(engine, TimelineEntry) == []
    assert events_of(engine, inbound.linkedid) == [
        ("ringing", None), ("answered", None), ("answered", crm.ana),
        ("call_ended", None), ("call_ended", crm.ana)]


# --- 6. a colleague calls -----------------------------------------------------------------------


def test_an_internal_caller_is_recognised_and_makes_no_deal(engine, crm, pbx):
    inbound = pbx.internal_call("102", "Budi desk")

    steps = pbx.call(inbound, answered_by="101")

    assert steps["incoming"].variables["CRM_STATUS"] == "INTERNAL"
    assert "CRM_DEAL_ID" not in steps["incoming"].variables  # empty: not sent
    call = the_call(engine, inbound.uniqueid)
    assert (call.direction, call.caller_raw, call.disposition) == ("internal", "102", "answered")
    assert all_of(engine, Contact) == [] and all_of(engine, Deal) == []


# --- 7. the caller hangs up while the CRM looks them up ----------------------------------------


def test_the_caller_hangs_up_during_the_lookup_and_the_call_is_closed_as_abandoned(
        engine, crm, pbx):
    inbound = pbx.trunk_call()

    # Asterisk writes HANGUP inline right after the environment block, while the hook works.
    lookup = pbx.incoming(inbound, hangup_after_commands=0)

    assert lookup.transcript.agistatus == "HANGUP"
    assert lookup.transcript.wire.count(b"HANGUP\n") == 2  # inline, then the end-of-script one
    # SET VARIABLE still works on a dead channel: the variable landed.
    assert set_variable_names(lookup.transcript) == {"CRM_STATUS"}
    assert {e.response for e in lookup.transcript.exchanges} == {"200 result=1"}
    assert lookup.variables["CRM_STATUS"] == "NEW"
    deal, = all_of(engine, Deal)
    assert the_call(engine, inbound.uniqueid).deal_id == deal.id

    # Dial never ran, so DIALSTATUS is empty in the hangup handler.
    end = pbx.hangup(inbound, "")

    assert end.variables == {"CRM_DISPOSITION": "abandoned"}
    task, = all_of(engine, Task)
    assert (task.deal_id, task.assignee_id) == (deal.id, None)
    assert pbx.spool.counts() == (0, 0)


def test_with_agiexitonhangup_the_hangup_handler_may_overtake_the_lookup_and_nothing_is_lost(
        engine, crm, make_pbx, hold_database):
    """AGIEXITONHANGUP=yes (as dialplan/pbx-crm.conf sets it): Asterisk drops the lookup's
    session at the hangup and runs the hangup handler at once, while the lookup still waits
    for the database. Either request may reach the database first."""
    pbx = make_pbx(budget_ms=300)
    lock = hold_database()
    inbound = pbx.trunk_call()

    # The lookup's recording waits for the database: the hangup handler does not wait for it.
    lookup = pbx.incoming(inbound, hangup_after_commands=0, exit_on_hangup=True, recorded=False)
    end = pbx.hangup(inbound, "")

    assert lookup.transcript.agistatus == "HANGUP" and lookup.transcript.commands == []
    assert end.variables == {"CRM_STATUS": "UNAVAILABLE"}
    # Both wait to be recorded, the lookup's first, until the database is free again.
    assert not pbx.dispatcher.wait_idle(0)
    lock.release()
    replay_until_empty(pbx)
    assert pbx.dispatcher.wait_idle(10)

    deal, = all_of(engine, Deal)
    call = the_call(engine, inbound.uniqueid)
    assert (call.deal_id, call.disposition) == (deal.id, "abandoned")
    assert lookup.started <= call.ringing_at <= call.ended_at and between(end, call.ended_at)
    task, = all_of(engine, Task)
    assert task.deal_id == deal.id
    assert events_of(engine, inbound.linkedid) == [("ringing", None), ("call_ended", None)]


def test_a_process_agi_gets_sighup_during_the_lookup_and_still_delivers_the_variables(
        engine, crm, pbx):
    lookup_may_go = slow_lookups(pbx)  # the lookup takes its time...
    inbound = pbx.trunk_call()
    result = {}
    call = threading.Thread(target=lambda: result.update(
        lookup=pbx.relayed("incoming", [DID, inbound.linkedid], inbound)))
    call.start()
    eventually(lambda: pbx.server.active_sessions == 1, what="the relay to reach the server")
    inbound.hangup()  # ...while the caller hangs up: Asterisk sends the relay SIGHUP
    lookup_may_go.set()
    call.join(timeout=10)

    lookup = result["lookup"]
    assert lookup.transcript.hangup_notified and lookup.transcript.agistatus == "HANGUP"
    assert b"HANGUP" not in lookup.transcript.wire  # a process AGI gets a signal, not a line
    assert (lookup.transcript.returncode, lookup.transcript.stderr) == (0, "")
    assert set_variable_names(lookup.transcript) == {"CRM_STATUS"}
    assert lookup.variables["CRM_STATUS"] == "NEW"

    end = pbx.relayed_hangup(inbound, "")

    assert end.variables == {"CRM_DISPOSITION": "abandoned"}
    assert the_call(engine, inbound.uniqueid).disposition == "abandoned"
    assert len(all_of(engine, Task)) == 1


# --- 8. the database goes away during a call ----------------------------------------------------


class Outage:
    """The database goes away and comes back. SQLite: another process holds the write lock, so
    hooks overrun their budget. PostgreSQL: the server becomes unreachable (a proxy in front of
    it drops every connection and refuses new ones)."""

    def __init__(self, engine, hold_database):
        self.engine = engine
        self._hold = hold_database
        self._lock = None
        self.proxy = None
        self.crm_engine = engine
        if engine.dialect.name == "postgresql":
            url = engine.url
            self.proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
            self.crm_engine = proxied_engine(engine, self.proxy)

    def begin(self):
        if self.proxy:
            self.proxy.cut()
        else:
            self._lock = self._hold()

    def end(self):
        if self.proxy:
            self.proxy.restore()
        else:
            self._lock.release()

    def close(self):
        if self.proxy:
            self.crm_engine.dispose()
            self.proxy.close()


@pytest.fixture
def outage(engine, hold_database):
    outage = Outage(engine, hold_database)
    yield outage
    outage.close()


BUDGET_MS = 200
MARGIN = 0.25  # seconds: the spool write and the AGI round trips after the budget


def test_the_database_goes_away_mid_call_and_nothing_is_lost_when_it_comes_back(
        engine, crm, make_pbx, outage):
    pbx = make_pbx(outage.crm_engine, budget_ms=BUDGET_MS)
    inbound = pbx.trunk_call()
    outage.begin()

    lookup = pbx.incoming(inbound, recorded=False)
    answer = pbx.answered(inbound, "101")
    end = pbx.hangup(inbound, "ANSWER", talk=7)

    # The call went on at once, without the CRM.
    if outage.proxy:  # PostgreSQL is unreachable: not even the lookup can be read
        assert lookup.variables == {"CRM_STATUS": "UNAVAILABLE"}
    else:  # SQLite's write lock is taken: the lookup still reads, the recording waits
        assert lookup.variables["CRM_STATUS"] == "NEW"
    assert lookup.seconds < BUDGET_MS / 1000 + MARGIN
    assert answer.variables == end.variables == {"CRM_STATUS": "UNAVAILABLE"}
    assert answer.seconds < BUDGET_MS / 1000 + MARGIN and end.seconds < BUDGET_MS / 1000 + MARGIN
    # The call's requests are on disk in the spool, in the order the call made them (on
    # SQLite the lookup's as its recording waits for the lock).
    with sqlite3.connect(pbx.spool.path) as spool_file:
        spooled = spool_file.execute(
            "SELECT hook, call_key, received_at FROM spooled ORDER BY id").fetchall()
    assert [(hook, key) for hook, key, _ in spooled] == [
        ("incoming", inbound.uniqueid), ("answered", inbound.uniqueid),
        ("hangup", inbound.uniqueid)]
    assert [at for *_, at in spooled] == sorted(at for *_, at in spooled)

    outage.end()
    replay_until_empty(pbx)
    assert pbx.dispatcher.wait_idle(10)

    assert pbx.spool.counts() == (0, 0)
    deal, = all_of(engine, Deal)
    call = the_call(engine, inbound.uniqueid)
    # Recorded with the times the PBX asked, not the time of the replay.
    assert between(lookup, call.ringing_at) and between(answer, call.answered_at)
    assert between(end, call.ended_at)
    assert (call.deal_id, call.disposition, call.answered_exten) == (deal.id, "answered", "101")
    assert (deal.owner_id, stage_of(engine, deal.id)) == (crm.ana, "Opportunity")
    assert between(answer, deal.stage_entered_at)
    entry, = call_entries(engine, deal.id)
    assert entry.data["talk_seconds"] == 7 and entry.created_at == call.ended_at
    assert events_of(engine, inbound.linkedid) == [
        ("ringing", None), ("answered", None), ("answered", crm.ana),
        ("call_ended", None), ("call_ended", crm.ana)]


def test_a_lookup_that_overruns_its_budget_lets_the_call_go_on_and_is_recorded_once(
        engine, crm, make_pbx):
    pbx = make_pbx(budget_ms=BUDGET_MS)
    lookup_may_go = slow_lookups(pbx)
    inbound = pbx.trunk_call()

    lookup = pbx.incoming(inbound, recorded=False)

    # Answered within the budget (what is left of it goes to the spool write and the
    # answer), while the lookup still waited; the request was spooled first.
    assert lookup.variables == {"CRM_STATUS": "UNAVAILABLE"}
    assert BUDGET_MS / 1000 * 0.75 <= lookup.seconds < BUDGET_MS / 1000 + MARGIN
    assert [r.call_key for r in pbx.spool.pending()] == [inbound.uniqueid]
    assert not pbx.dispatcher.wait_idle(0)
    lookup_may_go.set()
    assert pbx.dispatcher.wait_idle(10)
    # The late lookup recorded the call after all; its replay finds the work done.
    replay_until_empty(pbx)
    deal, = all_of(engine, Deal)
    call = the_call(engine, inbound.uniqueid)
    assert call.deal_id == deal.id and between(lookup, call.ringing_at)
    assert events_of(engine, inbound.linkedid) == [("ringing", None)]
    assert pbx.spool.counts() == (0, 0)


def test_a_spooled_request_that_can_never_succeed_is_set_aside_and_blocks_nothing(
        engine, crm, make_pbx, outage):
    pbx = make_pbx(outage.crm_engine, budget_ms=BUDGET_MS)
    # Left in the spool file by an older pbx-crm whose lookup hook had another name: no replay
    # can ever run it, and it is first in line.
    stale = pbx.trunk_call()
    block = fastagi_env_block(stale, pbx.address, "lookup", [DID, stale.linkedid])
    pbx.spool.put("lookup", stale.uniqueid, read_env(io.BytesIO(block)), utcnow(), "budget")
    new, anonymous = pbx.trunk_call(), pbx.trunk_call("anonymous", "Anonymous", callingpres=35)
    outage.begin()
    pbx.incoming(new, recorded=False)
    pbx.incoming(anonymous, recorded=False)
    outage.end()
    assert pbx.dispatcher.wait_idle(15)

    # First in line, whatever else the outage left there.
    assert [r.hook for r in pbx.spool.pending()][0] == "lookup"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert pbx.dispatcher.wait_idle(10)  # the hooks that overran have finished
        pbx.dispatcher.replay_spooled()
        assert pbx.spool.counts() == ((1, 0) if attempt < MAX_ATTEMPTS else (0, 1))
        # The requests behind it went through in the first round.
        assert {the_call(engine, new.uniqueid).caller_e164,
                the_call(engine, anonymous.uniqueid).caller_raw} == {CALLER_E164, "anonymous"}

    with sqlite3.connect(pbx.spool.path) as spool_file:
        rows = spool_file.execute("SELECT hook, attempts, last_error FROM spooled WHERE dead")
        assert rows.fetchall() == [("lookup", MAX_ATTEMPTS, "unknown hook lookup")]
    assert len(all_of(engine, Deal)) == 1


# --- 9-10. known and repeat callers -----------------------------------------------------------


def test_a_known_caller_is_found_and_their_seller_is_named_for_ringing_first(
        engine, crm, pbx, sitis_deal):
    deal_id, contact_id = sitis_deal
    inbound = pbx.trunk_call(SITI, "SITI MOBILE")

    lookup = pbx.incoming(inbound)

    assert lookup.variables == {"CRM_STATUS": "FOUND", "CRM_DEAL_ID": str(deal_id),
                                "CRM_CONTACT_ID": str(contact_id),
                                "CRM_CALLER_NAME": "Siti Rahmawati", "CRM_OWNER_EXTEN": "102"}
    ringing = all_of(engine, Event, Event.kind == "ringing")
    assert [e.target_user_id for e in ringing] == [None, crm.budi]  # the heads' copy, budi's
    assert {e.payload["caller_name"] for e in ringing} == {"Siti Rahmawati"}
    assert all_of(engine, Deal)[0].id == deal_id and len(all_of(engine, Contact)) == 1

    # budi is on another call: the ring group reaches ana, and the deal stays budi's.
    pbx.answered(inbound, "101")
    pbx.hangup(inbound, "ANSWER", talk=40)

    with reading(engine) as session:
        deal = session.get(Deal, deal_id)
    assert deal.owner_id == crm.budi
    entry, = call_entries(engine, deal_id)
    assert entry.data["answered_exten"] == "101" and entry.data["talk_seconds"] == 40


def test_a_repeat_caller_lands_on_the_same_open_deal(engine, crm, pbx):
    first, second = pbx.trunk_call(), pbx.trunk_call()

    one = pbx.call(first, answered_by=None, dialstatus="NOANSWER")
    two = pbx.call(second, answered_by="101", talk=5)

    deal, = all_of(engine, Deal)
    assert one["incoming"].variables["CRM_STATUS"] == "NEW"
    assert two["incoming"].variables["CRM_STATUS"] == "FOUND"
    assert two["incoming"].variables["CRM_DEAL_ID"] == str(deal.id)
    assert [(e.call_id, e.data["disposition"]) for e in call_entries(engine, deal.id)] == [
        (the_call(engine, first.uniqueid).id, "missed"),
        (the_call(engine, second.uniqueid).id, "answered")]
    assert deal.owner_id == crm.ana
    assert len(all_of(engine, Contact)) == 1


# --- 11. a ring group: two phones answer at once ------------------------------------------------


def test_two_sellers_answering_the_same_call_at_once_give_the_deal_one_owner(engine, crm, pbx):
    rounds = 5
    for _ in range(rounds):
        inbound = pbx.trunk_call()
        # A new number each round, so each round races for a new Unsorted deal.
        inbound.callerid = f"+62 812-3456-{7000 + int(inbound.uniqueid.split('.')[1]):04d}"
        pbx.incoming(inbound)
        legs = [pbx.answering_leg(inbound, "101"),
                pbx.answering_leg(inbound, "102", device="pjsip")]
        barrier = threading.Barrier(2)
        answers = {}

        def answer(inbound, leg, barrier, answers):
            barrier.wait()
            answers[leg.name] = pbx.answered(inbound, leg=leg)

        threads = [threading.Thread(target=answer, args=(inbound, leg, barrier, answers))
                   for leg in legs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

        # No error reached either phone: the hook set nothing on either leg.
        assert [(a.transcript.agistatus, a.transcript.commands) for a in answers.values()] == [
            ("SUCCESS", [])] * 2
        call = the_call(engine, inbound.uniqueid)
        deal = all_of(engine, Deal, Deal.id == call.deal_id)[0]
        owner_exten = {crm.ana: "101", crm.budi: "102"}[deal.owner_id]
        assert call.answered_exten == owner_exten  # who answered is who owns it
        assert len(all_of(engine, TimelineEntry, TimelineEntry.deal_id == deal.id,
                          TimelineEntry.kind == "assignment")) == 1
        answered = [e.target_user_id for e in all_of(engine, Event, Event.kind == "answered",
                                                     Event.linkedid == inbound.linkedid)]
        assert answered == [None, deal.owner_id]
    assert pbx.spool.counts() == (0, 0)
    assert len(all_of(engine, Deal)) == rounds


# --- 12. hostile caller names -------------------------------------------------------------------


HOSTILE_NAMES = {
    "quotes": ('Budi "Bos" Santoso', 'Budi "Bos" Santoso'),
    "backslashes": ('C:\\crm\\x \\" \\\\', 'C:\\crm\\x \\" \\\\'),
    "script": ("<script>alert('x')</script>", "<script>alert('x')</script>"),
    "sql": ("Robert'); DROP TABLE contacts;--", "Robert'); DROP TABLE contacts;--"),
    "whitespace": ("  Budi \t  Santoso\x0b Jr ", "Budi Santoso Jr"),
    # A CR inside the name stays in the environment line: it must not start a command.
    "carriage-return": ('Budi\rSET VARIABLE CRM_DEAL_ID 666', "Budi SET VARIABLE CRM_DEAL_ID 666"),
    "2-KB": ("Ś" + "x" * 2047, "Ś" + "x" * 199),  # the CRM keeps 200 characters
}


@pytest.mark.parametrize("sent, kept", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_a_hostile_caller_name_is_stored_as_sent_and_reaches_the_dialplan_intact(
        engine, crm, pbx, sent, kept):
    inbound = pbx.trunk_call(CALLER, sent)

    lookup = pbx.incoming(inbound)

    assert set_variable_names(lookup.transcript) == {"CRM_STATUS"}  # nothing injected
    assert {e.response for e in lookup.transcript.exchanges} == {"200 result=1"}
    contact, = all_of(engine, Contact)
    deal, = all_of(engine, Deal)
    assert contact.name == kept and the_call(engine, inbound.uniqueid).caller_name == kept
    assert deal.title == f"Call from {kept}"[:200]

    again = pbx.incoming(pbx.trunk_call(CALLER, sent))  # now a known caller, named by the CRM

    assert set_variable_names(again.transcript) == {
        "CRM_STATUS", "CRM_DEAL_ID", "CRM_CONTACT_ID", "CRM_CALLER_NAME"}  # nobody's deal yet
    # MSet answers result=0, SET VARIABLE result=1: every command taken as sent.
    assert {e.response for e in again.transcript.exchanges} <= {"200 result=0", "200 result=1"}
    assert again.variables["CRM_CALLER_NAME"] == kept
    assert len(all_of(engine, Deal)) == 1


def test_a_contact_name_with_line_breaks_cannot_inject_a_command(engine, crm, pbx):
    hostile = 'Budi "Bos"\nEXEC System reboot\r\nSET VARIABLE CRM_DEAL_ID 666\\'
    with transaction(engine) as session:
        contact = make_contact(session, name="Budi", phones=[CALLER])
        # The contact services make a typed name one line; a name written past them (an
        # older version, a hand-made import) still reaches the dialplan as it is stored.
        session.execute(update(Contact).where(Contact.id == contact.id).values(name=hostile))
    inbound = pbx.trunk_call(CALLER, "Budi")

    lookup = pbx.incoming(inbound)

    assert "CRM_CALLER_NAME" in set_variable_names(lookup.transcript)
    assert lookup.variables["CRM_CALLER_NAME"] == (
        'Budi "Bos"EXEC System rebootSET VARIABLE CRM_DEAL_ID 666\\')
    assert lookup.variables.get("CRM_DEAL_ID") != "666"
    assert all_of(engine, Contact)[0].name == hostile


def test_a_did_as_long_as_asterisk_allows_does_not_cost_the_lookup(engine, crm, pbx):
    inbound = pbx.trunk_call(did="6" * 80)  # EXTEN holds up to 80 characters

    lookup = pbx.incoming(inbound)

    assert lookup.variables["CRM_STATUS"] == "NEW"
    assert the_call(engine, inbound.uniqueid).did == "6" * 64  # what the CRM keeps


# --- 13. process AGI through the relay ----------------------------------------------------------


def test_the_same_story_through_the_process_agi_relay(engine, crm, pbx):
    inbound = pbx.trunk_call()

    lookup = pbx.relayed("incoming", [DID, inbound.linkedid], inbound)
    leg = pbx.answering_leg(inbound, "101")
    answer = pbx.relayed("answered", [inbound.uniqueid], leg)
    end = pbx.relayed_hangup(inbound, "ANSWER", talk=3)

    deal, = all_of(engine, Deal)
    for step in (lookup, answer, end):
        assert (step.transcript.returncode, step.transcript.agistatus,
                step.transcript.stderr) == (0, "SUCCESS", "")
    assert lookup.variables["CRM_STATUS"] == "NEW"
    assert call_entries(engine, deal.id)[0].call_id == the_call(engine, inbound.uniqueid).id
    assert answer.transcript.commands == []
    assert end.variables == {"CRM_DISPOSITION": "answered"}
    call = the_call(engine, inbound.uniqueid)
    assert (call.disposition, call.answered_exten, call.linkedid) == ("answered", "101",
                                                                       inbound.uniqueid)
    assert deal.owner_id == crm.ana and call_entries(engine, deal.id)[0].data["talk_seconds"] == 3


def test_with_the_server_down_the_relay_answers_unavailable_at_once(engine, crm, pbx):
    inbound = pbx.trunk_call()

    lookup = pbx.relayed("incoming", [DID, inbound.linkedid], inbound,
                         address=("127.0.0.1", closed_port()))

    assert lookup.transcript.commands == ['SET VARIABLE CRM_STATUS "UNAVAILABLE"']
    assert lookup.variables == {"CRM_STATUS": "UNAVAILABLE"}
    assert lookup.transcript.returncode == 0 and lookup.seconds < 1.0
    assert all_of(engine, Call) == []


# --- 14. saturation ----------------------------------------------------------------------------


def test_a_saturated_server_answers_the_extra_call_at_once_and_spools_it(
        engine, crm, make_pbx, hold_database):
    pbx = make_pbx(budget_ms=5000, workers=1)  # one session at a time
    lock = hold_database()
    first, extra = pbx.trunk_call(), pbx.trunk_call("+62 813-1111-2222", "Dewi")
    result = {}
    # A hangup handler writes before it answers: it holds the one session for the lock.
    busy = threading.Thread(target=lambda: result.update(first=pbx.hangup(first, "NOANSWER")))
    busy.start()
    eventually(lambda: pbx.server.active_sessions == 1, what="the first call to take the worker")

    overflow = pbx.incoming(extra, recorded=False)
    lock.release()
    busy.join(timeout=10)

    assert overflow.variables == {"CRM_STATUS": "UNAVAILABLE"} and overflow.seconds < 1.0
    assert [r.call_key for r in pbx.spool.pending()] == [extra.uniqueid]
    # Served once the database was back.
    assert result["first"].variables == {"CRM_DISPOSITION": "missed"}
    pbx.dispatcher.replay_spooled()
    call = the_call(engine, extra.uniqueid)
    assert between(overflow, call.ringing_at) and call.caller_name == "Dewi"
    assert pbx.spool.counts() == (0, 0) and len(all_of(engine, Deal)) == 2


def test_with_every_database_worker_held_the_extra_call_waits_its_budget_at_most(
        engine, crm, make_pbx, hold_database):
    pbx = make_pbx(budget_ms=1000, db_workers=1)
    lock = hold_database()
    first, extra = pbx.trunk_call(), pbx.trunk_call("+62 813-1111-2222", "Dewi")
    result = {}
    busy = threading.Thread(target=lambda: result.update(first=pbx.hangup(first, "NOANSWER")))
    busy.start()
    eventually(lambda: pbx.server.active_sessions == 1, what="the first call to take the worker")
    eventually(lambda: not pbx.dispatcher.wait_idle(0), what="its hook to wait for the database")

    overflow = pbx.incoming(extra, recorded=False)
    lock.release()
    busy.join(timeout=10)

    # It waited for the one worker within its budget, then went on, its request spooled.
    assert overflow.variables == {"CRM_STATUS": "UNAVAILABLE"} and overflow.seconds < 1.0
    assert result["first"].variables == {"CRM_STATUS": "UNAVAILABLE"}
    assert [r.call_key for r in pbx.spool.pending()] == [first.uniqueid, extra.uniqueid]
    replay_until_empty(pbx)
    assert between(overflow, the_call(engine, extra.uniqueid).ringing_at)
    assert the_call(engine, first.uniqueid).disposition == "missed"
    assert pbx.spool.counts() == (0, 0)


def test_recordings_held_on_a_write_lock_leave_a_new_callers_lookup_its_real_answer(
        engine, crm, make_pbx, hold_database):
    pbx = make_pbx(budget_ms=500, db_workers=DATABASE_WORKERS)
    lock = hold_database(reads_pass=True)  # the lookups read; the recordings wait for it
    earlier = [pbx.trunk_call(f"+62 813-1111-{n:04d}", f"Caller {n}")
               for n in range(DATABASE_WORKERS)]
    # As many calls answered as there are database workers, their recordings all waiting.
    assert all(pbx.incoming(inbound, recorded=False).variables["CRM_STATUS"] == "NEW"
               for inbound in earlier)

    newcomer = pbx.trunk_call("+62 813-2222-3333", "Dewi")
    lookup = pbx.incoming(newcomer, recorded=False)

    assert lookup.variables["CRM_STATUS"] == "NEW" and lookup.seconds < 0.5 + MARGIN
    assert all_of(engine, Call) == []  # the lock still held every recording
    lock.release()
    assert pbx.dispatcher.wait_idle(10)
    replay_until_empty(pbx)  # on PostgreSQL those past the lock timeout were spooled
    assert between(lookup, the_call(engine, newcomer.uniqueid).ringing_at)
    assert len(all_of(engine, Call)) == len(all_of(engine, Deal)) == DATABASE_WORKERS + 1


# --- 15. idempotence -----------------------------------------------------------------------------


def test_the_same_lookup_twice_and_its_replay_record_one_call_and_one_deal(engine, crm, pbx):
    inbound = pbx.trunk_call()

    first = pbx.incoming(inbound)
    inbound.variables.clear()
    again = pbx.incoming(inbound)  # the dialplan ran the AGI again for the same channel
    # And a copy spooled as if the first had overrun its budget, then replayed.
    block = fastagi_env_block(inbound, pbx.address, f"incoming?did={DID}",
                              [DID, inbound.linkedid])
    pbx.spool.put("incoming", inbound.uniqueid, read_env(io.BytesIO(block)), utcnow(),
                  "over the budget")
    assert pbx.dispatcher.replay_spooled() == 1

    # The same decision as the first time; the deal made for it is known by now.
    deal, = all_of(engine, Deal)
    assert first.variables["CRM_STATUS"] == again.variables["CRM_STATUS"] == "NEW"
    assert again.variables["CRM_DEAL_ID"] == str(deal.id)
    assert len(all_of(engine, Call)) == 1 and len(all_of(engine, Deal)) == 1
    assert len(all_of(engine, Contact)) == 1
    assert events_of(engine, inbound.linkedid) == [("ringing", None)]
    assert pbx.spool.counts() == (0, 0)
