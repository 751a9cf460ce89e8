"""Test helpers for whole calls: a PBX that plays calls against the real FastAGI server.

``Pbx`` starts pbx-crm's FastAGI component (``start_fastagi``: server, dispatcher, spool) on a
free loopback port and plays each step of a call through the shipped call player's AGI steps
(``pbx_crm.simulator.pbx``), with the channel shapes and URLs of the recorded captures:

* ``incoming`` on the inbound trunk leg, before Dial:
  ``AGI(agi://.../incoming?did=${EXTEN},${EXTEN},${CHANNEL(linkedid)})``;
* ``answered`` on the leg that answered (Dial's ``U()``: ``Local/101@phones-...;1`` or
  ``PJSIP/101-0000000a``, whose CALLERID is the DID), with ARG1 = the inbound uniqueid; after
  ``Queue()`` (``queue=...``) the gosub runs it on the member's leg, whose CALLERID is the
  real caller, with MEMBERINTERFACE/MEMBERNAME set (capture 10);
* ``hangup`` in the hangup handler, on the dead inbound leg:
  ``${UNIQUEID},${DIALSTATUS},${HANGUPCAUSE},${ANSWEREDTIME}`` (DIALSTATUS unset, ``""``,
  after a queue call).

Whole queue calls, transfers and two-device calls with their AMI side are played by the
shipped player (``pbx_crm.simulator.floor_calls``).

Also here: ``eventually`` (wait on a condition with a deadline), ``DatabaseLock`` (another
client holds the lock every hook needs) and ``TcpProxy`` (the database becomes unreachable for
real, or hangs silently, then comes back).
"""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from pbx_crm.components import start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import make_engine
from pbx_crm.telephony.fastagi import relay_script_path
from pbx_crm.simulator.agi import FakeChannel, Transcript, run_process_agi
from pbx_crm.simulator.pbx import (agi_answered, agi_hangup, agi_incoming, answering_leg,
                                   hang_up, inbound_leg, variables_set)

DID = "2150001"
CALLER = "+62 812-3456-7890"
# "/usr/bin/env python3" in the relay's shebang finds this interpreter first.
PATH = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def eventually(condition, *, timeout: float = 10.0, what: str = "the condition"):
    """Wait until ``condition()`` returns something true, and return it; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.005)


@dataclass
class Timed:
    """One AGI session and when it ran (UTC, as the CRM records times)."""

    transcript: Transcript
    started: object
    ended: object
    seconds: float

    @property
    def variables(self) -> dict[str, str]:
        """The variables this session set, as Asterisk decoded them."""
        return variables_set(self.transcript)


def _timed(run) -> Timed:
    from pbx_crm.models import utcnow

    started, clock = utcnow(), time.monotonic()
    transcript = run()
    return Timed(transcript, started, utcnow(), time.monotonic() - clock)


@dataclass
class Pbx:
    """An Asterisk in front of the CRM: the real FastAGI component, calls played by the emulator.

    ``budget_ms`` is the hooks' time budget; ``workers``/``db_workers`` size the server and the
    dispatcher. The spool replayer thread is effectively off (a test replays by hand).
    """

    engine: object
    data_dir: Path
    budget_ms: int = 2000
    workers: int = 64
    db_workers: int = 16
    # A FastAGI server running elsewhere (a `pbx-crm fastagi` process) to play calls against,
    # instead of one started here; the steps that wait on the dispatcher are then not played.
    server_address: tuple[str, int] | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self):
        if self.server_address is not None:
            self.address, self.running = self.server_address, None
            return
        settings = Settings(data_dir=self.data_dir,
                            fastagi_listen=Address("127.0.0.1", 0),
                            database_url=self.engine.url.render_as_string(False),
                            hook_budget_ms=self.budget_ms)
        self.running = start_fastagi(settings, self.engine, replay_interval=3600,
                                     workers=self.workers, db_workers=self.db_workers)
        self.address = self.running.address
        self.server = self.running.server
        self.dispatcher = self.running.dispatcher
        self.spool = self.running.spool

    def stop(self) -> None:
        if self.running is None:
            return
        assert self.server.wait_idle(10), "an AGI session never ended"
        assert self.dispatcher.wait_idle(15), "a hook never finished"
        self.running.stop()

    # --- channels -----------------------------------------------------------------------------

    def _next(self) -> int:
        return next(self._ids)

    def trunk_call(self, number: str | None = CALLER, name: str | None = "Budi", *,
                   callingpres: int = 0, did: str = DID) -> FakeChannel:
        """The inbound leg of a call from the trunk (its uniqueid is the call's linkedid)."""
        n = self._next()
        return inbound_leg(f"PJSIP/trunk-{n:08x}", f"1795892488.{n}", number=number,
                           caller_name=name, callingpres=callingpres, did=did,
                           context="from-trunk", extension=did, priority=3, dnid="unknown")

    def internal_call(self, extension: str, name: str, *, dialed: str = DID) -> FakeChannel:
        """A seller's phone calling in (``from-internal``)."""
        n = self._next()
        return FakeChannel(name=f"PJSIP/{extension}-{n:08x}", uniqueid=f"1795892488.{n}",
                           callerid=extension, calleridname=name, context="from-internal",
                           extension=dialed, priority=3)

    def answering_leg(self, inbound: FakeChannel, extension: str, *,
                      device: str = "local", queue: str = "") -> FakeChannel:
        """The called leg that picked up, as Dial's U() subroutine sees it (scenario 01), or
        with ``queue`` as Queue's gosub sees a member's leg (scenario 10: the caller's
        CALLERID, the member's interface and name, setinterfacevar=yes)."""
        n = self._next()
        name = (f"Local/{extension}@phones-{n:08x};1" if device == "local"
                else f"PJSIP/{extension}-{n:08x}")
        leg = answering_leg(inbound, name, f"1795892488.{n}", did=inbound.extension,
                            context="crm-answered")
        if queue:
            interface = name.rsplit("-", 1)[0]
            leg.callerid = inbound.callerid
            leg.variables.update(MEMBERINTERFACE=interface, MEMBERNAME=f"Seller {extension}")
        return leg

    # --- the hooks ----------------------------------------------------------------------------

    def incoming(self, inbound: FakeChannel, *, recorded: bool = True, **options) -> Timed:
        """The lookup. It is answered once read (and its request on disk); the call is
        recorded right after, on the same database worker: with ``recorded`` this returns once
        the workers are done."""
        did = inbound.extension
        timed = _timed(lambda: agi_incoming(self.address, inbound, did,
                                            script=f"incoming?did={did}", **options))
        if recorded and self.running is not None:
            assert self.dispatcher.wait_idle(15), "the call was never recorded"
        return timed

    def answered(self, inbound: FakeChannel, extension: str = "101", *,
                 device: str = "local", queue: str = "", leg: FakeChannel | None = None,
                 **options) -> Timed:
        leg = leg or self.answering_leg(inbound, extension, device=device, queue=queue)
        return _timed(lambda: agi_answered(self.address, inbound, leg,
                                           script=f"answered?inbound={inbound.uniqueid}",
                                           **options))

    def hangup(self, inbound: FakeChannel, dialstatus: str, *, talk: int | None = None,
               cause: int = 16, **options) -> Timed:
        """The hangup handler on the inbound leg, which is dead by now."""
        args = hang_up(inbound, dialstatus, talk=talk, cause=cause, context="crm-hangup")
        return _timed(lambda: agi_hangup(self.address, inbound, args,
                                         script=f"hangup?uniqueid={inbound.uniqueid}",
                                         **options))

    def call(self, inbound: FakeChannel, *, answered_by: str | None = "101",
             dialstatus: str | None = None, talk: int | None = 3) -> dict[str, Timed]:
        """A whole inbound call: the lookup, the answer (if any), the hangup handler."""
        steps = {"incoming": self.incoming(inbound)}
        if answered_by:
            steps["answered"] = self.answered(inbound, answered_by)
        status = dialstatus or ("ANSWER" if answered_by else "NOANSWER")
        steps["hangup"] = self.hangup(inbound, status, talk=talk if answered_by else None)
        return steps

    # --- the same hooks through the process-AGI relay ------------------------------------------

    def relay_env(self, address: tuple[str, int] | None = None) -> dict[str, str]:
        host, port = address or self.address
        return {"PATH": PATH, "PBX_CRM_FASTAGI": f"{host}:{port}"}

    def relayed(self, hook: str, args, channel: FakeChannel, *,
                address: tuple[str, int] | None = None, **options) -> Timed:
        return _timed(lambda: run_process_agi(relay_script_path(), hook, args, channel,
                                              env=self.relay_env(address), **options))

    def relayed_hangup(self, inbound: FakeChannel, dialstatus: str, *, talk: int | None = None,
                       cause: int = 16) -> Timed:
        args = hang_up(inbound, dialstatus, talk=talk, cause=cause, context="crm-hangup")
        return self.relayed("hangup", args, inbound)


def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the database misbehaving --------------------------------------------------------------


class DatabaseLock:
    """Another client holds what every hook needs, until ``release()``.

    SQLite: the write lock (``BEGIN IMMEDIATE`` on a connection of its own), so a hook waits
    in its own ``BEGIN IMMEDIATE`` for the busy timeout. PostgreSQL: an exclusive lock on the
    calls table, which every hook reads first; with ``reads_pass``, a lock on the events
    table that lets the answers read and holds the recording (as SQLite's lock does).
    """

    def __init__(self, engine, *, reads_pass: bool = False):
        self.engine = engine
        if engine.dialect.name == "sqlite":
            self._sqlite = sqlite3.connect(engine.url.database, isolation_level=None,
                                           check_same_thread=False)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._connection = engine.connect()
            self._transaction = self._connection.begin()
            self._connection.execute(text("LOCK TABLE events IN EXCLUSIVE MODE" if reads_pass
                                          else "LOCK TABLE calls IN ACCESS EXCLUSIVE MODE"))
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.engine.dialect.name == "sqlite":
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
        else:
            self._transaction.rollback()
            self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class TcpProxy:
    """A loopback TCP relay in front of a server, with switches. Point an engine at
    ``engine_url(url)`` to put the proxy between it and the server.

    * ``cut()``: the server's host went away. Every open connection is dropped and new ones
      are refused, so both ends learn it at once.
    * ``hang()``: the path goes dead silently. Open connections are kept, but no byte passes
      in either direction (nor a close: an end that gives up is not heard by the other until
      the path is back); new connections are accepted and then neither connected onward nor
      answered. A client learns of the hang only through its own timeouts. Note that the
      proxy's kernel still acknowledges every segment, so TCP keepalives and
      ``tcp_user_timeout`` see a live peer: this is the dead path that only application-level
      limits can find (like a frozen database server or pooler whose host still answers TCP),
      not one that a kernel-level probe could detect.
    * ``restore()``: the server is reachable again. After a ``cut()``, new connections are
      taken again. After a ``hang()``, the held connections resume forwarding, as a TCP
      connection does when a path comes back before either end gave up: what each end sent
      during the hang (queries, a COMMIT, results) is delivered late, and a close made by one
      end during the hang reaches the other end now. The connections accepted during the hang
      are connected onward, as a retransmitted SYN gets through; one whose client gave up
      meanwhile is closed once its late bytes are delivered.
    * ``restore(held="dead")``: the path comes back for new connections only; the ones open
      during the hang stay dead for good (a NAT or stateful firewall that restarted and drops
      the packets of the connections it forgot, or a database backend stuck for good). Each
      end keeps its half until it gives up by itself.
    """

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._state = "up"  # "up", "cut" or "hung"
        self._links: set[socket.socket] = set()
        self._held: list[socket.socket] = []  # accepted during a hang, not connected onward
        self._dead: set[socket.socket] = set()  # caught in a hang that ended without them
        self._changed = threading.Condition()
        self._accepting = threading.Thread(target=self._accept, name="test-db-proxy",
                                           daemon=True)
        self._accepting.start()

    def engine_url(self, url) -> str:
        url = make_url(url) if isinstance(url, str) else url
        return url.set(host="127.0.0.1", port=self.port).render_as_string(False)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._changed:
                state = self._state
                if state == "hung":
                    # The connection is taken (the kernel did) and then nothing: no onward
                    # connection, no answer, until restore().
                    self._held.append(client)
                    self._links.add(client)
                    continue
            if state == "cut":
                client.close()  # the server is gone: the client's connect fails at once
                continue
            self._connect_onward(client)

    def _connect_onward(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
            server.settimeout(None)
        except OSError:
            self._drop(client)
            return
        with self._changed:
            if self._state == "cut":
                dropped = True
            else:
                dropped = False
                self._links.update((client, server))
        if dropped:
            self._drop(client)
            self._drop(server)
            return
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _flowing(self, source: socket.socket) -> bool:
        """Wait while the path hangs (for ever on a dead connection); True if bytes may pass,
        False if it was cut meanwhile."""
        with self._changed:
            self._changed.wait_for(lambda: self._state == "cut" or (
                self._state == "up" and source not in self._dead))
            return self._state == "up"

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                # What arrives during a hang (bytes or the end of the stream) is held here,
                # the rest in the kernel's buffers, until the path is back.
                if not self._flowing(source) or not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._changed:
            self._links.discard(sock)
            self._dead.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        with self._changed:
            self._state = "cut"
            links = list(self._links)
            self._held.clear()
            self._dead.clear()
            self._changed.notify_all()
        for sock in links:
            self._drop(sock)

    def hang(self) -> None:
        with self._changed:
            self._state = "hung"
            self._changed.notify_all()

    def restore(self, *, held: str = "resume") -> None:
        """The path is back. ``held``: what becomes of the connections a ``hang()`` caught,
        "resume" (they go on) or "dead" (they stay dead; new connections pass)."""
        if held not in ("resume", "dead"):
            raise ValueError(f"held={held!r}: 'resume' or 'dead'")
        with self._changed:
            if held == "dead" and self._state == "hung":
                self._dead.update(self._links)  # the ones accepted during the hang too
                waiting, self._held = [], []
            else:
                waiting, self._held = self._held, []
                self._links.difference_update(waiting)
            self._state = "up"
            self._changed.notify_all()
        for client in waiting:
            threading.Thread(target=self._connect_onward, args=(client,), daemon=True).start()

    def close(self) -> None:
        self.cut()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._accepting.join(timeout=5)


def proxied_engine(engine, proxy: TcpProxy):
    """An engine like ``engine`` that reaches its PostgreSQL server through ``proxy``."""
    return make_engine(proxy.engine_url(engine.url))


class RecordingDispatcher:
    """A plain dispatcher for the server alone: fixed variables, and the requests it saw."""

    def __init__(self, variables=None, on_handle=None):
        self.variables = variables if variables is not None else {"CRM_DEAL_ID": "42"}
        self.on_handle = on_handle
        self.requests = []
        self.overloaded_requests = []

    def handle(self, request):
        self.requests.append(request)
        if self.on_handle:
            self.on_handle(request)
        return self.variables

    def overloaded(self, request):
        self.overloaded_requests.append(request)
        return {"CRM_STATUS": "UNAVAILABLE"}
