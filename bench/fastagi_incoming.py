"""Benchmark: the ``incoming`` hook end to end over FastAGI, against a bare FastAGI floor.

What Asterisk waits for on every inbound call: connect to the FastAGI server, send the
environment block, answer each ``SET VARIABLE``, see the server close. Three servers run in this
process, side by side:

  * the bare server: the real ``FastAgiServer`` answering a constant, no database: what the
    sessions alone cost on this machine, a bound no hook can beat;
  * the floor: the real ``FastAgiServer`` with a dispatcher whose ``handle()`` does one indexed
    lookup (``contact_phones`` by ``e164``) through the same engine and returns one variable;
  * the real thing: ``start_fastagi(settings, engine)``, the product's server, dispatcher,
    spool and hooks, answering ``incoming``.

So the floor and the real thing differ only by the hook's work (and the dispatcher around it).
At each concurrency the runs take turns, each playing its calls in ``--rounds`` parts, so that
the machine's ups and downs fall on all of them alike. The calls come from a
load generator in a child process (its own interpreter, so it does not take the servers' GIL),
``--concurrency`` threads each keeping one call in flight, speaking the AGI protocol as Asterisk
does: the emulator (``pbx_crm.simulator.agi.run_fastagi``), or ``--client lean``, a socket loop
sending the same bytes with less bookkeeping. Every call has its own uniqueid. Callers are
drawn from the seeded contacts that have an open deal (the FOUND path) and, for the second mix,
a share of numbers nobody has (the NEW path: a contact and an Unsorted deal are created).

Per concurrency and mix it prints p50, p99 (milliseconds from connect to the server's close),
calls/s, the ratios to the floor measured alongside, the statuses the dialplan got, and
whether each goal is met. A CRM_STATUS=UNAVAILABLE answer (over the time budget, workers busy)
is counted and reported loudly: at these loads there must be none.

    python bench/fastagi_incoming.py                      # SQLite file in the temp directory
    python bench/fastagi_incoming.py --database-url postgresql+psycopg://.../pbx_crm_bench_agi
    python bench/fastagi_incoming.py --concurrency 1 --new-shares 0 --profile incoming.prof

The database is seeded on first use (``pbx_crm.seed``: ``--contacts`` contacts, a fifth as many
deals) and reused by later runs; every run adds its calls, and the NEW mix its contacts.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import random
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchkit import percentile
from sqlalchemy import func, text
from sqlmodel import select

from pbx_crm import users
from pbx_crm.components import FASTAGI_WORKERS, start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import make_engine, transaction, upgrade
from pbx_crm.enums import Role, StageKind
from pbx_crm.telephony.fastagi import FastAgiServer
from pbx_crm.funnel import Actor
from pbx_crm.models import Contact, ContactPhone, Deal, Stage, User, UserExtension
from pbx_crm.seed import _number_plan, seed_synthetic
from pbx_crm.simulator.agi import (
    FakeChannel,
    fastagi_env_block,
    parse_args,
    run_fastagi,
)

PIPELINE = "Sales"
REGION = "ID"
DID = "2150001"  # the number the callers dialled (agi_arg_1)
SELLER_EXTENSIONS = 200  # seller001 rings 201, seller002 202, ...

BARE = "bare FastAGI, no lookup"
FLOOR = "floor: bare FastAGI + 1 lookup"

# Goals from the issue.
P50_GOAL, P99_GOAL, P99_AT_10_MS, CALLS_GOAL = 2.0, 3.0, 10.0, 0.5


# --- the data -------------------------------------------------------------------------------


def seeded_engine(database_url: str | None, contacts: int, deals: int | None):
    """The benches' database (an SQLite file in the temp directory unless a URL is given),
    seeded on first use with ``contacts`` contacts and ``deals`` deals (a fifth as many by
    default), and reused by later runs of either bench."""
    url = database_url or \
        f"sqlite:///{Path(tempfile.gettempdir()) / f'pbx-crm-bench-agi-{contacts}.sqlite3'}"
    engine = make_engine(url)
    ensure_data(engine, contacts, deals if deals is not None else contacts // 5)
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load (and after the last run's new contacts):
        # statistics, and the visibility map.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    return engine


def ensure_data(engine, contacts: int, deals: int) -> None:
    upgrade(engine)
    with transaction(engine, read_only=True) as session:
        present = session.exec(select(func.count()).select_from(Contact)).one()
    if present < contacts:
        if present:
            sys.exit(f"the database holds {present:,} contacts, fewer than {contacts:,}: "
                     "use an empty one")
        print(f"seeding {contacts:,} contacts and {deals:,} deals (once; later runs reuse "
              "them)...", file=sys.stderr)
        start = time.perf_counter()
        seed_synthetic(engine, deals=deals, contacts=contacts, sellers=20, region=REGION,
                       pipeline_name=PIPELINE, random_seed=1)
        print(f"seeded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    # A seller rings on an extension: the FOUND path then looks up the owner's extension and
    # tells the owner's browser, as in production.
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


# --- the floor ------------------------------------------------------------------------------


class Constant:
    """The bare server's dispatcher: the same answer every time, no database. What this
    machine's FastAGI sessions cost before any hook's work: no answer can be faster."""

    def handle(self, request):
        return {"CRM_STATUS": "FOUND"}

    def overloaded(self, request):
        return {"CRM_STATUS": "UNAVAILABLE"}


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


# --- the load generator (runs in a child process) ---------------------------------------------


@dataclass
class Played:
    """What one run of calls gave: per-call milliseconds, the CRM_STATUS each call got."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    cpu: float = 0.0  # the load generator's CPU seconds (all its threads)
    server_cpu: float = 0.0  # the servers' process, filled in by the parent
    thread_cpu: Counter = field(default_factory=Counter)  # the same, by thread name
    reasons: Counter = field(default_factory=Counter)  # why calls got UNAVAILABLE
    replayed: int = 0  # requests the spool replayer replayed meanwhile

    def add(self, part: Played) -> None:
        self.latencies += part.latencies
        self.statuses += part.statuses
        self.seconds += part.seconds
        self.cpu += part.cpu
        self.server_cpu += part.server_cpu
        self.thread_cpu += part.thread_cpu
        self.reasons += part.reasons
        self.replayed += part.replayed


def _channel(uniqueid: str, caller: str) -> FakeChannel:
    return FakeChannel(name=f"PJSIP/trunk-{uniqueid.replace('.', '')[-8:]}", uniqueid=uniqueid,
                       callerid=caller, calleridname="Budi Santoso", extension=DID, dnid=DID)


def _emulated_call(address, uniqueid: str, caller: str) -> tuple[float, str]:
    channel = _channel(uniqueid, caller)
    start = time.perf_counter()
    transcript = run_fastagi(address, "incoming", [DID, uniqueid], channel)
    elapsed = time.perf_counter() - start
    if transcript.agistatus != "SUCCESS":
        return elapsed, f"AGISTATUS={transcript.agistatus}"
    return elapsed, channel.variables.get("CRM_STATUS", "(none set)")


def _lean_call(address, uniqueid: str, caller: str) -> tuple[float, str]:
    """The same bytes as the emulator, answering every command ``200 result=1``."""
    env = fastagi_env_block(_channel(uniqueid, caller), address, "incoming", [DID, uniqueid])
    status = "(none set)"
    start = time.perf_counter()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(env)
        buffer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.startswith(b"SET VARIABLE CRM_STATUS "):
                    status = parse_args(line.decode())[3]
                sock.sendall(b"200 result=1\n")
        sock.sendall(b"HANGUP\n")
    return time.perf_counter() - start, status


def play(address, calls: list[tuple[str, str]], concurrency: int, client: str) -> Played:
    """``calls`` (uniqueid, caller number) with ``concurrency`` of them in flight."""
    call = _emulated_call if client == "emulator" else _lean_call
    pending = iter(calls)  # shared: each thread takes the next call when its last one ends
    results: list[list[tuple[float | None, str]]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)

    def caller(mine):
        ready.wait()
        for uniqueid, number in pending:
            try:
                mine.append(call(address, uniqueid, number))
            except OSError as error:
                mine.append((None, f"error: {type(error).__name__}"))

    threads = [threading.Thread(target=caller, args=(results[n],)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    played = Played(seconds=time.perf_counter() - start, cpu=time.process_time() - cpu)
    for mine in results:
        for elapsed, status in mine:
            played.statuses[status] += 1
            if elapsed is not None:
                played.latencies.append(elapsed * 1000)
    return played


def generator_loop(connection) -> None:
    while True:
        job = connection.recv()
        if job is None:
            return
        connection.send(play(*job))


# --- the runs -------------------------------------------------------------------------------


class SpoolWatch:
    """Why calls were answered UNAVAILABLE, and how much the spool replayer ran meanwhile.

    Wraps three methods of the running dispatcher instance (observation only; nothing changes
    what they do): ``_spool``, which every refused request goes through with its reason,
    ``replay_spooled``, which the replayer thread calls every two seconds, and
    ``_unanswered``, through which a refused read-only answer goes.
    """

    def __init__(self, dispatcher):
        self.reasons: Counter = Counter()
        self.replayed = 0
        spool, replay = dispatcher._spool, dispatcher.replay_spooled
        unanswered = getattr(dispatcher, "_unanswered", None)

        def counted_spool(hook, key, request, received_at, reason):
            reason = reason.split("(")[0]  # an exception's repr: keep its class
            self.reasons[reason] += 1
            return spool(hook, key, request, received_at, reason)

        def counted_replay(*args, **kwargs):
            replayed = replay(*args, **kwargs)
            self.replayed += replayed
            return replayed

        def counted_unanswered(hook, request, reason):
            self.reasons["answer: " + reason.split("(")[0]] += 1
            return unanswered(hook, request, reason)

        dispatcher._spool = counted_spool
        dispatcher.replay_spooled = counted_replay
        if unanswered is not None:  # a read-only answer refused (its writes still queued)
            dispatcher._unanswered = counted_unanswered

    def reset(self) -> None:
        self.reasons = Counter()
        self.replayed = 0


class HookProfile:
    """cProfile of the hooks' work (the answers on the session threads, the other hooks on
    the database workers, the hand-over to the recorder on the call writer): one profiler per
    thread, merged at the end. Wraps the running dispatcher instance's methods; the figures
    of a profiled run are slower than without."""

    def __init__(self, dispatcher):
        self.profilers: dict[int, cProfile.Profile] = {}
        for owner, name in ((dispatcher, "_answer"), (dispatcher.writer, "_write"),
                            (dispatcher, "_run")):
            setattr(owner, name, self._profiled(getattr(owner, name)))

    def _profiled(self, work):
        def profiled(*args, **kwargs):
            profiler = self.profilers.setdefault(threading.get_ident(), cProfile.Profile())
            profiler.enable()
            try:
                return work(*args, **kwargs)
            finally:
                profiler.disable()
        return profiled

    def dump(self, path: str) -> None:
        if self.profilers:
            pstats.Stats(*self.profilers.values()).dump_stats(path)
            print(f"profile of the hook's work written to {path}")


def drain(running, timeout: float = 120.0) -> int:
    """Let the hooks that overran their budget finish, and replay what the run spooled, so
    that neither loads the next run; returns how many requests are left (none, unless the
    replay itself fails)."""
    deadline = time.monotonic() + timeout
    running.dispatcher.wait_idle(timeout)
    while running.spool.counts()[0] and time.monotonic() < deadline:
        running.dispatcher.replay_spooled()
    waiting, set_aside = running.spool.counts()
    return waiting + set_aside


@dataclass
class Figures:
    name: str
    concurrency: int
    p50: float
    p99: float
    rate: float  # calls answered per second, UNAVAILABLE ones included
    crm_rate: float  # calls the CRM actually answered (not UNAVAILABLE) per second
    statuses: Counter
    server_cpu: float  # milliseconds of the servers' process per call
    generator_cpu: float  # milliseconds of the load generator per call
    reasons: Counter = field(default_factory=Counter)
    replayed: int = 0
    threads: dict = field(default_factory=dict)  # thread name -> CPU ms per call
    hook: bool = True  # False for the two servers the hook is measured against

    @classmethod
    def of(cls, name: str, concurrency: int, played: Played, *, hook: bool = True):
        samples = played.latencies or [float("nan")]
        calls = sum(played.statuses.values())
        answered = calls - played.statuses["UNAVAILABLE"] - failures(played.statuses)
        return cls(name, concurrency, statistics.median(samples), percentile(samples, 0.99),
                   len(played.latencies) / played.seconds, answered / played.seconds,
                   played.statuses, played.server_cpu * 1000 / calls, played.cpu * 1000 / calls,
                   played.reasons, played.replayed,
                   {name: seconds * 1000 / calls
                    for name, seconds in played.thread_cpu.most_common() if seconds > 0},
                   hook)

    @property
    def unavailable(self) -> int:
        return self.statuses["UNAVAILABLE"]

    @property
    def failed(self) -> int:
        return failures(self.statuses)


def failures(statuses: Counter) -> int:
    return sum(n for status, n in statuses.items()
               if status.startswith(("error", "AGISTATUS", "(none")))


def thread_cpu() -> Counter:
    """CPU seconds so far of this process's threads, summed by name (numbers dropped)."""
    spent: Counter = Counter()
    for thread in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            spent[re.sub(r"[_-]?\d+$", "", thread.name)] += time.clock_gettime(clock)
        except (OSError, TypeError):
            continue  # ended meanwhile
    return spent


class Bench:
    def __init__(self, engine, generator, client: str, calls: int, warmup: int, seed: int):
        self.engine = engine
        self.generator = generator
        self.client = client
        self.calls = calls
        self.warmup = warmup
        self.rng = random.Random(seed)
        self.known = known_numbers(engine, 20_000, self.rng)
        self.new = NewNumbers(engine)
        self.serial = 0
        self.base = int(time.time())

    def make_calls(self, count: int, new_share: float) -> list[tuple[str, str]]:
        # Spread evenly: with a share of 0.2, every fifth call is a new number.
        is_new = [int((n + 1) * new_share) > int(n * new_share) for n in range(count)]
        fresh = iter(self.new.take(sum(is_new)))
        calls = []
        for n in range(count):
            self.serial += 1
            number = next(fresh) if is_new[n] else self.rng.choice(self.known)
            calls.append((f"{self.base}.{self.serial}", number))
        return calls

    def interleaved(self, runs: list[Run], concurrency: int, rounds: int) -> list[Played]:
        """Each run's calls in ``rounds`` parts, the runs taking turns (after one warm-up
        each): a machine that slows down or speeds up during the bench weighs on the hook
        and on the servers it is compared with alike."""
        for run in runs:
            self.play(run.address, self.make_calls(self.warmup, run.new_share), concurrency)
            run.settle()
        totals = [Played() for _ in runs]
        for part in range(rounds):
            count = self.calls // rounds + (part < self.calls % rounds)
            for run, total in zip(runs, totals):
                total.add(self.measure(run, concurrency, count))
                run.settle()
        return totals

    def measure(self, run: Run, concurrency: int, count: int) -> Played:
        calls = self.make_calls(count, run.new_share)
        if run.watch:
            run.watch.reset()
        cpu, threads = time.process_time(), thread_cpu()
        played = self.play(run.address, calls, concurrency)
        played.server_cpu = time.process_time() - cpu
        played.thread_cpu = thread_cpu() - threads
        if run.watch:
            played.reasons, played.replayed = Counter(run.watch.reasons), run.watch.replayed
        return played

    def play(self, address, calls, concurrency: int) -> Played:
        pipe, process = self.generator
        pipe.send((address, calls, concurrency, self.client))
        while not pipe.poll(1.0):
            if not process.is_alive():
                sys.exit(f"the load generator died (exit code {process.exitcode})")
        return pipe.recv()


@dataclass
class Run:
    """One kind of call played against one server."""

    name: str
    address: tuple[str, int]
    new_share: float = 0.0
    watch: SpoolWatch | None = None
    settle: Callable[[], None] = lambda: None  # run after each part, outside the measure


def mix_name(new_share: float) -> str:
    return "100% known" if not new_share else f"{new_share:.0%} new"


def print_table(rows: list[tuple[Figures, Figures]]) -> None:
    print(f"{'run':<31}{'conc':>5}{'p50 ms':>8}{'p99 ms':>8}{'calls/s':>8}"
          f"{'p50/fl':>7}{'p99/fl':>7}{'cps/fl':>7}{'unavail':>8}{'CPU ms/call':>12}  statuses")
    print(f"{'':<89}{'srv':>5}{'gen':>5}")
    for figures, floor in rows:
        statuses = ", ".join(f"{status} {n}" for status, n in sorted(figures.statuses.items()))
        print(f"{figures.name:<31}{figures.concurrency:>5}{figures.p50:>8.2f}{figures.p99:>8.2f}"
              f"{figures.rate:>8.0f}{figures.p50 / floor.p50:>6.1f}x{figures.p99 / floor.p99:>6.1f}x"
              f"{figures.rate / floor.rate:>6.2f}x{figures.unavailable:>8}"
              f"{figures.server_cpu:>7.2f}{figures.generator_cpu:>5.2f}  {statuses}")


def print_threads(rows: list[tuple[Figures, Figures]]) -> None:
    """Where the servers' CPU went, by thread: which part of the work to look at next."""
    print("\nCPU ms per call by thread of the servers' process (the floor's and ours):")
    for figures, _floor in rows:
        spent = "  ".join(f"{name} {ms:.2f}" for name, ms in list(figures.threads.items())[:6])
        print(f"  {figures.name:<31}{figures.concurrency:>3}  {spent}")


def print_unavailable(rows: list[tuple[Figures, Figures]], left: int) -> None:
    unavailable = sum(figures.unavailable for figures, _ in rows)
    failed = sum(figures.failed for figures, _ in rows)
    if not (unavailable or failed):
        print("no call got CRM_STATUS=UNAVAILABLE; none failed")
        return
    print(f"\n!!! {unavailable} call(s) got CRM_STATUS=UNAVAILABLE and {failed} failed: the CRM "
          "was skipped on those calls, so the figures of those runs are NOT the hook's !!!")
    for figures, _ in rows:
        if figures.unavailable or figures.failed:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in figures.reasons.most_common())
            print(f"!!!   {figures.name}, {figures.concurrency} in flight: "
                  f"{figures.unavailable} UNAVAILABLE ({reasons or 'floor: overloaded()'}), "
                  f"{figures.failed} failed; the replayer replayed {figures.replayed} meanwhile")
    if left:
        print(f"!!!   {left} spooled request(s) could not be replayed")
    print()


def print_goals(rows: list[tuple[Figures, Figures]]) -> int:
    """Prints each goal met or missed; returns how many were missed. A run with calls
    answered UNAVAILABLE meets no goal: its figures are partly not the hook's."""
    missed = 0
    bare = {figures.concurrency: figures for figures, _ in rows if figures.name == BARE}

    def goal(ok: bool, figures: Figures, text_: str) -> None:
        nonlocal missed
        void = figures.unavailable + figures.failed
        ok = ok and not void
        missed += not ok
        note = f"  (void: {void} of {sum(figures.statuses.values())} calls UNAVAILABLE " \
               "or failed)" if void else ""
        print(f"  [{'met   ' if ok else 'MISSED'}] {text_}{note}")

    print("goals:")
    for figures, floor in rows:
        if not figures.hook:
            continue
        label = f"{figures.name}, {figures.concurrency} in flight:"
        if figures.concurrency == 1:
            ratio = figures.p50 / floor.p50
            goal(ratio <= P50_GOAL, figures,
                 f"{label} p50 {ratio:.1f}x floor (goal <= {P50_GOAL:.0f}x)")
            ratio = figures.p99 / floor.p99
            goal(ratio <= P99_GOAL, figures,
                 f"{label} p99 {ratio:.1f}x floor (goal <= {P99_GOAL:.0f}x)")
        if figures.concurrency == 10:
            goal(figures.p99 < P99_AT_10_MS, figures,
                 f"{label} p99 {figures.p99:.1f} ms (goal < {P99_AT_10_MS:.0f} ms; "
                 f"the floor's: {floor.p99:.1f} ms"
                 + (f", the bare server's: {bare[10].p99:.1f} ms" if 10 in bare else "") + ")")
        ratio = figures.crm_rate / floor.rate
        goal(ratio >= CALLS_GOAL, figures, f"{label} calls/s answered by the CRM "
             f"{ratio:.2f}x floor (goal >= {CALLS_GOAL}x)")
    return missed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: an SQLite file in the temp directory")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--deals", type=int, help="deals to seed (default: contacts / 5)")
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per run")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls before each")
    parser.add_argument("--rounds", type=int, default=5,
                        help="parts each run's calls are played in, the runs taking turns")
    parser.add_argument("--concurrency", default="1,10,50", help="calls in flight, a list")
    parser.add_argument("--new-shares", default="0,0.2",
                        help="shares of callers nobody knows (the NEW path), one run each")
    parser.add_argument("--client", choices=("emulator", "lean"), default="emulator",
                        help="the load generator: the Asterisk emulator, or a leaner socket loop")
    parser.add_argument("--seed", type=int, default=1, help="which callers are drawn")
    parser.add_argument("--profile", metavar="PATH",
                        help="write a cProfile of the hook's work (pstats format) to PATH")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",")]
    shares = [float(share) for share in args.new_shares.split(",") if share.strip()]
    engine = seeded_engine(args.database_url, args.contacts, args.deals)
    url = engine.url.render_as_string(hide_password=False)

    # The load generator gets its own interpreter before any server thread starts.
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    generator = context.Process(target=generator_loop, args=(theirs,), daemon=True)
    generator.start()

    # As many session workers as ``pbx-crm fastagi`` has.
    floor = FastAgiServer(("127.0.0.1", 0), IndexedLookup(engine), workers=FASTAGI_WORKERS)
    bare = FastAgiServer(("127.0.0.1", 0), Constant(), workers=FASTAGI_WORKERS)
    for name, server in (("floor", floor), ("bare", bare)):
        server.start()
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    rows: list[tuple[Figures, Figures]] = []
    left = 0
    with tempfile.TemporaryDirectory(prefix="pbx-crm-bench-agi-") as data_dir:
        settings = Settings(data_dir=Path(data_dir), database_url=url, phone_region=REGION,
                            fastagi_listen=Address("127.0.0.1", 0))
        # As ``pbx-crm fastagi`` runs it: the calls recorded by a process of their own.
        running = start_fastagi(settings, engine, recorder_process=True)
        watch = SpoolWatch(running.dispatcher)
        profile = HookProfile(running.dispatcher) if args.profile else None
        try:
            bench = Bench(engine, (ours, generator), args.client, args.calls, args.warmup,
                          args.seed)
            def settle():
                nonlocal left
                left += drain(running)

            runs = [Run(BARE, ("127.0.0.1", bare.port)),
                    Run(FLOOR, ("127.0.0.1", floor.port))]
            runs += [Run(f"incoming, {mix_name(share)}", running.address, share, watch, settle)
                     for share in shares]
            for level in levels:
                played = bench.interleaved(runs, level, args.rounds)
                base = Figures.of(FLOOR, level, played[1], hook=False)
                rows.append((Figures.of(BARE, level, played[0], hook=False), base))
                rows.append((base, base))
                rows += [(Figures.of(run.name, level, part), base)
                         for run, part in zip(runs[2:], played[2:])]
        finally:
            running.stop()
            floor.shutdown()
            bare.shutdown()
            ours.send(None)
            generator.join(timeout=10)

    print(f"{engine.dialect.name}, {args.contacts:,} contacts, {args.calls} calls per run "
          f"after {args.warmup} warm-up, client: {args.client}")
    print_table(rows)
    print_threads(rows)
    print_unavailable(rows, left)
    print_goals(rows)
    if profile:
        profile.dump(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
