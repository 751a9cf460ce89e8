"""Benchmark: whole inbound calls as a trunk delivers them, open loop, against a FastAGI floor.

The full runs (from the repository's root; the PostgreSQL database made once, empty, and
seeded by the first run, as is the SQLite file in the temp directory):

    .venv/bin/python bench/pbx_calls.py --rate 100 --seconds 60
    .venv/bin/python bench/pbx_calls.py --burst 100
    PGPASSWORD=pbx_crm_test createdb -h 127.0.0.1 -U pbx_crm_test pbx_crm_bench_calls
    .venv/bin/python bench/pbx_calls.py --rate 100 --seconds 60 \\
        --database-url postgresql+psycopg://pbx_crm_test:pbx_crm_test@127.0.0.1:5432/pbx_crm_bench_calls
    .venv/bin/python bench/pbx_calls.py --burst 100 \\
        --database-url postgresql+psycopg://pbx_crm_test:pbx_crm_test@127.0.0.1:5432/pbx_crm_bench_calls

A quick run at a tiny scale (its own seed of 10,000 contacts; on PostgreSQL, its own database):

    .venv/bin/python bench/pbx_calls.py --contacts 10000 --rate 10 --seconds 5 --rounds 1
    .venv/bin/python bench/pbx_calls.py --contacts 10000 --burst 100 --rounds 1

What a PBX does to the CRM, played at a set arrival rate whatever the CRM's speed: calls
arrive as a Poisson process (exponential gaps) at ``--rate`` calls/s for ``--seconds``, or, with
``--burst N``, N calls spread uniformly within 100 ms (a trunk coming back), once per round.
Each call is played as Asterisk plays it (``pbx_crm.simulator.pbx``, the steps of
``tests/telephony.py``): ``incoming`` on the inbound trunk leg; for most calls, after the
phones rang a while, ``answered`` on the leg that picked up (the seller the CRM named, else a
phone of the ring group); after the talk (or the ringing, for a call nobody answered),
``hangup`` in the inbound leg's hangup handler with the matching DIALSTATUS, HANGUPCAUSE and
ANSWEREDTIME. The gaps are a PBX's (rings of 3-20 s, talks of about 90 s) times
``--time-scale``, so calls overlap as on a PBX, only shorter. 80% of the callers are numbers
of seeded contacts with an open deal (FOUND), 20% numbers nobody has (NEW: a contact and an
Unsorted deal are created).

Two servers run in this process, in the same run, taking turns in ``--rounds`` parts:

  * the floor: the real ``FastAgiServer`` whose dispatcher does one indexed lookup
    (``contact_phones`` by ``e164``) per session and returns one variable, playing the same
    kind of calls;
  * the product: ``start_fastagi(settings, engine)``, started as ``pbx-crm fastagi`` starts
    it (hooks, dispatcher, spool and its replayer).

The load generator is a child process of its own (its CPU is not on the servers' account). It
is open-loop: a scheduler thread starts each call in a thread of its own at its planned time,
whether or not earlier calls have finished; how late each session started against its plan
(the arrival for ``incoming``, the end of the previous step plus the gap for the others) is
measured and reported, so a generator that falls behind shows. Per server and hook it prints
p50, p99 and max of the answer time (from connect to the server's close), the count of
``CRM_STATUS=UNAVAILABLE`` answers and of failed sessions; then whether every call the
product got is recorded exactly once in ``calls`` (by uniqueid, with the disposition its
DIALSTATUS gives, and no second row under its linkedid), after the hooks that overran their
budget finished and the spool was replayed; then the issue's goals, met or missed (for a
burst: whether every session of every hook was answered within the 500 ms hook budget).

The database is seeded on first use (``pbx_crm.sample.seed``: ``--contacts`` contacts, a fifth as many
deals, 20 sellers ringing on extensions 201-220) and reused by later runs; the SQLite file is
``pbx-crm-bench-agi-<contacts>.sqlite3`` in the temp directory. Every run adds its calls, and
its new callers' contacts and deals.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchkit import ensure_deals, percentile
from sqlalchemy import func, text
from sqlmodel import select

from pbx_crm.people import users
from pbx_crm.components import FASTAGI_WORKERS, start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import make_engine, transaction
from pbx_crm.enums import Role, StageKind
from pbx_crm.rules.funnel import Actor
from pbx_crm.models import Call, Contact, ContactPhone, Deal, Stage, User, UserExtension
from pbx_crm.sample.seed import _number_plan
from pbx_crm.simulator.pbx import (
    agi_answered,
    agi_hangup,
    agi_incoming,
    answering_leg,
    hang_up,
    inbound_leg,
    variables_set,
)
from pbx_crm.telephony.fastagi import FastAgiServer

PIPELINE = "Sales"
REGION = "ID"
DID = "2150001"  # the number the callers dialled (agi_arg_1)
SELLER_EXTENSIONS = 200  # seller001 rings 201, seller002 202, ...
FLOOR = "floor: bare FastAGI + 1 lookup"
PRODUCT = "pbx-crm fastagi"
HOOKS = ("incoming", "answered", "hangup")
RING_GROUP = [str(SELLER_EXTENSIONS + n) for n in range(1, 21)]  # the seeded sellers' phones
BURST_WINDOW = 0.1  # seconds a burst's calls arrive within
DISPOSITIONS = {"ANSWER": "answered", "NOANSWER": "missed", "CANCEL": "abandoned",
                "BUSY": "busy"}

# Goals from the issue.
P50_GOAL_MS, P99_GOAL_MS, BUDGET_MS = 2.0, 10.0, 500.0


# --- the data -------------------------------------------------------------------------------


def seeded_engine(database_url: str | None, contacts: int, deals: int | None):
    """The bench's database (an SQLite file in the temp directory unless a URL is given),
    seeded on first use with ``contacts`` contacts and ``deals`` deals (a fifth as many by
    default), and reused by later runs."""
    url = database_url or \
        f"sqlite:///{Path(tempfile.gettempdir()) / f'pbx-crm-bench-agi-{contacts}.sqlite3'}"
    engine = make_engine(url)
    ensure_deals(engine, deals if deals is not None else contacts // 5, contacts=contacts,
                 random_seed=1, pipeline_name=PIPELINE)
    ring_on_extensions(engine)
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load (and after the last run's new contacts):
        # statistics, and the visibility map.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    return engine


def ring_on_extensions(engine) -> None:
    """Each seller rings on an extension: the FOUND path then looks up the owner's extension
    and tells the owner's browser, as in production."""
    with transaction(engine) as session:
        sellers = session.exec(select(User.id).where(User.role == Role.SELLER.value)
                               .order_by(User.id)).all()
        ringing = set(session.exec(select(UserExtension.user_id)).all())
        for n, user_id in enumerate(sellers, 1):
            if user_id not in ringing:
                users.set_extensions(session, Actor.system("bench"), user_id,
                                     [str(SELLER_EXTENSIONS + n)])


def known_numbers(engine, count: int, rng: random.Random) -> list[str]:
    """Up to ``count`` numbers of contacts with an open deal: each rings as FOUND."""
    found: list[str] = []
    with transaction(engine, read_only=True) as session:
        top = session.exec(select(func.max(Deal.id))).one()
        ids = rng.sample(range(1, top + 1), min(top, 3 * count))
        for start in range(0, len(ids), 500):
            found += session.exec(
                select(ContactPhone.e164).join(Deal, Deal.contact_id == ContactPhone.contact_id)
                .join(Stage, Stage.id == Deal.stage_id)
                .where(Deal.id.in_(ids[start:start + 500]), Stage.kind == StageKind.OPEN.value)
            ).all()
            if len(set(found)) >= count:
                break
    found = sorted(set(found))
    rng.shuffle(found)
    if not found:
        sys.exit("no contact has an open deal: seed deals")
    return found[:count]


class NewNumbers:
    """Valid numbers of the region that no contact has: each rings as NEW (once)."""

    def __init__(self, engine):
        self.engine = engine
        self.plan = _number_plan(REGION)
        with transaction(engine, read_only=True) as session:
            # The seed numbers contact n 2n and 2n + 1: start past every contact there is.
            self.next = 2 * (session.exec(select(func.max(Contact.id))).one() or 0) + 2

    def take(self, count: int) -> list[str]:
        numbers: list[str] = []
        with transaction(self.engine, read_only=True) as session:
            while len(numbers) < count:
                batch = [self.plan.number(x) for x in range(self.next, self.next + 500)]
                self.next += 500
                taken = set(session.exec(select(ContactPhone.e164)
                                         .where(ContactPhone.e164.in_(batch))).all())
                numbers += [number for number in batch if number not in taken]
        return numbers[:count]


# --- the floor, and watching the product ------------------------------------------------------


class IndexedLookup:
    """The floor's dispatcher: one indexed lookup through the same engine, one variable."""

    QUERY = text("SELECT contact_id FROM contact_phones WHERE e164 = :e164")

    def __init__(self, engine):
        # A plain read: on SQLite, BEGIN DEFERRED (the engine's default is IMMEDIATE).
        self.engine = engine.execution_options(sqlite_begin="DEFERRED")

    def handle(self, request):
        with self.engine.connect() as connection:
            contact_id = connection.execute(self.QUERY, {"e164": request.callerid}).scalar()
        return {"CRM_STATUS": "FOUND" if contact_id else "NEW"}

    def overloaded(self, request):
        return {"CRM_STATUS": "UNAVAILABLE"}


class Refusals(logging.Handler):
    """Why the product answered UNAVAILABLE, seen from outside the dispatcher: the requests it
    spooled (``Spool.put``, with the reason it gives) and its ``... answered UNAVAILABLE:
    <reason>`` warnings, by reason; its other warnings by message. Observation only: should
    either change shape, they are just not counted. Warnings are counted, not printed (there
    are thousands in a run at 100 calls/s); errors still go to stderr."""

    def __init__(self, running):
        super().__init__(logging.WARNING)
        self.reasons: Counter = Counter()
        self.warnings: Counter = Counter()
        spool = running.spool
        put = getattr(spool, "put", None)
        self.counts_spooled = put is not None
        if put is not None:
            def counted_put(*args, **kwargs):
                if not kwargs.get("in_flight"):  # an answered lookup's row, until recorded
                    reason = kwargs.get("reason", args[-1] if args else "")
                    self.reasons["spooled: " + _reason(str(reason))] += 1
                return put(*args, **kwargs)

            spool.put = counted_put
        logging.getLogger("pbx_crm").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno > logging.WARNING:
            if logging.lastResort is not None:
                logging.lastResort.handle(record)
            return
        message = record.getMessage()
        if "answered UNAVAILABLE: " in message:
            reason = message.split("answered UNAVAILABLE: ", 1)[1]
            self.reasons["answered UNAVAILABLE: " + _reason(reason)] += 1
        elif not (self.counts_spooled and " spooled: " in message):  # counted by the spool
            # By kind: without the session's "[uniqueid] " prefix, or any uniqueid within.
            message = re.sub(r"^\[[^]]*\] ", "", message)
            self.warnings[re.sub(r"\b\d{9,}\.\d+\b", "<uniqueid>", message)] += 1

    def close(self) -> None:
        logging.getLogger("pbx_crm").removeHandler(self)
        super().close()


def _reason(reason: str) -> str:
    return reason.split("(")[0]  # an exception's repr: keep its class


def drain(running, timeout: float = 120.0) -> int:
    """Let the hooks that overran their budget finish, and replay what the run spooled, so
    that neither loads the next part; returns how many requests are left (none, unless the
    replay itself fails)."""
    deadline = time.monotonic() + timeout
    running.dispatcher.wait_idle(timeout)
    while running.spool.counts()[0] and time.monotonic() < deadline:
        running.dispatcher.replay_spooled()
    waiting, set_aside = running.spool.counts()
    return waiting + set_aside


# --- the calls ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    """One call as the trunk will deliver it; seconds are a PBX's (before the time scale)."""

    at: float  # real seconds after the part's start: the arrival
    serial: int  # the inbound leg's uniqueid is <epoch>.<serial>, the answering leg's +1
    epoch: int
    caller: str
    known: bool
    dialstatus: str  # ANSWER, NOANSWER, CANCEL or BUSY
    ring: float  # until the phone is picked up, or the call ends unanswered
    talk: int  # ANSWEREDTIME, for an answered call

    @property
    def uniqueid(self) -> str:
        return f"{self.epoch}.{self.serial}"


def plan_calls(rng: random.Random, arrivals: list[float], callers, missed_share: float,
               first_serial: int, epoch: int) -> list[PlannedCall]:
    """``callers``: (number, known) per call. A missed call rings out (NOANSWER, the ring
    group's 30 s), or the caller gives up first (CANCEL), or every phone is busy (BUSY)."""
    calls = []
    for n, (at, (number, known)) in enumerate(zip(arrivals, callers)):
        talk = 0
        if rng.random() >= missed_share:
            status, ring = "ANSWER", rng.uniform(3, 20)
            talk = min(600, max(1, round(rng.expovariate(1 / 90))))
        else:
            status = rng.choices(("NOANSWER", "CANCEL", "BUSY"), (0.7, 0.2, 0.1))[0]
            ring = {"NOANSWER": 30.0, "CANCEL": rng.uniform(5, 25), "BUSY": 0.5}[status]
        calls.append(PlannedCall(at, first_serial + 2 * n, epoch, number, known, status, ring,
                                 talk))
    return calls


def poisson_arrivals(rng: random.Random, rate: float, seconds: float) -> list[float]:
    arrivals, at = [], rng.expovariate(rate)
    while at < seconds:
        arrivals.append(at)
        at += rng.expovariate(rate)
    return arrivals


def burst_arrivals(rng: random.Random, count: int) -> list[float]:
    return sorted(rng.uniform(0, BURST_WINDOW) for _ in range(count))


# --- the load generator (runs in a child process) ---------------------------------------------


@dataclass
class Session:
    """One AGI session of a call, as the generator saw it."""

    hook: str
    ms: float  # from connect to the server's close
    late_ms: float  # how much later than planned it started
    status: str  # CRM_STATUS ("" when the hook sets none), or what went wrong


@dataclass
class PlayedCall:
    call: PlannedCall
    sessions: list[Session] = field(default_factory=list)
    disposition: str = ""  # CRM_DISPOSITION, as the hangup hook answered it


@dataclass
class Played:
    """What the generator played in one part, and what it cost the generator."""

    calls: list[PlayedCall]
    seconds: float
    cpu: float  # the generator process's CPU seconds
    most_in_progress: int


def _session(hook: str, planned: float, run) -> tuple[Session, dict[str, str]]:
    started = time.monotonic()
    try:
        transcript = run()
    except OSError as error:
        return Session(hook, float("nan"), (started - planned) * 1000,
                       f"error: {type(error).__name__}"), {}
    elapsed = (time.monotonic() - started) * 1000
    variables = variables_set(transcript)
    status = variables.get("CRM_STATUS", "")
    if transcript.agistatus == "FAILURE":
        status = "AGISTATUS=FAILURE"
    return Session(hook, elapsed, (started - planned) * 1000, status), variables


def play_call(address, call: PlannedCall, planned: float, scale: float) -> PlayedCall:
    """The call's three steps, as ``[pbx-crm-route]``, Dial's ``U()`` and the hangup handler
    run them; ``planned`` is the monotonic time the call arrives."""
    played = PlayedCall(call)
    inbound = inbound_leg(f"PJSIP/trunk-{call.serial:08x}", call.uniqueid, number=call.caller,
                          caller_name="Budi Santoso", did=DID)
    session, variables = _session("incoming", planned, lambda: agi_incoming(
        address, inbound, DID, script=f"incoming?did={DID}"))
    played.sessions.append(session)

    planned = time.monotonic() + call.ring * scale
    time.sleep(max(0.0, planned - time.monotonic()))
    talk = None
    if call.dialstatus == "ANSWER":
        owner = variables.get("CRM_OWNER_EXTEN", "")
        extension = owner if owner.isdigit() else RING_GROUP[call.serial % len(RING_GROUP)]
        leg = answering_leg(inbound, f"Local/{extension}@phones-{call.serial:08x};1",
                            f"{call.epoch}.{call.serial + 1}", did=DID)
        session, _ = _session("answered", planned, lambda: agi_answered(
            address, inbound, leg, script=f"answered?inbound={call.uniqueid}"))
        played.sessions.append(session)
        talk = call.talk
        planned = time.monotonic() + call.talk * scale
        time.sleep(max(0.0, planned - time.monotonic()))

    args = hang_up(inbound, call.dialstatus, talk=talk,
                   cause=17 if call.dialstatus == "BUSY" else 16)
    session, variables = _session("hangup", planned, lambda: agi_hangup(
        address, inbound, args, script=f"hangup?uniqueid={call.uniqueid}"))
    played.sessions.append(session)
    played.disposition = variables.get("CRM_DISPOSITION", "")
    return played


def play(address, calls: list[PlannedCall], scale: float) -> Played:
    """Start every call at its time, each in a thread of its own; wait for them all."""
    results: list[PlayedCall | None] = [None] * len(calls)
    in_progress = most = 0
    lock = threading.Lock()

    def run(index: int, planned: float) -> None:
        nonlocal in_progress, most
        with lock:
            in_progress += 1
            most = max(most, in_progress)
        try:
            results[index] = play_call(address, calls[index], planned, scale)
        finally:
            with lock:
                in_progress -= 1

    cpu = time.process_time()
    start = time.monotonic() + 0.05
    threads = []
    for index, call in enumerate(calls):
        planned = start + call.at
        delay = planned - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=run, args=(index, planned), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return Played([result for result in results if result is not None],
                  time.monotonic() - start, time.process_time() - cpu, most)


def generator_loop(connection) -> None:
    # Many calls wait at once: a smaller stack per thread keeps hundreds of them cheap.
    threading.stack_size(512 * 1024)
    while True:
        job = connection.recv()
        if job is None:
            return
        connection.send(play(*job))


# --- the servers and the run ------------------------------------------------------------------


@dataclass
class Server:
    name: str
    address: tuple[str, int]
    played: list[PlayedCall] = field(default_factory=list)
    seconds: float = 0.0
    generator_cpu: float = 0.0
    server_cpu: float = 0.0  # this process's CPU seconds while the server's calls played
    most_in_progress: int = 0


class Bench:
    def __init__(self, engine, generator, args):
        self.engine = engine
        self.pipe, self.process = generator
        self.args = args
        self.rng = random.Random(args.seed)
        self.known = known_numbers(engine, 20_000, self.rng)
        self.new = NewNumbers(engine)
        self.epoch = int(time.time())
        self.serial = 0

    def calls(self, rounds: int) -> list[PlannedCall]:
        args = self.args
        if args.burst:
            arrivals = burst_arrivals(self.rng, args.burst)
        else:
            arrivals = poisson_arrivals(self.rng, args.rate, args.seconds / rounds)
        # Every fifth call (on average) from a number nobody has.
        is_new = [self.rng.random() < args.new_share for _ in arrivals]
        fresh = iter(self.new.take(sum(is_new)))
        callers = [(next(fresh), False) if new else (self.rng.choice(self.known), True)
                   for new in is_new]
        calls = plan_calls(self.rng, arrivals, callers, args.missed_share, self.serial + 1,
                           self.epoch)
        self.serial += 2 * len(calls)
        return calls

    def play(self, server: Server, calls: list[PlannedCall]) -> None:
        cpu = time.process_time()
        self.pipe.send((server.address, calls, self.args.time_scale))
        while not self.pipe.poll(1.0):
            if not self.process.is_alive():
                sys.exit(f"the load generator died (exit code {self.process.exitcode})")
        played: Played = self.pipe.recv()
        server.server_cpu += time.process_time() - cpu
        server.played += played.calls
        server.seconds += played.seconds
        server.generator_cpu += played.cpu
        server.most_in_progress = max(server.most_in_progress, played.most_in_progress)


@dataclass
class Recorded:
    """How the product's calls ended up in ``calls``."""

    played: int
    exactly_once: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_disposition: list[str] = field(default_factory=list)
    extra_rows: list[str] = field(default_factory=list)  # linkedids with more than one row


def check_recorded(engine, played: list[PlayedCall]) -> Recorded:
    expected = {call.call.uniqueid: DISPOSITIONS[call.call.dialstatus] for call in played}
    found: dict[str, str | None] = {}
    rows_per_linkedid: Counter = Counter()
    ids = list(expected)
    with transaction(engine, read_only=True) as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found.update(session.exec(select(Call.uniqueid, Call.disposition)
                                      .where(Call.uniqueid.in_(chunk))).all())
            rows_per_linkedid.update(dict(session.exec(
                select(Call.linkedid, func.count()).where(Call.linkedid.in_(chunk))
                .group_by(Call.linkedid)).all()))
    recorded = Recorded(len(played))
    for uniqueid, disposition in expected.items():
        if uniqueid not in found:
            recorded.missing.append(uniqueid)
        elif found[uniqueid] != disposition:
            recorded.wrong_disposition.append(f"{uniqueid}: {found[uniqueid]} != {disposition}")
        elif rows_per_linkedid[uniqueid] != 1:
            recorded.extra_rows.append(uniqueid)
        else:
            recorded.exactly_once += 1
    return recorded


# --- the report ---------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:8.2f}" if value == value else "       -"


def hook_rows(server: Server) -> list[tuple[str, list[Session]]]:
    by_hook: dict[str, list[Session]] = {hook: [] for hook in HOOKS}
    for call in server.played:
        for session in call.sessions:
            by_hook[session.hook].append(session)
    return [(hook, sessions) for hook, sessions in by_hook.items() if sessions]


def failed(session: Session) -> bool:
    return session.status.startswith(("error", "AGISTATUS"))


def print_hooks(servers: list[Server]) -> None:
    print(f"{'server':<32}{'hook':<10}{'sessions':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'unavail':>8}{'failed':>7}  statuses")
    for server in servers:
        for hook, sessions in hook_rows(server):
            times = [s.ms for s in sessions if s.ms == s.ms] or [float("nan")]
            statuses = Counter(s.status or "(none)" for s in sessions)
            print(f"{server.name:<32}{hook:<10}{len(sessions):>9}"
                  f"{_ms(statistics.median(times))}{_ms(percentile(times, 0.99))}"
                  f"{_ms(max(times))}{statuses['UNAVAILABLE']:>8}"
                  f"{sum(failed(s) for s in sessions):>7}  "
                  + ", ".join(f"{status} {n}" for status, n in sorted(statuses.items())))


def print_generator(servers: list[Server]) -> None:
    print("\nthe load generator (its own process), ms late against the plan:")
    for server in servers:
        arrivals = [c.sessions[0].late_ms for c in server.played if c.sessions]
        steps = [s.late_ms for c in server.played for s in c.sessions[1:]]
        late = "  ".join(
            f"{label} p50 {statistics.median(values):.2f} p99 {percentile(values, 0.99):.2f} "
            f"max {max(values):.2f}"
            for label, values in (("arrivals", arrivals), ("later steps", steps)) if values)
        print(f"  {server.name:<30} {len(server.played)} calls in {server.seconds:.1f} s, "
              f"at most {server.most_in_progress} in progress; {late}; CPU "
              f"{server.generator_cpu / max(server.seconds, 1e-9):.0%} of a core")


def print_server_cpu(servers: list[Server]) -> None:
    """The servers' CPU: one interpreter runs a server's Python on one core at a time."""
    print("\nthe servers (this process), CPU while their calls played:")
    for server in servers:
        calls = max(len(server.played), 1)
        print(f"  {server.name:<30} {server.server_cpu / max(server.seconds, 1e-9):.0%} of a "
              f"core, {server.server_cpu / calls * 1000:.1f} ms a call")


def print_recorded(recorded: Recorded, left: int, refusals: Refusals) -> None:
    problems = len(recorded.missing) + len(recorded.wrong_disposition) + len(recorded.extra_rows)
    print(f"\nrecorded in calls: {recorded.exactly_once} of {recorded.played} calls exactly "
          f"once with their disposition; missing {len(recorded.missing)}, wrong disposition "
          f"{len(recorded.wrong_disposition)}, more than one row {len(recorded.extra_rows)}"
          + (f"; {left} spooled request(s) could not be replayed" if left else ""))
    for label, items in (("missing", recorded.missing),
                         ("wrong disposition", recorded.wrong_disposition),
                         ("more than one row", recorded.extra_rows)):
        if items:
            print(f"  {label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")
    for label, counts in (("why the product spooled or answered UNAVAILABLE (a request may "
                           "be both)", refusals.reasons),
                          ("the product's other warnings", refusals.warnings)):
        if counts:
            shown = counts.most_common(10)
            more = f", and {len(counts) - len(shown)} more kinds" if len(counts) > 10 else ""
            print(f"{label}: " + ", ".join(f"{text_} ({n})" for text_, n in shown) + more)
    if problems:
        print("!!! not every call is recorded exactly once !!!")


def print_goals(product: Server, recorded: Recorded, burst: bool) -> int:
    sessions = [s for c in product.played for s in c.sessions]
    incoming = [s.ms for s in sessions if s.hook == "incoming" and s.ms == s.ms]
    unavailable = sum(s.status == "UNAVAILABLE" for s in sessions)
    failures = sum(failed(s) for s in sessions)
    missed = 0

    def goal(ok: bool, text_: str) -> None:
        nonlocal missed
        missed += not ok
        print(f"  [{'met   ' if ok else 'MISSED'}] {text_}")

    print("goals:")
    if burst:
        slowest = max(incoming, default=float("nan"))
        goal(slowest <= BUDGET_MS and not failures,
             f"every incoming answered within {BUDGET_MS:.0f} ms: slowest {slowest:.1f} ms")
        slowest = max((s.ms for s in sessions if s.ms == s.ms), default=float("nan"))
        goal(slowest <= BUDGET_MS and not failures,
             f"every session of every hook answered within {BUDGET_MS:.0f} ms: slowest "
             f"{slowest:.1f} ms ({failures} failed)")
    else:
        p50, p99 = statistics.median(incoming), percentile(incoming, 0.99)
        goal(p50 <= P50_GOAL_MS, f"incoming p50 {p50:.2f} ms (goal <= {P50_GOAL_MS:.0f} ms)")
        goal(p99 <= P99_GOAL_MS, f"incoming p99 {p99:.2f} ms (goal <= {P99_GOAL_MS:.0f} ms)")
    by_hook = Counter(s.hook for s in sessions if s.status == "UNAVAILABLE")
    goal(not unavailable, f"{unavailable} UNAVAILABLE answers (goal: none): "
         + ", ".join(f"{hook} {by_hook[hook]}" for hook in HOOKS))
    goal(recorded.exactly_once == recorded.played,
         f"{recorded.exactly_once} of {recorded.played} calls recorded exactly once")
    return missed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: an SQLite file in the temp directory")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--deals", type=int, help="deals to seed (default: contacts / 5)")
    parser.add_argument("--rate", type=float, default=100.0, help="calls arriving per second")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="seconds of arrivals per server (split over the rounds)")
    parser.add_argument("--burst", type=int, default=0, metavar="N",
                        help="instead: N calls arriving within 100 ms, once per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="parts the run is played in, the floor and the product taking "
                             "turns")
    parser.add_argument("--time-scale", type=float, default=0.01,
                        help="real seconds per PBX second of ringing and talking")
    parser.add_argument("--new-share", type=float, default=0.2,
                        help="share of callers nobody knows (the NEW path)")
    parser.add_argument("--missed-share", type=float, default=0.25,
                        help="share of calls nobody answers")
    parser.add_argument("--seed", type=int, default=1, help="which callers and gaps are drawn")
    args = parser.parse_args(argv)
    engine = seeded_engine(args.database_url, args.contacts, args.deals)
    url = engine.url.render_as_string(hide_password=False)

    # The load generator gets its own interpreter before any server thread starts.
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    generator = context.Process(target=generator_loop, args=(theirs,), daemon=True)
    generator.start()

    floor_server = FastAgiServer(("127.0.0.1", 0), IndexedLookup(engine),
                                 workers=FASTAGI_WORKERS)
    floor_server.start()
    threading.Thread(target=floor_server.serve_forever, name="floor", daemon=True).start()
    left = 0
    with tempfile.TemporaryDirectory(prefix="pbx-crm-bench-calls-") as data_dir:
        settings = Settings(data_dir=Path(data_dir), database_url=url, phone_region=REGION,
                            fastagi_listen=Address("127.0.0.1", 0))
        # What ``pbx-crm fastagi`` passes (pbx_crm/cli/telephony.py), and nothing more.
        running = start_fastagi(settings, engine)
        refusals = Refusals(running)
        floor = Server(FLOOR, ("127.0.0.1", floor_server.port))
        product = Server(PRODUCT, running.address)
        try:
            bench = Bench(engine, (ours, generator), args)
            for _ in range(args.rounds):
                bench.play(floor, bench.calls(args.rounds))
                bench.play(product, bench.calls(args.rounds))
                left += drain(running)
            recorded = check_recorded(engine, product.played)
        finally:
            running.stop()
            refusals.close()
            floor_server.shutdown()
            ours.send(None)
            generator.join(timeout=10)

    mode = (f"bursts of {args.burst} calls within {BURST_WINDOW * 1000:.0f} ms, "
            f"{args.rounds} per server" if args.burst else
            f"Poisson arrivals at {args.rate:g} calls/s for {args.seconds:g} s per server "
            f"in {args.rounds} parts")
    print(f"{engine.dialect.name}, {args.contacts:,} contacts; {mode}; time scale "
          f"{args.time_scale:g}; {args.new_share:.0%} new callers, {args.missed_share:.0%} "
          "missed calls")
    print_hooks([floor, product])
    print_generator([floor, product])
    print_server_cpu([floor, product])
    print_recorded(recorded, left, refusals)
    print_goals(product, recorded, bool(args.burst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
