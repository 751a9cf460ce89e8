"""The FastAGI server: where Asterisk's ``AGI(agi://host:port/<hook>?...,args)`` lands.

Owns the listening socket, the peer allow-list, the worker threads and the shape of a session:
accept, read the environment block, ask the dispatcher for channel variables, ``SET VARIABLE``
each one, half-close. It knows nothing of hooks or the database: the dispatcher
(``pbx_crm.telephony.dispatcher.HookDispatcher``, or any plain object in tests) does, and
keeps its own time budget. Each session runs on a thread of its own; Asterisk waits for a
FastAGI server with no read timeout, so past ``workers`` sessions at once a new one is
answered ``dispatcher.overloaded()`` at once instead of waiting for a free one.

Asterisk sends the whole environment block the moment it connects, so the accept loop reads
it itself and a connection takes a worker only once its block is in: an idle or trickling
peer costs a file descriptor for ``env_timeout`` (counted from the accept, not per byte),
never a worker. A peer holds at most ``max_connections_per_peer`` connections at once.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import ipaddress
import logging
import re
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from .agi_protocol import (
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    AgiSession,
    check_variable_name,
    escape,
    read_request,
)

logger = logging.getLogger(__name__)

MIN_BACKLOG = 128
# The overload answer talks to Asterisk with this shorter timeout: it must not hold its slot.
OVERLOAD_IO_TIMEOUT = 1.0
# Asterisk writes the environment block (about 600 bytes) in the instant it connects. Two
# seconds from the accept cover one lost segment (Linux retransmits after 1 s); a peer that
# has not sent its whole block by then is not Asterisk, however it trickles.
ENV_TIMEOUT = 2.0
MAX_ENV_BYTES = 65536  # an environment block is a few KB; more without its end is not one
# One Asterisk keeps a FastAGI session open only for the AGI step of a call: a lookup within
# its budget (500 ms), a few ms for the answered and hangup hooks. A box taking 100 new calls
# a second whose every lookup runs out its budget holds about 150 at once; 256 leaves room
# over that and over the server's 128 workers, and keeps a peer to a quarter of the 1024 file
# descriptors a service gets by default.
MAX_CONNECTIONS_PER_PEER = 256
_ENV_END = re.compile(rb"(?:^|\n)\r?\n")  # the empty line that ends the block


class Dispatcher(Protocol):
    """What the server needs from the application (``pbx_crm.telephony.dispatcher.HookDispatcher``)."""

    def handle(self, request: AgiRequest) -> Mapping[str, str]:
        """Channel variables to set. Owns its time budget; should never raise."""

    def overloaded(self, request: AgiRequest) -> Mapping[str, str]:
        """Called instead of ``handle`` when every worker is busy; must return at once."""


class _Waiting:
    """A connection the accept loop holds until its whole environment block is in."""

    __slots__ = ("conn", "peer_ip", "accepted", "deadline", "data", "done")

    def __init__(self, conn: socket.socket, peer_ip, accepted: float, env_timeout: float):
        self.conn, self.peer_ip, self.accepted = conn, peer_ip, accepted
        self.deadline = accepted + env_timeout
        self.data = bytearray()
        self.done = False  # handed to a worker, or dropped


class _Prefixed(io.RawIOBase):
    """A session's reader: the bytes the accept loop read first, then the socket."""

    def __init__(self, head: bytes, conn: socket.socket):
        self._head = memoryview(head)
        self._raw = conn.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        if not self._head:
            return self._raw.readinto(buffer)
        n = min(len(buffer), len(self._head))
        buffer[:n], self._head = self._head[:n], self._head[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def relay_script_path() -> Path:
    """Where the installed package keeps ``pbx-crm.agi``, the stdlib-only process-AGI relay.

    Found without importing ``pbx_crm.agi`` (that would load every hook and the database layer).
    """
    spec = importlib.util.find_spec("pbx_crm.agi")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package pbx_crm.agi is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pbx-crm.agi"


def _bind_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if host == "localhost":
        return ipaddress.ip_address("127.0.0.1")
    if host == "":
        return ipaddress.ip_address("0.0.0.0")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"FastAGI bind address must be an IP address, not {host!r}") from None


def _peer_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class _SessionLog(logging.LoggerAdapter):
    """Prefixes every line of a session with the call's uniqueid (the key to grep a call by)."""

    def process(self, msg, kwargs):
        return f"[{self.extra['uniqueid']}] {msg}", kwargs


class FastAgiServer:
    """A threaded FastAGI server; see the module docstring.

    The accept loop holds a connection until its environment block is in (``env_timeout``
    seconds at most), then starts the session's thread: one of ``workers`` that ask
    ``dispatcher.handle()``, or past those one of ``overload_sessions`` that answer
    ``dispatcher.overloaded()`` at once (see ``_admit``).
    ``io_timeout`` bounds every later read and write on a session socket, so a silent peer
    cannot pin a thread. A peer address at ``max_connections_per_peer`` makes room for a new
    connection by losing its oldest one still without an environment, or is refused.
    """

    def __init__(
        self,
        address: tuple[str, int],
        dispatcher: Dispatcher,
        *,
        allowed_peers: frozenset[str] = frozenset(),
        workers: int = 16,
        backlog: int = 128,
        io_timeout: float = 5.0,
        overload_sessions: int = 256,
        env_timeout: float = ENV_TIMEOUT,
        max_connections_per_peer: int = MAX_CONNECTIONS_PER_PEER,
    ):
        host, port = address
        self._bind = _bind_ip(host)
        try:
            self.allowed_peers = tuple(
                ipaddress.ip_network(peer, strict=False) for peer in allowed_peers
            )
        except ValueError as error:
            raise ValueError(f"allowed_peers: {error}") from None
        if not self._bind.is_loopback and not self.allowed_peers:
            raise ValueError(
                f"FastAGI has no authentication: listening on {self._bind} (not loopback) needs a "
                "non-empty allowed_peers (the Asterisk hosts' IP addresses or networks)"
            )
        if workers < 1 or overload_sessions < 1 or max_connections_per_peer < 1:
            raise ValueError("workers, overload_sessions and max_connections_per_peer must be "
                             "at least 1")
        self.address = (str(self._bind), int(port))
        self.dispatcher = dispatcher
        self.workers = workers
        self.backlog = max(MIN_BACKLOG, backlog)
        self.io_timeout = io_timeout
        self.env_timeout = env_timeout
        self.max_connections_per_peer = max_connections_per_peer

        self._free_workers = threading.Semaphore(workers)
        # An overload answer takes a few milliseconds (a spool write); its reads are bounded by
        # OVERLOAD_IO_TIMEOUT.
        self._free_overload = threading.Semaphore(overload_sessions)
        # Connections still sending their environment, per peer, oldest (first due) first;
        # only the accept loop touches them. Connections per peer, sessions included.
        self._waiting: dict[object, deque[_Waiting]] = {}
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[object, int] = {}
        self._connections_lock = threading.Lock()
        self._at_cap: set = set()  # peers told about in the log, until they are below it
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._active = 0
        self._active_changed = threading.Condition()

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the server is not started")
        return self._listener.getsockname()[1]

    @property
    def active_sessions(self) -> int:
        """Sessions admitted and not yet closed (queued ones included)."""
        with self._active_changed:
            return self._active

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no session is running; False if ``timeout`` ran out first."""
        with self._active_changed:
            return self._active_changed.wait_for(lambda: self._active == 0, timeout=timeout)

    def start(self) -> int:
        """Bind and listen; start the worker threads. Returns the bound port (for port 0)."""
        family = socket.AF_INET6 if self._bind.version == 6 else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(self.address)
            listener.listen(self.backlog)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        logger.info(
            "FastAGI server listening on %s:%d (%d workers)",
            self.address[0],
            self.port,
            self.workers,
        )
        return self.port

    def serve_forever(self) -> None:
        """Accept connections until ``shutdown()``, in the main thread or a thread of its own."""
        if self._listener is None:
            self.start()
        if self._stopping.is_set():
            return
        self._loop_done.clear()
        self._selector = selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(self._drop_overdue()):
                    if key.fileobj is self._listener:
                        self._accept_pending()
                    elif key.data is not None:
                        self._read_environment(key.data)
        finally:
            for waiting in self._waiting.values():
                for connection in waiting:
                    connection.conn.close()
            self._waiting.clear()
            selector.close()
            self._listener.close()
            self._loop_done.set()

    def stop_accepting(self, timeout: float = 5.0) -> None:
        """Close the listening socket (new calls get "connection refused"); sessions go on."""
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if not self._loop_done.wait(timeout):
            logger.warning("the FastAGI accept loop did not stop")
        elif self._listener is not None:
            self._listener.close()

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting; give running sessions ``grace`` seconds to end (each is bounded by
        the dispatcher's budget and ``io_timeout``); one still running is abandoned."""
        deadline = time.monotonic() + grace
        self.stop_accepting(grace)
        if not self.wait_idle(max(0.0, deadline - time.monotonic())):
            logger.warning("FastAGI shutdown: %d session(s) still running after %.1f s",
                           self.active_sessions, grace)
        self._wake_r.close()
        self._wake_w.close()

    # -- accepting ------------------------------------------------------------------------------

    def _accept_pending(self) -> None:
        # Take every queued connection at once: a burst of calls must not wait in the kernel's
        # accept queue, where an overflow costs a caller a one-second SYN retransmission.
        for _ in range(self.backlog):
            try:
                conn, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                logger.error("FastAGI accept failed: %s", error)
                return
            self._accept(conn, peer)

    def _accept(self, conn: socket.socket, peer) -> None:
        try:
            peer_ip = _peer_ip(peer[0])
        except ValueError:
            conn.close()
            return
        if self.allowed_peers and not any(peer_ip in network for network in self.allowed_peers):
            logger.warning("FastAGI connection from %s refused: not in allowed_peers", peer_ip)
            conn.close()
            return
        if not self._make_room(peer_ip):
            logger.warning("FastAGI connection from %s refused: %d sessions from it already "
                           "(max_connections_per_peer)", peer_ip, self.max_connections_per_peer)
            conn.close()
            return
        conn.setblocking(False)
        connection = _Waiting(conn, peer_ip, time.monotonic(), self.env_timeout)
        self._waiting.setdefault(peer_ip, deque()).append(connection)
        self._selector.register(conn, selectors.EVENT_READ, connection)

    def _make_room(self, peer_ip) -> bool:
        """Count a new connection from ``peer_ip``; False if it may not have one more."""
        with self._connections_lock:
            held = self._connections.get(peer_ip, 0)
            if held < self.max_connections_per_peer:
                self._connections[peer_ip] = held + 1
                return True
            first_time = peer_ip not in self._at_cap
            self._at_cap.add(peer_ip)
        if first_time:
            logger.warning("FastAGI peer %s holds %d connections (max_connections_per_peer): "
                           "its oldest ones without an AGI environment give way to new ones",
                           peer_ip, held)
        # Asterisk sends its environment at once: of a peer's connections, the oldest still
        # without one is the least likely to be a call. It gives its place to the new one.
        waiting = self._waiting.get(peer_ip, ())
        while waiting and waiting[0].done:
            waiting.popleft()
        if not waiting:
            return False  # every one is a session being served
        oldest = waiting.popleft()
        self._forget(oldest)
        oldest.conn.close()
        return True

    def _release(self, peer_ip) -> None:
        with self._connections_lock:
            held = self._connections[peer_ip] - 1
            if held:
                self._connections[peer_ip] = held
            else:
                del self._connections[peer_ip]
            if held < self.max_connections_per_peer:
                self._at_cap.discard(peer_ip)

    def _forget(self, connection: _Waiting) -> None:
        connection.done = True
        self._selector.unregister(connection.conn)

    def _read_environment(self, connection: _Waiting) -> None:
        """Read what a waiting connection sent; hand it over once its environment is in."""
        try:
            chunk = connection.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        connection.data += chunk
        if chunk and not _ENV_END.search(connection.data):
            if len(connection.data) <= MAX_ENV_BYTES:
                return
            logger.warning("%d bytes from %s without the end of an AGI environment block: "
                           "dropped", len(connection.data), connection.peer_ip)
        self._forget(connection)
        if chunk:
            self._admit(connection.conn, connection.peer_ip, bytes(connection.data),
                        connection.accepted)
        else:  # closed (a port scan) or reset before its environment was in
            connection.conn.close()
            self._release(connection.peer_ip)

    def _drop_overdue(self) -> float | None:
        """Drop the connections whose environment is not in by their deadline; the seconds
        until the next deadline (None: no connection waits)."""
        now, wake, dropped = time.monotonic(), None, {}
        for peer_ip, waiting in list(self._waiting.items()):
            while waiting and (waiting[0].done or waiting[0].deadline <= now):
                connection = waiting.popleft()
                if not connection.done:
                    self._forget(connection)
                    connection.conn.close()
                    self._release(peer_ip)
                    dropped[peer_ip] = dropped.get(peer_ip, 0) + 1
            if waiting:
                due = waiting[0].deadline - now
                wake = due if wake is None else min(wake, due)
            else:
                del self._waiting[peer_ip]
        for peer_ip, count in dropped.items():
            logger.warning("%d connection(s) from %s sent no whole AGI environment within "
                           "%.1f s: dropped", count, peer_ip, self.env_timeout)
        return wake

    def _admit(self, conn: socket.socket, peer_ip, head: bytes, accepted: float) -> None:
        """Start the session's thread; the accept loop never waits here. Past ``workers``
        sessions the call is answered ``overloaded()`` (a spool write) at once, never queued
        behind busy sessions: Asterisk would wait with no timeout. Past that too (a flood, not
        a PBX: hundreds of calls in the same instant) the connection is closed and the
        dialplan goes on without the CRM, as when the server is down."""
        if self._free_workers.acquire(blocking=False):
            slots, overloaded = self._free_workers, False
        elif self._free_overload.acquire(blocking=False):
            slots, overloaded = self._free_overload, True
        else:
            logger.warning("FastAGI saturated (every session slot taken): closing %s", peer_ip)
            conn.close()
            self._release(peer_ip)
            return
        self._count(+1)
        threading.Thread(target=self._session,
                         args=(conn, peer_ip, head, accepted, slots, overloaded),
                         name="fastagi-session", daemon=True).start()

    def _count(self, delta: int) -> None:
        with self._active_changed:
            self._active += delta
            self._active_changed.notify_all()

    def _session(self, conn: socket.socket, peer_ip, head: bytes, accepted: float,
                 slots: threading.Semaphore, overloaded: bool) -> None:
        try:
            self._serve(conn, peer_ip, head, accepted, overloaded)
        except Exception:  # noqa: BLE001 - a broken session is logged, never propagated
            logger.exception("FastAGI session from %s failed", peer_ip)
        finally:
            conn.close()
            slots.release()
            self._release(peer_ip)
            self._count(-1)

    # -- one session ----------------------------------------------------------------------------

    def _serve(self, conn: socket.socket, peer_ip, head: bytes, accepted: float,
               overloaded: bool) -> None:
        timeout = min(self.io_timeout, OVERLOAD_IO_TIMEOUT) if overloaded else self.io_timeout
        conn.settimeout(timeout)
        log = _SessionLog(logger, {"uniqueid": "-"})
        session = AgiSession(io.BufferedReader(_Prefixed(head, conn)), conn.makefile("wb"),
                             sock=conn, log=log)
        try:
            request = dataclasses.replace(read_request(session.reader), arrived=accepted)
            log.extra["uniqueid"] = request.uniqueid or "-"
            log.info(
                "%s from %s%s", request.script, peer_ip, " (server saturated)" if overloaded else ""
            )
            variables = self._ask(
                self.dispatcher.overloaded if overloaded else self.dispatcher.handle, request, log
            )
            self._answer(session, variables, log)
        except AgiHangup as error:
            log.info("Asterisk ended the session early: %s", error)
        except AgiProtocolError as error:
            log.warning("AGI protocol error from %s: %s", peer_ip, error)
        except TimeoutError:
            log.warning("no data from %s within %.1f s: session dropped", peer_ip, timeout)
        except OSError as error:
            log.warning("connection error with %s: %s", peer_ip, error)
        finally:
            session.close()

    def _answer(self, session: AgiSession, variables: dict, log) -> None:
        """Set the variables (those that can be sent), then half-close."""
        try:
            sent = session.set_variables(variables)
        except ValueError as error:
            log.error("dispatcher returned a variable that cannot be sent: %s", error)
            sent = session.set_variables(_sendable(variables, log))
        for names, response in sent:
            if not response.ok:
                log.warning("setting %s answered %s", names, response.lines[0])
        if session.hung_up:
            log.info("the caller hung up during the session; variables were set on the dead "
                     "channel")
        session.finish()

    def _ask(self, method, request: AgiRequest, log) -> dict[str, str]:
        """The dispatcher's ``handle`` or ``overloaded`` answer; nothing when it raises (the
        call goes on without the CRM)."""
        try:
            variables = method(request)
            return dict(variables) if variables else {}
        except Exception:  # noqa: BLE001 - the call goes on without the CRM
            log.exception("dispatcher %s() raised: no variables set", method.__name__)
            return {}


def _sendable(variables: dict, log) -> dict:
    """The variables that can be sent, the others left out and logged."""
    sendable = {}
    for name, value in variables.items():
        try:
            check_variable_name(name)
            escape("" if value is None else value)
        except ValueError as error:
            log.error("variable %s left out: %s", name, error)
            continue
        sendable[name] = value
    return sendable
