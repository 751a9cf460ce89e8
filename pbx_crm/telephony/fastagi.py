"""The FastAGI server: where Asterisk's ``AGI(agi://host:port/<hook>?...,args)`` lands.

Owns the listening socket, the peer allow-list and the shape of a session: accept, read the
environment block, ask the dispatcher for channel variables, ``SET VARIABLE`` each one,
half-close. It knows nothing of hooks or the database: the dispatcher
(``pbx_crm.telephony.dispatcher.HookDispatcher``, or any plain object in tests) does, and
keeps the time budget.

Each connection runs on a thread of its own. Asterisk sends its whole environment block the
moment it connects, so a connection counts as a session (one of ``workers``) only once its
block is in: an idle or trickling peer costs a thread for ``env_timeout`` at most, and one
peer holds at most ``max_connections_per_peer`` connections, its oldest without an
environment giving way to a new one. Asterisk waits for a FastAGI answer with no timeout, so
past ``workers`` sessions a call is answered ``dispatcher.overloaded()`` at once, never queued.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from .agi_protocol import (AgiHangup, AgiProtocolError, AgiSession, check_variable_name,
                           escape, read_request)

logger = logging.getLogger(__name__)

MIN_BACKLOG = 128
# An overload answer talks to Asterisk with this shorter timeout: it must not hold its slot.
OVERLOAD_IO_TIMEOUT = 1.0
# Asterisk writes its environment block (about 600 bytes) in the instant it connects; two
# seconds cover one lost segment (Linux retransmits after 1 s). Later is not Asterisk.
ENV_TIMEOUT = 2.0
MAX_ENV_BYTES = 65536
# 100 new calls a second whose every lookup runs out its 500 ms budget hold about 150
# sessions at once; 256 leaves room over that, a quarter of a service's 1024 descriptors.
MAX_CONNECTIONS_PER_PEER = 256
_ENV_END = re.compile(rb"(?:^|\n)\r?\n")  # the empty line that ends the block


class Dispatcher(Protocol):
    """What the server needs from the application."""

    def handle(self, request) -> Mapping[str, str]:
        """Channel variables to set, within the dispatcher's own budget."""

    def overloaded(self, request) -> Mapping[str, str]:
        """Called instead of ``handle`` when every worker is busy; returns at once."""


def relay_script_path() -> Path:
    """Where the installed package keeps ``pbx-crm.agi``, the process-AGI relay (found
    without importing ``pbx_crm.agi``, which would load the hooks and the database layer)."""
    spec = importlib.util.find_spec("pbx_crm.agi")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package pbx_crm.agi is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pbx-crm.agi"


def _ip(text: str):
    """An address as ``ipaddress`` reads it: IPv4-mapped IPv6 as IPv4, no scope suffix."""
    address = ipaddress.ip_address({"localhost": "127.0.0.1", "": "0.0.0.0"}.get(text, text)
                                   .split("%", 1)[0])
    return address.ipv4_mapped or address if address.version == 6 else address


class _Prefixed(io.RawIOBase):
    """A session's reader: the bytes read with the environment first, then the socket."""

    def __init__(self, head: bytes, conn: socket.socket):
        self._head, self._raw = memoryview(head), conn.makefile("rb", buffering=0)

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


class _SessionLog(logging.LoggerAdapter):
    """Prefixes every line of a session with the call's uniqueid (the key to grep a call by)."""

    def process(self, msg, kwargs):
        return f"[{self.extra['uniqueid']}] {msg}", kwargs


class FastAgiServer:
    """A FastAGI server with a thread per connection; see the module docstring.

    ``io_timeout`` bounds every read and write once the environment is in, so a silent peer
    cannot pin a session.
    """

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, *,
                 allowed_peers: frozenset[str] = frozenset(), workers: int = 16,
                 backlog: int = 128, io_timeout: float = 5.0, overload_sessions: int = 256,
                 env_timeout: float = ENV_TIMEOUT,
                 max_connections_per_peer: int = MAX_CONNECTIONS_PER_PEER):
        host, port = address
        try:
            self._bind = _ip(host)
        except ValueError:
            raise ValueError(f"FastAGI bind address must be an IP address, not {host!r}") from None
        try:
            self.allowed_peers = tuple(ipaddress.ip_network(peer, strict=False)
                                       for peer in allowed_peers)
        except ValueError as error:
            raise ValueError(f"allowed_peers: {error}") from None
        if not self._bind.is_loopback and not self.allowed_peers:
            raise ValueError(
                f"FastAGI has no authentication: listening on {self._bind} (not loopback) needs a "
                "non-empty allowed_peers (the Asterisk hosts' IP addresses or networks)")
        if min(workers, overload_sessions, max_connections_per_peer) < 1:
            raise ValueError("workers, overload_sessions and max_connections_per_peer must be "
                             "at least 1")
        self.address = (str(self._bind), int(port))
        self.dispatcher = dispatcher
        self.workers = workers
        self.backlog = max(MIN_BACKLOG, backlog)
        self.io_timeout = io_timeout
        self.env_timeout = env_timeout
        self.max_connections_per_peer = max_connections_per_peer
        self._sessions = threading.BoundedSemaphore(workers)
        self._overload_sessions = threading.BoundedSemaphore(overload_sessions)
        # Each peer's open connections, oldest first, and which of them still send their
        # environment (those give way to a newer connection at the cap).
        self._peers: dict[object, list[socket.socket]] = {}
        self._waiting: set[socket.socket] = set()
        self._lock = threading.Condition()  # guards the above and ``_active``
        self._active = 0
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._loop_done = threading.Event()
        self._loop_done.set()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the server is not started")
        return self._listener.getsockname()[1]

    @property
    def active_sessions(self) -> int:
        """Connections open and not yet closed."""
        with self._lock:
            return self._active

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no connection is open; False if ``timeout`` ran out first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._active == 0, timeout=timeout)

    def start(self) -> int:
        """Bind and listen. Returns the bound port (for port 0)."""
        listener = socket.socket(socket.AF_INET6 if self._bind.version == 6 else socket.AF_INET)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(self.address)
            listener.listen(self.backlog)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        logger.info("FastAGI server listening on %s:%d (%d workers)", self.address[0],
                    self.port, self.workers)
        return self.port

    def serve_forever(self) -> None:
        """Accept connections until ``stop_accepting()``, each on a thread of its own."""
        if self._listener is None:
            self.start()
        self._loop_done.clear()
        try:
            while not self._stopping.is_set():
                try:
                    conn, peer = self._listener.accept()
                except OSError as error:  # the listener shut down, or out of descriptors
                    if not self._stopping.is_set():
                        logger.error("FastAGI accept failed: %s", error)
                        time.sleep(0.1)
                    continue
                self._admit(conn, peer[0])
        finally:
            self._listener.close()
            self._loop_done.set()

    def stop_accepting(self, timeout: float = 5.0) -> None:
        """Close the listening socket (new calls get "connection refused"); sessions go on."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
            except OSError:
                pass
        if not self._loop_done.wait(timeout):
            logger.warning("the FastAGI accept loop did not stop")
        elif self._listener is not None:
            self._listener.close()

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting; drop connections still without an environment; give sessions
        ``grace`` seconds to end (each is bounded by the dispatcher's budget and
        ``io_timeout``). One still running then is abandoned."""
        deadline = time.monotonic() + grace
        self.stop_accepting(grace)
        with self._lock:
            for conn in self._waiting:
                _wake(conn)
        if not self.wait_idle(max(0.0, deadline - time.monotonic())):
            logger.warning("FastAGI shutdown: %d session(s) still running after %.1f s",
                           self.active_sessions, grace)

    # -- one connection ---------------------------------------------------------------------

    def _admit(self, conn: socket.socket, peer: str) -> None:
        """Start the connection's thread if its peer is allowed and below its cap."""
        peer_ip = _ip(peer)
        if self.allowed_peers and not any(peer_ip in net for net in self.allowed_peers):
            logger.warning("FastAGI connection from %s refused: not in allowed_peers", peer_ip)
            conn.close()
            return
        with self._lock:
            held = self._peers.setdefault(peer_ip, [])
            if len(held) >= self.max_connections_per_peer:
                # Asterisk sends its environment at once: the oldest connection still
                # without one is the least likely to be a call. It gives way.
                oldest = next((c for c in held if c in self._waiting), None)
                if oldest is None:
                    logger.warning("FastAGI connection from %s refused: %d sessions from it "
                                   "already (max_connections_per_peer)", peer_ip, len(held))
                    conn.close()
                    return
                self._forget(peer_ip, oldest)
                _wake(oldest)
            held.append(conn)
            self._waiting.add(conn)
            self._active += 1
        threading.Thread(target=self._connection, args=(conn, peer_ip, time.monotonic()),
                         name="fastagi-session", daemon=True).start()

    def _forget(self, peer_ip, conn: socket.socket) -> None:
        held = self._peers.get(peer_ip, [])
        if conn in held:
            held.remove(conn)
            if not held:
                del self._peers[peer_ip]
        self._waiting.discard(conn)

    def _connection(self, conn: socket.socket, peer_ip, accepted: float) -> None:
        try:
            head = self._read_environment(conn, peer_ip, accepted + self.env_timeout)
            with self._lock:
                self._waiting.discard(conn)
            if head is None:
                return
            for slots, overloaded in ((self._sessions, False), (self._overload_sessions, True)):
                if slots.acquire(blocking=False):
                    try:
                        self._serve(conn, peer_ip, head, accepted, overloaded)
                    finally:
                        slots.release()
                    return
            logger.warning("FastAGI saturated (every session slot taken): closing %s", peer_ip)
        except Exception:  # noqa: BLE001 - a broken session is logged, never propagated
            logger.exception("FastAGI session from %s failed", peer_ip)
        finally:
            conn.close()
            with self._lock:
                self._forget(peer_ip, conn)
                self._active -= 1
                self._lock.notify_all()

    def _read_environment(self, conn: socket.socket, peer_ip, deadline: float) -> bytes | None:
        """The bytes up to the end of the environment block; None for a connection closed or
        given up before (a port scan, a trickle, something else than Asterisk)."""
        data = bytearray()
        while not _ENV_END.search(data):
            if len(data) > MAX_ENV_BYTES:
                logger.warning("%d bytes from %s without the end of an AGI environment "
                               "block: dropped", len(data), peer_ip)
                return None
            conn.settimeout(max(0.0, deadline - time.monotonic()))
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                logger.warning("a connection from %s sent no whole AGI environment within "
                               "%.1f s: dropped", peer_ip, self.env_timeout)
                return None
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return bytes(data)

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
            log.info("%s from %s%s", request.script, peer_ip,
                     " (server saturated)" if overloaded else "")
            ask = self.dispatcher.overloaded if overloaded else self.dispatcher.handle
            try:
                variables = dict(ask(request) or {})
            except Exception:  # noqa: BLE001 - the call goes on without the CRM
                log.exception("dispatcher %s() raised: no variables set", ask.__name__)
                variables = {}
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
        """Set the variables that can be sent (the others are logged), then half-close."""
        for name, value in list(variables.items()):
            try:
                check_variable_name(name)
                escape("" if value is None else value)
            except ValueError as error:
                log.error("dispatcher returned a variable that cannot be sent: %s", error)
                del variables[name]
        for names, response in session.set_variables(variables):
            if not response.ok:
                log.warning("setting %s answered %s", names, response.lines[0])
        if session.hung_up:
            log.info("the caller hung up during the session; variables were set on the dead "
                     "channel")
        session.finish()


def _wake(conn: socket.socket) -> None:
    """End a connection's reads at once (its thread closes it)."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
