"""Benchmark: one FastAGI node against two on the same PostgreSQL, stepping up the call rate.

The full run (from the repository's root, on a quiet machine; the database made once, empty,
and seeded by the first run):

    PGPASSWORD=pbx_crm_test createdb -h 127.0.0.1 -U pbx_crm_test pbx_crm_bench_nodes
    .venv/bin/python bench/nodes.py \\
        --database-url postgresql+psycopg://pbx_crm_test:pbx_crm_test@127.0.0.1:5432/pbx_crm_bench_nodes

A smoke run (half a minute: a small seed of its own, low rates, short steps), on a database
of its own (a seeded database is reused only at the same size):

    .venv/bin/python bench/nodes.py --database-url .../pbx_crm_bench_nodes_smoke \\
        --contacts 10000 --rates 5,10 --step-seconds 3

Each node is a real ``pbx-crm fastagi`` process (``python -m pbx_crm fastagi``) with a data
directory and spool of its own, listening on a loopback address of its own, 127.0.0.2 and
127.0.0.3, as the nodes of a multi-node deployment listen on their own hosts (docs/deploy.md).
The calls are ``bench/pbx_calls.py``'s: whole inbound calls (``incoming``; ``answered`` for
three in four; ``hangup``), open loop, Poisson arrivals at a set rate, rings and talks at a
PBX's times times ``--time-scale``, played by its load generator in a child process of its
own. "One node" sends every call to node A; "two nodes" sends the AGI sessions to A and B in
turn, as ``hagi://`` does with SRV targets of one priority and equal weight
(``pbx_crm.simulator.hagi``: a call's hooks may then run on different nodes), or with
``--spread call`` every call's hooks to one node, the calls in turn.

The rates are stepped up (``--rates``, ``--step-seconds`` of arrivals each); at each rate one
node plays a step, then two nodes play one, so that the machine's drift weighs on both alike.
A setup whose ``incoming`` p99 went past ``--threshold-ms``, or that answered more than
``--unavailable-share`` of its sessions ``UNAVAILABLE``, stops stepping; the run stops when
both have. Between steps the nodes replay what they spooled (their health answers
``CRM_SPOOLED=0``), so a step does not load the next.

Per step it prints the answer times per hook (connect to close, as the generator saw them),
the ``UNAVAILABLE`` answers, the pop latency, each node's CPU, the CPU of the PostgreSQL
backends serving the bench's database, the load generator's, and the machine's
(``/proc/stat``: how busy all the cores were). The pop latency runs from the moment the node
received the call's ``incoming`` request (the ringing event's ``created_at``, taken then) to
the moment a ``LISTEN`` on the
web side (a connection of this process, as each web worker holds one) is told of the commit
that wrote it: what a web worker waits before it reads the pop; delivering it to a browser
adds the worker's read (``bench/screenpop_latency.py``). At the end: every call recorded
exactly once (``bench/pbx_calls.py``'s check), and the highest rate each setup carried
within the threshold, and their ratio (issue 18's goal: two nodes carry at least 1.6 times
the calls of one at the same p99).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from types import SimpleNamespace

from benchkit import machine_cpu_seconds, percentile, process_cpu_seconds
from pbx_calls import (
    HOOKS,
    REGION,
    Bench,
    Played,
    PlayedCall,
    check_recorded,
    failed,
    play,
    seeded_engine,
)
from sqlalchemy import text

from pbx_crm.funnel.events import NOTIFY_CHANNEL
from pbx_crm.simulator.hagi import Hagi
from pbx_crm.telephony.health import ask_health

NODE_HOSTS = ("127.0.0.2", "127.0.0.3")
SETUPS = (1, 2)  # nodes


# --- the nodes ----------------------------------------------------------------------------------


@dataclass
class Node:
    """One ``pbx-crm fastagi`` process."""

    name: str
    address: tuple[str, int]
    process: subprocess.Popen
    data_dir: Path

    def health(self) -> dict[str, str]:
        return ask_health(self.address, 2.0).variables

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_node(name: str, host: str, url: str, data_dir: Path) -> Node:
    """``pbx-crm fastagi --listen host:port`` with its own data directory (its spool), ready
    once its health session says the database is up."""
    port = free_port(host)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("PBX_CRM_")}
    environment.update(PBX_CRM_DATABASE_URL=url, PBX_CRM_DATA_DIR=str(data_dir),
                       PBX_CRM_PHONE_REGION=REGION)
    log = open(data_dir / "fastagi.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pbx_crm", "fastagi", "--listen", f"{host}:{port}"],
        env=environment, stdout=log, stderr=subprocess.STDOUT)
    node = Node(name, (host, port), process, data_dir)
    deadline = time.monotonic() + 60
    while node.health().get("CRM_DATABASE") != "up":
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"node {name} did not start: see {data_dir / 'fastagi.log'}")
        time.sleep(0.2)
    return node


def settle(nodes: list[Node], timeout: float = 120.0) -> int:
    """Wait until no node's spool holds a request (each replays its own every 2 s); returns
    how many are left."""
    deadline = time.monotonic() + timeout
    while True:
        left = sum(int(node.health().get("CRM_SPOOLED", "0") or 0) for node in nodes)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


# --- the load generator: bench/pbx_calls.py's, taking the nodes in turn ----------------------


def play_in_turn(addresses, calls, scale: float, spread: str) -> list[Played]:
    """Every call at its planned time (``pbx_calls.play``), at ``addresses``: one address
    takes them all; several take every hook in turn (``spread="hook"``: ``hagi://`` with
    SRV targets of equal priority, as ``pbx_crm.simulator.hagi`` plays it), or every call in
    turn (``"call"``: each call's hooks on one node, one ``play`` per node side by side)."""
    if len(addresses) == 1:
        return [play(addresses[0], calls, scale)]
    if spread == "hook":
        return [play(Hagi(addresses), calls, scale)]
    shares = [calls[n::len(addresses)] for n in range(len(addresses))]
    results: list[Played | None] = [None] * len(addresses)

    def run(index: int) -> None:
        results[index] = play(addresses[index], shares[index], scale)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(addresses))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def generator_loop(connection) -> None:
    threading.stack_size(512 * 1024)  # hundreds of calls wait at once
    while True:
        job = connection.recv()
        if job is None:
            return
        connection.send(play_in_turn(*job))


# --- pops seen on the web side ----------------------------------------------------------------


class PopListener:
    """A ``LISTEN`` as a web worker holds one: when each NOTIFY came (wall clock), by the
    id it names (the highest event id of the committing transaction)."""

    def __init__(self, engine):
        import psycopg

        _, params = engine.dialect.create_connect_args(engine.url)
        self.connection = psycopg.connect(**params, autocommit=True)
        self.connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.seen: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            for notify in self.connection.notifies(timeout=0.5):
                self.seen.setdefault(int(notify.payload), time.time())

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(2)
        self.connection.close()


def pop_latencies(engine, listener: PopListener, played: list[PlayedCall]) -> list[float]:
    """Milliseconds from each call's ringing event (``created_at``: when the node got the
    ``incoming`` request) to the NOTIFY of the transaction that wrote it."""
    uniqueids = [call.call.uniqueid for call in played]
    latencies = []
    with engine.connect() as connection:
        for start in range(0, len(uniqueids), 500):
            rows = connection.execute(text(
                "SELECT linkedid, max(id), min(created_at) FROM events"
                " WHERE kind = 'ringing' AND linkedid = ANY(:ids) GROUP BY linkedid"),
                {"ids": uniqueids[start:start + 500]}).all()
            for _, last_id, created_at in rows:
                told = listener.seen.get(last_id)
                if told is not None:
                    latencies.append((told - created_at.replace(tzinfo=UTC).timestamp()) * 1000)
    return latencies


class DatabaseBackends:
    """The CPU of the PostgreSQL backends serving the bench's database (the nodes' pooled
    connections, the listener, the checks): the server's other processes and databases are
    not counted."""

    def __init__(self, engine):
        self.engine = engine
        self.start: dict[int, float] = {}

    def pids(self) -> list[int]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars())

    def begin(self) -> None:
        self.start = {pid: process_cpu_seconds(pid) for pid in self.pids()}

    def seconds(self) -> float:
        """CPU seconds since ``begin`` of the backends alive then or now (a backend that
        ended meanwhile took its last moments with it)."""
        return sum(max(0.0, process_cpu_seconds(pid) - self.start.get(pid, 0.0))
                   for pid in set(self.pids()) | set(self.start))


def without_answerer(engine, played: list[PlayedCall]) -> int:
    """Answered calls recorded without who answered (every answering phone is a seller's):
    should be none, an ``answered`` that ran on one node before the other recorded its call
    waiting in the spool until it is; one still waiting there at the check counts here."""
    uniqueids = [c.call.uniqueid for c in played if c.call.dialstatus == "ANSWER"]
    missing = 0
    with engine.connect() as connection:
        for start in range(0, len(uniqueids), 500):
            missing += connection.execute(text(
                "SELECT count(*) FROM calls WHERE uniqueid = ANY(:ids)"
                " AND answered_by_id IS NULL"), {"ids": uniqueids[start:start + 500]}).scalar()
    return missing


# --- the steps ------------------------------------------------------------------------------------


@dataclass
class Step:
    rate: float
    nodes: int
    played: list[PlayedCall] = field(default_factory=list)
    node_cpu: list[float] = field(default_factory=list)  # seconds, per node
    postgres_cpu: float = 0.0  # seconds, the bench database's backends
    generator_cpu: float = 0.0  # seconds, the load generator's process
    machine_busy: float = 0.0  # share of all cores
    seconds: float = 0.0
    pops: list[float] = field(default_factory=list)
    late_p99: float = 0.0  # the generator: how late its sessions started, ms

    def sessions(self, hook: str):
        return [s for c in self.played for s in c.sessions if s.hook == hook]

    def times(self, hook: str) -> list[float]:
        return [s.ms for s in self.sessions(hook) if s.ms == s.ms] or [float("nan")]

    @property
    def unavailable(self) -> int:
        return sum(s.status == "UNAVAILABLE" for c in self.played for s in c.sessions)

    @property
    def session_count(self) -> int:
        return sum(len(c.sessions) for c in self.played)

    def within(self, threshold_ms: float, unavailable_share: float) -> bool:
        return (percentile(self.times("incoming"), 0.99) <= threshold_ms
                and self.unavailable <= unavailable_share * max(self.session_count, 1))


def run_step(bench: Bench, nodes: list[Node], setup: int, rate: float, args,
             engine, listener: PopListener, backends: DatabaseBackends) -> Step:
    step = Step(rate, setup)
    used = nodes[:setup]
    bench.args.rate = rate
    calls = bench.calls(1)
    node_cpu = [process_cpu_seconds(node.process.pid) for node in used]
    backends.begin()
    busy, total = machine_cpu_seconds()
    started = time.monotonic()
    bench.pipe.send(([node.address for node in used], calls, args.time_scale, args.spread))
    while not bench.pipe.poll(1.0):
        if not bench.process.is_alive():
            sys.exit(f"the load generator died (exit code {bench.process.exitcode})")
    results: list[Played] = bench.pipe.recv()
    step.seconds = time.monotonic() - started
    step.node_cpu = [process_cpu_seconds(node.process.pid) - before
                     for node, before in zip(used, node_cpu)]
    step.postgres_cpu = backends.seconds()
    busy_after, total_after = machine_cpu_seconds()
    step.machine_busy = (busy_after - busy) / max(total_after - total, 1e-9)
    step.played = [call for result in results for call in result.calls]
    # Each share's CPU reading is the whole generator process's, over about the same time.
    step.generator_cpu = max(result.cpu for result in results)
    late = [s.late_ms for c in step.played for s in c.sessions]
    step.late_p99 = percentile(late, 0.99) if late else 0.0
    settle(used)
    step.pops = pop_latencies(engine, listener, step.played)
    return step


# --- the report -------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} / {percentile(values, 0.99):.0f}"


def print_step(step: Step) -> None:
    hooks = "  ".join(f"{hook} {_ms(step.times(hook))}" for hook in HOOKS)
    statuses = Counter(s.hook for c in step.played for s in c.sessions
                       if s.status == "UNAVAILABLE")
    failures = sum(failed(s) for c in step.played for s in c.sessions)
    cpu = ", ".join(f"{seconds / step.seconds:.0%}" for seconds in step.node_cpu)
    per_call = sum(step.node_cpu) / max(len(step.played), 1) * 1000
    print(f"{step.rate:>6g}/s {step.nodes} node(s): {len(step.played)} calls; ms p50 / p99: "
          f"{hooks}; UNAVAILABLE {step.unavailable} "
          f"({'/'.join(str(statuses[h]) for h in HOOKS)}); failed {failures}; pop "
          f"{_ms(step.pops)} ms ({len(step.pops)}); CPU node(s) {cpu} of a core "
          f"({per_call:.1f} ms a call), PostgreSQL {step.postgres_cpu / step.seconds:.0%}, "
          f"machine {step.machine_busy:.0%} busy; generator {step.generator_cpu / step.seconds:.0%}"
          f" of a core, late p99 {step.late_p99:.0f} ms",
          flush=True)


def print_table(steps: list[Step]) -> None:
    print("\n| rate | nodes | calls | `incoming` p50 / p99 ms | `answered` p50 / p99 | "
          "`hangup` p50 / p99 | `UNAVAILABLE` | pop p50 / p99 ms | CPU per node | PostgreSQL "
          "CPU | generator CPU | machine busy |")
    print("| ---: | ---: | ---: | --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: |")
    for step in steps:
        cpu = ", ".join(f"{seconds / step.seconds:.0%}" for seconds in step.node_cpu)
        print(f"| {step.rate:g}/s | {step.nodes} | {len(step.played)} | "
              f"{_ms(step.times('incoming'))} | {_ms(step.times('answered'))} | "
              f"{_ms(step.times('hangup'))} | {step.unavailable} of {step.session_count} | "
              f"{_ms(step.pops)} | {cpu} | {step.postgres_cpu / step.seconds:.0%} | "
              f"{step.generator_cpu / step.seconds:.0%} | {step.machine_busy:.0%} |")


def carried(steps: list[Step], setup: int, args) -> tuple[float, bool]:
    """The highest rate ``setup`` carried within the threshold (every lower rate too), and
    whether it went past the threshold at the next (else the rates stopped first)."""
    best = 0.0
    for step in (s for s in steps if s.nodes == setup):
        if not step.within(args.threshold_ms, args.unavailable_share):
            return best, True
        best = step.rate
    return best, False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL URL")
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rates", default="20,30,40,50,60,70,80,100,120",
                        help="calls/s to step through, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=20.0,
                        help="seconds of arrivals per step")
    parser.add_argument("--threshold-ms", type=float, default=100.0,
                        help="incoming p99 a setup may reach and still count as carrying")
    parser.add_argument("--unavailable-share", type=float, default=0.01,
                        help="share of UNAVAILABLE sessions a setup may answer and still count")
    parser.add_argument("--time-scale", type=float, default=0.01,
                        help="real seconds per PBX second of ringing and talking")
    parser.add_argument("--spread", choices=("hook", "call"), default="hook",
                        help="how two nodes share the calls: every hook in turn, as hagi:// "
                             "with SRV targets of equal priority (default), or every call")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    engine = seeded_engine(args.database_url, args.contacts, None)
    if engine.dialect.name != "postgresql":
        sys.exit("several nodes share one PostgreSQL: give a postgresql+psycopg:// URL")
    url = engine.url.render_as_string(hide_password=False)
    rates = [float(rate) for rate in args.rates.split(",")]

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    generator = context.Process(target=generator_loop, args=(theirs,), daemon=True)
    generator.start()
    steps: list[Step] = []
    nodes: list[Node] = []
    listener = PopListener(engine)
    backends = DatabaseBackends(engine)
    with tempfile.TemporaryDirectory(prefix="pbx-crm-bench-nodes-") as data_dir:
        try:
            for name, host in zip("AB", NODE_HOSTS):
                (Path(data_dir) / name).mkdir()
                nodes.append(start_node(name, host, url, Path(data_dir) / name))
            print(f"nodes: {', '.join(f'{n.name} {n.address[0]}:{n.address[1]}' for n in nodes)}"
                  f"; {os.cpu_count()} cores; {args.contacts:,} contacts; steps of "
                  f"{args.step_seconds:g} s; two nodes take every {args.spread} in turn; "
                  f"threshold incoming p99 {args.threshold_ms:g} ms, UNAVAILABLE <= "
                  f"{args.unavailable_share:.0%}", flush=True)
            bench = Bench(engine, (ours, generator), SimpleNamespace(
                burst=0, rate=rates[0], seconds=args.step_seconds, new_share=0.2,
                missed_share=0.25, seed=args.seed, time_scale=args.time_scale))
            stepping = set(SETUPS)
            for rate in rates:
                for setup in SETUPS:
                    if setup not in stepping:
                        continue
                    step = run_step(bench, nodes, setup, rate, args, engine, listener,
                                    backends)
                    steps.append(step)
                    print_step(step)
                    if not step.within(args.threshold_ms, args.unavailable_share):
                        stepping.discard(setup)
                if not stepping:
                    break
            left = settle(nodes)
            played = [call for step in steps for call in step.played]
            deadline = time.monotonic() + 60
            while True:  # the last recordings in flight commit within moments
                recorded = check_recorded(engine, played)
                if recorded.exactly_once == recorded.played or time.monotonic() > deadline:
                    break
                time.sleep(1)
        finally:
            listener.close()
            for node in nodes:
                node.stop()
            ours.send(None)
            generator.join(timeout=10)

    print_table(steps)
    print(f"\nrecorded in calls: {recorded.exactly_once} of {recorded.played} calls exactly once "
          f"with their disposition; missing {len(recorded.missing)}, wrong disposition "
          f"{len(recorded.wrong_disposition)}, more than one row {len(recorded.extra_rows)}"
          + (f"; {left} spooled request(s) not replayed" if left else ""))
    answered = sum(c.call.dialstatus == "ANSWER" for c in played)
    print(f"answered calls recorded without who answered: {without_answerer(engine, played)} "
          f"of {answered}")
    (one, one_passed), (two, two_passed) = carried(steps, 1, args), carried(steps, 2, args)
    print(f"carried within incoming p99 <= {args.threshold_ms:g} ms and UNAVAILABLE <= "
          f"{args.unavailable_share:.0%}: one node {one:g} calls/s"
          f"{'' if one_passed else ' (or more: the rates ran out first)'}, two nodes {two:g} "
          f"calls/s{'' if two_passed else ' (or more: the rates ran out first)'}")
    if one and one_passed and two_passed:
        ratio = two / one
        print(f"two nodes / one: {ratio:.2f}x (goal >= 1.6x: "
              f"{'met' if ratio >= 1.6 else 'not met'})")
    else:
        print("two nodes / one: not measured (raise --rates until both go past the threshold)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
