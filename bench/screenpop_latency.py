"""Benchmark: screen-pop latency, ring event written -> received by the ringing seller's stream.

``--sellers`` sellers (200) each hold ``GET /events`` open on ONE web server process (gunicorn,
one gevent worker, as ``pbx-crm web`` runs it); another process writes ringing events, one
transaction each, round-robin over the sellers, as the telephony process does. Latency is from
the moment the writer starts the event's transaction (a wall-clock stamp in the payload) to the
moment the event's message arrives on that seller's stream, read here with one selector over
all the streams. Every message is checked to reach its own seller only.

Baseline in the same run: the same streams and writer against a bare gevent SSE echo server
(no database: the writer sends each event over a loopback UDP socket and the server hands it
to the seller's stream at once): the floor of push over HTTP on this machine.

    python bench/screenpop_latency.py                      # SQLite (a temporary file)
    python bench/screenpop_latency.py --database-url postgresql+psycopg://pbx_crm:pbx_crm@127.0.0.1:5432/pbx_crm_bench_pop
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import selectors
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_P95_MS = 100.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the CRM side --------------------------------------------------------------------------


def prepare(url: str, sellers: int) -> list[tuple[int, str]]:
    """A fresh schema with ``sellers`` sellers, each signed in: (user id, session token)."""
    import argon2
    from sqlalchemy import text

    from pbx_crm.people import users, sign_in as web_sessions
    from pbx_crm.db import make_engine, transaction, upgrade
    from pbx_crm.rules.funnel import Actor
    from pbx_crm.models import metadata

    users.use_password_profile(argon2.profiles.CHEAPEST)
    engine = make_engine(url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    signed = []
    with transaction(engine) as session:
        for n in range(sellers):
            user = users.create_user(session, Actor.system("bench"), login=f"seller{n}",
                                     name=f"Seller {n}", password="bench-password-1")
            signed.append((user.id, web_sessions.open_session(session, user)))
    engine.dispose()
    return signed


def crm_writer(url: str, targets: list[int], rate: float, ready, go) -> None:
    """The telephony process: one ringing event per transaction, ``rate`` a second."""
    from pbx_crm.funnel import events
    from pbx_crm.db import make_engine, transaction

    engine = make_engine(url)
    with transaction(engine, read_only=True) as session:
        events.latest_event_id(session)  # connect before the clock starts
    ready.set()
    go.wait()
    start = time.monotonic()
    for n, target in enumerate(targets):
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the writer, not waiting for a result
        with transaction(engine) as session:
            events.emit(session, events.RINGING, target_user_id=target, linkedid=f"bench.{n}",
                        payload={"linkedid": f"bench.{n}", "caller": "+6281234567890",
                                 "status": "NEW", "deal_id": None, "sent_at": time.time(),
                                 "target": target})
    engine.dispose()


# --- the baseline: a bare SSE echo server ----------------------------------------------------


def echo_server(port: int, udp_port: int, started) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.pywsgi import WSGIServer
    from gevent.queue import Queue

    streams: dict[str, list[Queue]] = {}

    def app(environ, start_response):
        cookie = environ.get("HTTP_COOKIE", "").partition("=")[2]
        queue = Queue()
        streams.setdefault(cookie, []).append(queue)
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def body():
            yield b"retry: 2000\n\n"
            while True:
                yield queue.get()
        return body()

    def relay():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", udp_port))
        while True:
            datagram = receiver.recv(65536)
            token, _, data = datagram.partition(b"\n")
            for queue in streams.get(token.decode(), []):
                queue.put(b"event: ringing\ndata: " + data + b"\n\n")

    gevent.spawn(relay)
    server = WSGIServer(("127.0.0.1", port), app, log=None)
    server.start()  # listening from here
    started.set()
    server.serve_forever()


def echo_writer(udp_port: int, targets: list[int], tokens: dict[int, str], rate: float,
                ready, go) -> None:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ready.set()
    go.wait()
    start = time.monotonic()
    for n, target in enumerate(targets):
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        data = json.dumps({"linkedid": f"bench.{n}", "sent_at": time.time(),
                           "target": target}).encode()
        sender.sendto(tokens[target].encode() + b"\n" + data, ("127.0.0.1", udp_port))


# --- the browsers ----------------------------------------------------------------------------


class Streams:
    """``len(signed)`` open SSE streams, read with one selector."""

    def __init__(self, port: int, signed: list[tuple[int, str]]):
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.pending_connect = set()
        for user_id, token in signed:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(f"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                         f"Cookie: pbx_crm_session={token}\r\n"
                         f"Accept: text/event-stream\r\n\r\n".encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, user_id)
            self.buffers[sock] = b""
            self.pending_connect.add(sock)

    def read(self, timeout: float):
        """Messages as (user id, data dict, arrival time) read within ``timeout``."""
        got = []
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            chunk = sock.recv(65536)
            arrived = time.time()
            if not chunk:
                raise RuntimeError("a stream was closed by the server")
            buffer = self.buffers[sock] + chunk
            *messages, rest = buffer.split(b"\n\n")
            self.buffers[sock] = rest
            for message in messages:
                if b"retry:" in message:
                    self.pending_connect.discard(sock)
                for line in message.split(b"\n"):
                    if line.startswith(b"data: "):
                        got.append((key.data, json.loads(line[6:]), arrived))
        return got

    def wait_connected(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pending_connect:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.pending_connect)} streams never opened")
            self.read(0.5)

    def close(self) -> None:
        for sock in self.buffers:
            self.selector.unregister(sock)
            sock.close()


def measure(port: int, signed, writer, args, events: int) -> list[float]:
    context = multiprocessing.get_context("spawn")
    streams = Streams(port, signed)
    try:
        streams.wait_connected()
        ready, go = context.Event(), context.Event()
        process = context.Process(target=writer, args=(*args, ready, go))
        process.start()
        ready.wait(60)
        go.set()
        latencies, deadline = [], time.monotonic() + events + 60
        while len(latencies) < events and time.monotonic() < deadline:
            for user_id, data, arrived in streams.read(1.0):
                if data.get("target") != user_id:
                    raise RuntimeError(f"seller {user_id} got seller {data.get('target')}'s pop")
                latencies.append((arrived - data["sent_at"]) * 1000)
        process.join(60)
        if len(latencies) < events:
            raise RuntimeError(f"only {len(latencies)} of {events} pops arrived")
        return latencies
    finally:
        streams.close()


def report(name: str, latencies: list[float]) -> dict:
    from benchkit import percentile  # imports pbx_crm: after the fork, like the rest here

    figures = {"p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
               "p99": percentile(latencies, 0.99), "max": max(latencies)}
    print(f"{name:<34} " + "  ".join(f"{k} {v:7.1f} ms" for k, v in figures.items()),
          flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--sellers", type=int, default=200)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0, help="ring events a second")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbx-crm-bench-pop-") as workdir:
        run(options, Path(workdir))


def run(options, workdir: Path) -> None:
    from pbx_crm.config import Address, Settings
    from pbx_crm.web.server import start_web

    url = options.database_url or f"sqlite:///{workdir / 'crm.sqlite3'}"
    signed = prepare(url, options.sellers)
    tokens = dict(signed)
    ids = [user_id for user_id, _ in signed]
    targets = [ids[n % len(ids)] for n in range(options.events)]
    database = url.split(":", 1)[0].split("+")[0]
    print(f"{options.sellers} seller streams on one gevent worker, {options.events} ring "
          f"events at {options.rate:g}/s written by another process, database {database}",
          flush=True)

    context = multiprocessing.get_context("spawn")
    port, udp_port = free_port(), free_port()
    started = context.Event()
    echo = context.Process(target=echo_server, args=(port, udp_port, started), daemon=True)
    echo.start()
    started.wait(30)
    try:
        baseline = report("baseline: bare SSE echo (no DB)",
                          measure(port, signed, echo_writer, (udp_port, targets, tokens,
                                                              options.rate), options.events))
    finally:
        echo.terminate()
        echo.join(10)

    settings = Settings(data_dir=workdir, database_url=url,
                        web_listen=Address("127.0.0.1", free_port()), web_workers=1)
    web = start_web(settings)
    try:
        crm = report("pbx-crm /events",
                     measure(settings.web_listen.port, signed, crm_writer,
                             (url, targets, options.rate), options.events))
    finally:
        web.stop()
    verdict = "meets" if crm["p95"] < GOAL_P95_MS else "MISSES"
    print(f"p95 {crm['p95']:.1f} ms ({crm['p95'] / baseline['p95']:.1f}x the bare echo): "
          f"{verdict} the {GOAL_P95_MS:g} ms goal", flush=True)
    if crm["p95"] >= GOAL_P95_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
