"""The PBX in the box: the call player, `pbx-crm demo` playing calls, `pbx-crm simulate`.

The player's stories run in-process on SQLite and PostgreSQL against the real FastAGI server
and the real AMI listener following a loopback FakeAmiServer; each plays one whole call, both
paths, in Asterisk's order, with its waits scaled to nothing, and checks what the CRM wrote.
Then the two commands as a user runs them: real processes from ``/`` on an SQLite file,
stopped with SIGTERM like a service.

Cast: ana 101, budi 102, citra 103 (the ring group), hana a head; DID 2150001.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import pytest
from sqlmodel import select

from call_replay import feed_all
from factories import make_contact, make_deal, make_pipeline, make_user
from pbx_crm.funnel import events
from pbx_crm.funnel.deal_card import deal_card
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_listener import AmiListener
from pbx_crm.components import start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import make_engine, transaction
from pbx_crm.models import Call, Deal, Event, Stage, Task, TimelineEntry, utcnow
from pbx_crm.simulator.ami import FakeAmiServer
from pbx_crm.simulator.ami_calls import ScenarioBuilder
from pbx_crm.simulator.floor_calls import FloorCall, floor_calls
from pbx_crm.simulator.callers import random_calls
from pbx_crm.simulator.pbx import OWNER, CallPlayer, EmulatorLink, SimulatedCall
from pbx_crm.simulator.queue_calls import queue_call
from pbx_crm.simulator.transfer_calls import blind_transfer
from pbx_crm.telephony.ami_protocol import parse_stream
from pbx_crm.telephony.call_tracker import CallEnded, CallTracker, DeviceMap

WAIT = 10.0
PBX_CRM = str(Path(sys.executable).parent / "pbx-crm")


# --- in-process: the player against the real FastAGI server and AMI listener -------------


@dataclass(frozen=True)
class Team:
    ana: int
    budi: int
    citra: int
    hana: int
    actors: dict


@pytest.fixture
def team(engine) -> Team:
    with transaction(engine) as session:
        make_pipeline(session)
        actors = {login: make_user(session, login, role=role, extensions=exts)
                  for login, role, exts in (("ana", "seller", ["101"]),
                                            ("budi", "seller", ["102"]),
                                            ("citra", "seller", ["103"]),
                                            ("hana", "head", []))}
    return Team(**{login: actor.user_id for login, actor in actors.items()}, actors=actors)


@dataclass
class PhoneSystem:
    ami: FakeAmiServer
    listener: AmiListener
    fastagi: object

    def player(self, ami=None, time_scale: float = 0) -> CallPlayer:
        return CallPlayer(self.fastagi.address, ami or self.ami, time_scale=time_scale)

    def play(self, call: SimulatedCall, *, ami=None, time_scale: float = 0):
        """One whole call (played without waits unless ``time_scale``); returns once the
        listener has handled every event it caused."""
        played = self.player(ami, time_scale).play(call)
        assert self.listener.wait_idle(WAIT), "the AMI listener fell behind"
        assert not played.errors, played.errors
        return played


@pytest.fixture
def phones(engine, tmp_path, team):
    """The CRM's two telephony edges, running, and Asterisk's AMI played by the emulator."""
    with FakeAmiServer(users={"crm": "secret"}) as ami:
        settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                            fastagi_listen=Address("127.0.0.1", 0), hook_budget_ms=5000,
                            ami_host=ami.host, ami_port=ami.port, ami_username="crm",
                            ami_secret="secret")
        fastagi = start_fastagi(settings, engine, replay_interval=3600)
        client = partial(AmiClient, reconnect_delay=0.01, connect_timeout=WAIT,
                         action_timeout=WAIT)
        listener = AmiListener(engine, settings, client_factory=client, hangup_grace=0).start()
        try:
            assert listener.wait_until(lambda: listener.resyncs >= 1, WAIT)
            yield PhoneSystem(ami, listener, fastagi)
        finally:
            listener.stop()
            fastagi.stop()


def the_call(engine, linkedid: str) -> Call:
    with transaction(engine, read_only=True) as session:
        return session.exec(select(Call).where(Call.uniqueid == linkedid)).one()


def deal_of(engine, call: Call) -> tuple[Deal, str]:
    with transaction(engine, read_only=True) as session:
        deal = session.get(Deal, call.deal_id)
        return deal, session.get(Stage, deal.stage_id).name


def pops(engine, linkedid: str, kind: str = events.RINGING, *,
         source: str | None = None) -> list[int | None]:
    """Who was shown the call (``source``: by that writer alone, e.g. "ami"): not the
    later "ringing" that only tells a pop shown before the call was recorded its deal (it
    opens no card, and comes only when the ring was first)."""
    with transaction(engine, read_only=True) as session:
        return [event.target_user_id for event in session.exec(
            select(Event).where(Event.linkedid == linkedid, Event.kind == kind)
            .order_by(Event.id)) if not event.payload.get("update")
            and source in (None, event.payload.get("source"))]


def known_caller_of(engine, seller, number: str = "0812-1034-5521") -> int:
    """Agus Salim, whose open deal is ``seller``'s; returns the deal's id."""
    with transaction(engine) as session:
        contact = make_contact(session, "Agus Salim", phones=[number])
        return make_deal(session, seller, title="Cloud PBX", contact_id=contact.id).id


def test_a_new_caller_rings_the_group_and_ana_who_answers_takes_the_unsorted_deal(
        engine, team, phones):
    played = phones.play(SimulatedCall("081355006611", "TOKO MAJU", answer="101",
                                       ring_seconds=4, talk_seconds=42))

    assert (played.status, played.dials, played.answered_by) == (
        "NEW", [("101", "102", "103")], "101")
    assert (played.dialstatus, played.disposition) == ("ANSWER", "answered")
    call = the_call(engine, played.linkedid)
    assert (call.linkedid, call.caller_e164, call.did) == (
        played.linkedid, "+6281355006611", "2150001")
    assert (call.disposition, call.answered_exten, call.answered_by_id) == (
        "answered", "101", team.ana)
    deal, stage = deal_of(engine, call)
    assert (deal.owner_id, stage, deal.source) == (team.ana, "Opportunity", "call")
    # Every phone that rang popped the card (AMI); the heads heard of it from the lookup.
    assert sorted(pops(engine, played.linkedid), key=str) == sorted(
        [None, team.ana, team.budi, team.citra], key=str)
    assert sorted(pops(engine, played.linkedid, events.STOPPED_RINGING)) == [team.budi,
                                                                            team.citra]
    with transaction(engine, read_only=True) as session:
        entry = session.exec(select(TimelineEntry).where(
            TimelineEntry.deal_id == deal.id, TimelineEntry.kind == "call")).one()
    # Played without a wait, the talk took no time: Asterisk would report none either.
    assert entry.body == "Inbound call answered: +6281355006611"
    assert played.describe({"101": "ana", "102": "budi", "103": "citra"}) == (
        "call from 081355006611 (TOKO MAJU) [NEW] → rings ana, budi, citra "
        "→ answered by ana, 42 s")


def test_a_call_played_at_a_twentieth_of_its_time_reports_the_talk_it_played(
        engine, team, phones):
    """A 40 s talk played at time scale 0.05 lasts 2 s: the hangup hook's ANSWEREDTIME says
    2, and so do the deal page's call line (answer to hangup) and its timeline line."""
    played = phones.play(SimulatedCall("081355006622", answer="101", ring_seconds=2,
                                       talk_seconds=40), time_scale=0.05)

    assert played.transcripts["hangup"].channel.variables["ANSWEREDTIME"] == "2"
    call = the_call(engine, played.linkedid)
    with transaction(engine, read_only=True) as session:
        card = deal_card(session, team.actors["hana"], call.deal_id)
    (line,) = [line for line in card.timeline if line.entry.kind == "call"]
    # Answer to hangup as the CRM saw them: the hooks' round trips may add a second on a
    # busy machine, as on a real Asterisk; never the 40 s the call stands for.
    assert line.call_seconds in (2, 3)
    assert line.entry.body == "Inbound call answered: +6281355006622, 2 s"
    assert line.entry.data["talk_seconds"] == 2
    # The emulator's own line tells the call as simulated.
    assert played.describe().endswith("→ answered by ext 101, 40 s")


def test_a_known_caller_rings_their_seller_first_and_only_that_seller_pops(
        engine, team, phones):
    deal_id = known_caller_of(engine, team.actors["budi"])

    played = phones.play(SimulatedCall("081210345521", answer=OWNER, talk_seconds=90))

    assert (played.status, played.lookup["CRM_OWNER_EXTEN"]) == ("FOUND", "102")
    assert (played.dials, played.owner_first, played.answered_by) == ([("102",)], "102", "102")
    # budi's pop came with the lookup, and his ringing phone did not repeat it.
    assert [user for user in pops(engine, played.linkedid) if user] == [team.budi]
    call = the_call(engine, played.linkedid)
    assert (call.deal_id, call.answered_by_id, call.disposition) == (deal_id, team.budi,
                                                                      "answered")
    assert "Agus Salim" in played.describe() and "(owner)" in played.describe()


def test_when_the_seller_does_not_answer_the_group_rings_and_the_deal_stays_theirs(
        engine, team, phones):
    deal_id = known_caller_of(engine, team.actors["budi"])

    played = phones.play(SimulatedCall("+6281210345521", answer="103"))

    assert played.dials == [("102",), ("101", "102", "103")]
    call = the_call(engine, played.linkedid)
    assert (call.answered_exten, call.answered_by_id) == ("103", team.citra)
    deal, _ = deal_of(engine, call)
    assert (deal.id, deal.owner_id) == (deal_id, team.budi)
    assert team.budi in pops(engine, played.linkedid, events.STOPPED_RINGING)
    assert {team.ana, team.citra} <= set(pops(engine, played.linkedid))


def test_a_missed_call_leaves_a_callback_task_in_the_unsorted_queue(engine, team, phones):
    played = phones.play(SimulatedCall("0857-1100-2299", answer=None, unanswered="missed"))

    assert (played.dialstatus, played.disposition, played.outcome) == (
        "NOANSWER", "missed", "missed")
    call = the_call(engine, played.linkedid)
    assert (call.disposition, call.answered_at) == ("missed", None)
    with transaction(engine, read_only=True) as session:
        task = session.exec(select(Task).where(Task.deal_id == call.deal_id)).one()
    assert (task.kind, task.assignee_id) == ("callback", None)
    assert sorted(pops(engine, played.linkedid, events.STOPPED_RINGING)) == sorted(
        [team.ana, team.budi, team.citra])


@pytest.mark.parametrize("ending, dialstatus, callback", [("abandoned", "CANCEL", True),
                                                           ("busy", "BUSY", False)])
def test_a_caller_who_gives_up_or_finds_everyone_busy(engine, team, phones, ending,
                                                      dialstatus, callback):
    played = phones.play(SimulatedCall("0813-5500-6611", answer=None, unanswered=ending))

    assert (played.dialstatus, played.disposition) == (dialstatus, ending)
    call = the_call(engine, played.linkedid)
    with transaction(engine, read_only=True) as session:
        tasks = session.exec(select(Task).where(Task.deal_id == call.deal_id)).all()
    assert (call.disposition, len(tasks)) == (ending, 1 if callback else 0)


def test_a_ring_group_of_three_with_budi_answering_gives_the_deal_one_owner(
        engine, team, phones):
    played = phones.play(SimulatedCall("", answer="102"))  # a withheld number, too
    assert played.status == "ANONYMOUS"
    new = phones.play(SimulatedCall("0822-9911-2233", answer="102"))

    call = the_call(engine, new.linkedid)
    deal, _ = deal_of(engine, call)
    assert (deal.owner_id, call.answered_by_id) == (team.budi, team.budi)
    assert pops(engine, new.linkedid, events.ANSWERED).count(team.budi) == 1
    assert sorted(pops(engine, new.linkedid, events.STOPPED_RINGING)) == [team.ana,
                                                                          team.citra]
    with transaction(engine, read_only=True) as session:
        taken = session.exec(select(TimelineEntry).where(
            TimelineEntry.deal_id == deal.id, TimelineEntry.kind == "assignment")).all()
    assert [entry.body for entry in taken] == ["Taken by Budi"]


def test_the_phones_ring_through_the_emulators_own_action_as_simulate_plays_them(
        engine, team, phones):
    link = EmulatorLink(phones.ami.host, phones.ami.port, "crm", "secret").connect()
    try:
        played = phones.play(SimulatedCall("0878-1234-5678", answer="103"), ami=link)
    finally:
        link.close()

    from_ami = pops(engine, played.linkedid, source="ami")
    # (The heads' pop comes from whichever of the lookup and the listener writes first.)
    assert sorted(u for u in from_ami if u is not None) == sorted([team.ana, team.budi,
                                                                   team.citra])
    assert the_call(engine, played.linkedid).answered_by_id == team.citra


def test_random_calls_are_a_believable_mix():
    known = [f"+62812{n:07d}" for n in range(40)]
    calls = list(islice(random_calls(random.Random(1), known), 2000))

    kinds = Counter("anonymous" if not c.caller
                    else "known" if c.caller.replace("+62", "0", 1) in
                    {k.replace("+62", "0", 1) for k in known} else "new" for c in calls)
    unanswered = Counter(c.unanswered for c in calls if c.answer is None)
    assert 0.38 < kinds["new"] / 2000 < 0.52 and 0.38 < kinds["known"] / 2000 < 0.52
    assert 0.06 < kinds["anonymous"] / 2000 < 0.14
    assert 0.11 < sum(unanswered.values()) / 2000 < 0.19
    assert set(unanswered) == {"missed", "abandoned", "busy"}
    assert any(c.answer == OWNER for c in calls) and any(not c.owner_first for c in calls)
    assert all(5 <= c.talk_seconds <= 300 for c in calls)
    # The trunk sends numbers both ways: national 0812... and +62812...
    assert {c.caller[:1] for c in calls if c.caller} == {"0", "+"}


# --- the sales floor's other calls: queues, transfers, two devices ---------------------------

NAMES = {"101": "ana", "102": "budi", "103": "citra"}


def test_a_ringall_queue_call_is_budis_who_answered_not_the_last_phone_rung(
        engine, team, phones):
    played = phones.play(FloorCall("queue", "0813-7700-1122", "TOKO MAJU",
                                   ("101", "102", "103"), answer="102", talk_seconds=42))

    assert (played.queue, played.dials, played.answered_by) == (
        "sales", [("101", "102", "103")], "102")
    # Queue's gosub hook ran the answered hook on budi's leg; the hangup hook ran too.
    assert set(played.transcripts) == {"incoming", "answered", "hangup"}
    call = the_call(engine, played.linkedid)
    assert (call.answered_exten, call.answered_by_id) == ("102", team.budi)
    deal, _ = deal_of(engine, call)
    assert deal.owner_id == team.budi
    assert set(pops(engine, played.linkedid, events.STOPPED_RINGING)) == {team.ana,
                                                                         team.citra}
    assert played.describe(NAMES) == (
        "call from 0813-7700-1122 (TOKO MAJU) [NEW] → queue sales rings ana, budi, citra "
        "→ answered by budi, 42 s")


def test_an_rrmemory_queue_rings_ana_out_then_budi_answers(engine, team, phones):
    played = phones.play(FloorCall("queue-rrmemory", "0813-7700-1133",
                                   members=("101", "102", "103")))

    assert (played.queue, played.dials, played.answered_by) == (
        "sales-rr", [("101",), ("102",)], "102")
    assert the_call(engine, played.linkedid).answered_by_id == team.budi


def test_a_caller_who_gives_up_in_the_queue_is_nobodys_answer(engine, team, phones):
    played = phones.play(FloorCall("queue-abandoned", "0813-7700-1144",
                                   members=("101", "102", "103"), ring_seconds=6))

    assert (played.outcome, played.answered_by, played.hold_seconds) == ("abandoned", None, 6)
    assert "answered" not in played.transcripts
    call = the_call(engine, played.linkedid)
    assert (call.answered_at, call.answered_by_id) == (None, None)
    assert "→ the caller hung up after 6 s in the queue" in played.describe(NAMES)


@pytest.mark.parametrize("kind", ["blind-transfer", "attended-transfer"])
def test_ana_answers_and_transfers_the_caller_to_budi(engine, team, phones, kind):
    played = phones.play(FloorCall(kind, "0813-7700-1155", members=("101", "102")))

    assert (played.dials, played.answered_by, played.transfer) == (
        [("101",), ("102",)], "101", (kind.split("-")[0], "101", "102"))
    call = the_call(engine, played.linkedid)  # one call, whoever talked
    assert call.answered_at is not None
    assert team.budi in pops(engine, played.linkedid)  # budi's phone rang for it
    assert played.describe(NAMES).endswith(
        f"→ rings ana → answered by ana, 30 s → transferred ({kind.split('-')[0]}) to budi")


def test_ana_rings_on_two_devices_and_answers_on_her_softphone(engine, team, phones):
    from pbx_crm.people import users

    with transaction(engine) as session:
        users.set_devices(session, team.actors["hana"], team.ana, "101", ["101a", "101b"])
    phones.listener.refresh_devices()

    played = phones.play(FloorCall("two-devices", "0813-7700-1166",
                                   devices=("101", ("101a", "101b"))))

    assert (played.answered_by, played.device) == ("101", "101b")
    call = the_call(engine, played.linkedid)
    assert call.answered_by_id == team.ana
    assert [user for user in pops(engine, played.linkedid) if user] == [team.ana]
    assert played.describe(NAMES).endswith("→ rings ana on 101a, 101b → answered by ana "
                                           "on 101b, 30 s")


def test_a_queue_call_and_a_transfer_written_at_a_tenth_of_their_time_report_the_talk_played():
    """What the AMI side says of the talk (the queue's TalkTime, the CDRs' BillableSeconds)
    is, like ANSWEREDTIME, the time played: the CRM's clock reads the same."""
    builder = ScenarioBuilder(time_scale=0.1)
    queued = queue_call(builder, "081377001171", "2150001", ["101", "102"], "102",
                        ring_seconds=6, talk_seconds=211)
    messages = parse_stream(b"".join(queued.phases.values()))[1]
    (ended,) = [signal for signal in feed_all(CallTracker(DeviceMap()), messages)
                if isinstance(signal, CallEnded)]
    assert (ended.talk_by, ended.talk_seconds) == ((("102", 21),), 21)

    transfer = blind_transfer(builder, "081377001172", "2150001", "101", "102",
                              talk_seconds=100, target_talk_seconds=211)
    assert transfer.answered_time == 21  # the hangup hook's ANSWEREDTIME: budi's talk
    billed = [message.get("BillableSeconds")
              for message in parse_stream(b"".join(transfer.phases.values()))[1]
              if message.get("Event") == "Cdr" and message.get("UniqueID") == transfer.linkedid]
    assert billed == ["10", "21"]  # the caller's leg, with ana, then with budi


def test_floor_calls_mix_queues_and_transfers_into_the_ring_group_calls():
    calls = list(islice(floor_calls(random.Random(1), ring_group=("101", "102", "103"),
                                    devices={"101": ["101a", "101b"]}), 2000))

    kinds = Counter(getattr(call, "kind", "ring group") for call in calls)
    assert 0.25 < 1 - kinds["ring group"] / 2000 < 0.35
    assert set(kinds) == {"ring group", "queue", "queue-rrmemory", "queue-abandoned",
                          "blind-transfer", "attended-transfer", "two-devices"}
    assert all(len(set(call.members)) == 2 for call in calls
               if getattr(call, "kind", "").endswith("transfer"))
    # Without a seller on two devices there is no such call; at share 0, ring groups only.
    assert not any(getattr(call, "kind", "") == "two-devices" for call in islice(
        floor_calls(random.Random(1), ring_group=("101", "102")), 500))
    assert not any(isinstance(call, FloorCall) for call in islice(
        floor_calls(random.Random(1), ring_group=("101", "102"), share=0), 500))


# --- the commands ----------------------------------------------------------------------------


def test_simulate_with_nothing_serving_says_so_and_fails(engine, team, capsys):
    from pbx_crm.cli import main as cli

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code = cli.main(["--database-url", engine.url.render_as_string(False), "simulate",
                     "--calls", "3", "--fastagi", f"127.0.0.1:{port}", "--time-scale", "0"])

    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"no FastAGI server answered at 127.0.0.1:{port}" in err
    assert "playing the AGI path only" in out and "UNAVAILABLE 1" in out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A `pbx-crm` process whose stdout lines are read as they come."""

    def __init__(self, args, env):
        self.popen = subprocess.Popen([PBX_CRM, *args], cwd="/", env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.popen.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, condition, *, timeout: float = 30.0, what: str = "a line"):
        """Read lines until ``condition(lines)`` is true (returned), or fail at the deadline."""
        deadline = time.monotonic() + timeout
        while not (found := condition(self.lines)):
            try:
                self.lines.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout} s; stdout so far:\n"
                                     + "\n".join(self.lines)) from None
        return found

    def terminate(self) -> tuple[int, str]:
        self.popen.send_signal(signal.SIGTERM)
        _, err = self.popen.communicate(timeout=30)
        return self.popen.returncode, err

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.communicate()


@pytest.fixture
def demo_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_CRM_")}
    env.update(PYTHONUNBUFFERED="1", PBX_CRM_FASTAGI_LISTEN=f"127.0.0.1:{free_port()}",
               PBX_CRM_AMI_PORT=str(free_port()))
    return env


@pytest.fixture
def running(tmp_path, demo_env):
    """Start `pbx-crm demo ...` on a data directory of its own; killed if a test fails."""
    started = []

    def start(*args) -> Process:
        started.append(Process(["--data-dir", str(tmp_path / "data"), "demo", *args],
                               demo_env))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def demo_database(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'data' / 'pbx-crm.sqlite3'}")


def eventually(condition, *, timeout: float = WAIT, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
    return result


def ami_pops_for_sellers(engine) -> int:
    with transaction(engine, read_only=True) as session:
        return sum(1 for event in session.exec(select(Event).where(
            Event.kind == events.RINGING, Event.target_user_id.is_not(None)))
            if event.payload.get("source") == "ami")


def test_the_demo_rings_calls_through_fastagi_and_ami_until_stopped_like_a_service(
        tmp_path, running):
    started = utcnow()  # the demo's own calls (its callers nobody answered) rang before
    demo = running("--calls-every", "0.3", "--time-scale", "0.005", "--floor-calls", "0.5")

    calls = demo.wait_for(lambda lines: [line for line in lines if line.startswith(
        "call from ")][:2] if sum(line.startswith("call from ") for line in lines) >= 2
        else None, what="two demo calls")
    engine = demo_database(tmp_path)
    try:
        def ended_calls():
            with transaction(engine, read_only=True) as session:
                return session.exec(select(Call).where(Call.ended_at.is_not(None),
                                                       Call.ringing_at >= started)).all()

        # The hangups are recorded as the calls end (behind the lookup's recording, if that is
        # still being written): soon after the lines are printed, if not before.
        recorded = eventually(lambda: (lambda ended: ended if len(ended) >= 2 else None)(
            ended_calls()), what="two demo calls recorded as ended")
        with transaction(engine, read_only=True) as session:
            demo_deals = {deal.id for deal in session.exec(select(Deal))}
        assert all(call.deal_id in demo_deals for call in recorded if call.deal_id)
        eventually(lambda: ami_pops_for_sellers(engine), what="an AMI pop for a seller")
    finally:
        engine.dispose()
    code, err = demo.terminate()
    assert code == 0, err
    assert "Traceback" not in err
    assert any(re.search(r"→ (answered by (ana|budi|citra), \d+ s|missed|busy|the caller)",
                         line) for line in calls)
    assert any(line.startswith("PBX: the demo's Asterisk emulator serves AMI on 127.0.0.1:")
               for line in demo.lines)


def test_simulate_plays_calls_into_a_running_demo_through_both_paths(tmp_path, running):
    demo = running("--no-calls")
    hint = demo.wait_for(lambda lines: next((line for line in lines if " simulate " in line),
                                            None), what="the simulate command line")
    demo.wait_for(lambda lines: any(line.startswith("Started ami") for line in lines),
                  what="the AMI listener starting")
    # The printed line as printed (its environment assignments applied), then options of
    # this test's own: the last of an option given twice wins.
    words = shlex.split(hint)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_CRM_")}
    env.update(word.split("=", 1) for word in words if word.startswith("PBX_CRM_"))
    command = [word for word in words if not word.startswith("PBX_CRM_")]
    engine = demo_database(tmp_path)
    with transaction(engine, read_only=True) as session:
        before = len(session.exec(select(Call)).all())  # the demo's callers nobody answered
    try:
        simulate = subprocess.run(
            [*command, "--calls", "5", "--rate", "5", "--seed", "3", "--time-scale", "0.005",
             "--floor-calls", "1"],
            cwd="/", env=env, capture_output=True, text=True, timeout=60, check=False)
        assert simulate.returncode == 0, simulate.stderr
        out = simulate.stdout
        assert "AMI: the phones ring through the demo's emulator" in out
        assert len(re.findall(r"^\[\d/5\] call from ", out, re.MULTILINE)) == 5
        # Every call a queue call, a transfer or ana's two devices (--floor-calls 1).
        assert len(re.findall(r"→ (queue sales|rings ana on 101a|.* → transferred)", out)) == 5
        summary = out.strip().splitlines()[-1]
        assert re.match(r"5 calls in [\d.]+ s: NEW \d, FOUND \d, ANONYMOUS \d, UNAVAILABLE 0; "
                        r"answered \d, missed \d, busy \d, abandoned \d$", summary), summary
        with transaction(engine, read_only=True) as session:
            assert len(session.exec(select(Call)).all()) == before + 5
        eventually(lambda: ami_pops_for_sellers(engine), what="an AMI pop for a seller")
    finally:
        engine.dispose()
    code, err = demo.terminate()
    assert code == 0, err
