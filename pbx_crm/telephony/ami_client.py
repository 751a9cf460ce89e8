"""The AMI client: one long-lived Asterisk Manager session for the CRM.

This module owns the connection to Asterisk's manager port: login with an event filter, actions
paired with their responses by ActionID, a Ping keepalive, reconnection with back-off, and the
hand-off of events to the CRM. The AMI listener process builds one ``AmiClient``, gives it an
``on_event`` callback (which feeds ``pbx_crm.telephony.call_tracker``) and an ``on_connect`` callback
(which resyncs the tracker with ``core_show_channels()``), and uses ``originate()`` for
click-to-call. It knows nothing of calls or the database.

Threads: a reader thread owns the socket (connects, logs in, reads, reconnects); a dispatcher
thread runs ``on_connect`` and ``on_event`` in stream order, so a slow callback never stops the
reading and both callbacks may share unlocked state; a keepalive thread sends ``Ping``. A
callback that raises is logged and dispatch goes on. pyst2's ``Manager`` does none of this
(arrival-order pairing, no timeout or reconnect, dispatch dies with the first exception).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Self

from pbx_crm.telephony.ami_protocol import (
    BANNER_PREFIX,
    AmiProtocolError,
    AmiReader,
    ConnectionClosed,
    Headers,
    Message,
    format_action,
)

log = logging.getLogger(__name__)

# Drops the "dialplan" class (VarSet, Newexten): most of the volume. "agent" is app_queue's
# own events (the queue, the caller's wait, a member who rang out).
DEFAULT_EVENTS = "call,user,cdr,agent"
ORIGINATE_ANSWERED = "4"  # OriginateResponse Reason when the channel answered
_CONNECTED = object()  # dispatcher marker: run on_connect here, in stream order
_STOP = object()
# A variable name as Originate takes it: NAME, or a function such as CONNECTEDLINE(num,i).
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\([A-Za-z0-9_,]*\))?$")
# Asterisk splits a Variable header like application arguments: a comma starts a new
# variable, quotes and backslashes are removed, parentheses group. Pass ids, not free text.
_VARIABLE_VALUE_REFUSED = frozenset(',"\\()')


class AmiError(Exception):
    """Base of the errors this client raises."""


class AmiNotConnected(AmiError):
    """No AMI session right now, or it was lost before the answer came."""


class AmiTimeout(AmiError, TimeoutError):
    """No response to an action within its timeout."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error`` (or not Success) to an action."""

    def __init__(self, text: str, response: Message | None = None):
        super().__init__(text)
        self.response = response


class AmiAuthError(AmiActionError):
    """The login was refused."""


@dataclass
class OriginateResult:
    """The answer to an asynchronous Originate.

    ``response`` is the immediate ``Response: Success`` ("Originate successfully queued");
    ``outcome`` is a ``Future`` resolved with the later ``OriginateResponse`` event (same
    ActionID): ``Response: Success`` / ``Reason: 4`` when the channel answered, ``Response:
    Failure`` / ``Reason: 0`` (or another code) when it did not. It fails with
    ``AmiNotConnected`` if the session drops first. Done-callbacks run on the reader thread:
    keep them short. Don't ``wait()`` inside ``on_event`` for longer than you can afford.
    """

    action_id: str
    response: Message
    outcome: Future

    def wait(self, timeout: float | None = None) -> Message:
        """The ``OriginateResponse`` event (raises ``TimeoutError`` after ``timeout``)."""
        return self.outcome.result(timeout)

    def answered(self, timeout: float | None = None) -> bool:
        event = self.wait(timeout)
        return event.get("Response") == "Success" and event.get("Reason") == ORIGINATE_ANSWERED


class _Pending:
    """An action waiting for its response (and, for list actions, the list's events)."""

    __slots__ = ("done", "error", "name", "response")

    def __init__(self, name: str):
        self.name = name
        self.done = threading.Event()
        self.response: Message | None = None
        self.error: AmiError | None = None


class AmiClient:
    """A self-healing AMI session. ``start()`` it, ``close()`` it (or use ``with``).

    ``on_event(msg)`` gets every event (a ``pbx_crm.telephony.ami_protocol.Message``) except the list
    events that answer our own actions; ``on_connect(client)`` runs after each successful
    login, before the events of that session: the place to resync from
    ``client.core_show_channels()``. Both run on the dispatcher thread.
    """

    def __init__(
        self,
        host: str,
        port: int = 5038,
        username: str = "",
        secret: str = "",
        *,
        events: str = DEFAULT_EVENTS,
        ping_interval: float = 20.0,
        ping_timeout: float = 5.0,
        on_event: Callable[[Message], object] | None = None,
        on_connect: Callable[[AmiClient], object] | None = None,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 30.0,
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
    ):
        self.host, self.port = host, int(port)
        self._username, self._secret, self._events_filter = username, secret, events
        self._ping_interval, self._ping_timeout = ping_interval, ping_timeout
        self._on_event, self._on_connect = on_event, on_connect
        self._reconnect_delay, self._reconnect_delay_max = reconnect_delay, reconnect_delay_max
        self._connect_timeout, self._action_timeout = connect_timeout, action_timeout

        self._id_prefix = f"pbx-crm-{os.getpid()}-{secrets.token_hex(3)}"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _sock, _pending, _originates
        self._send_lock = threading.Lock()  # one action's bytes at a time on the socket
        self._sock: socket.socket | None = None
        self._pending: dict[str, _Pending] = {}
        self._originates: dict[str, Future] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None

        self.banner: str | None = None
        self.connections = 0  # successful logins so far
        self.events_read = 0  # events handed to the dispatcher so far
        self.last_error: str | None = None

    # --- life cycle ---

    def start(self) -> AmiClient:
        if self._threads:
            raise RuntimeError("AmiClient.start() called twice")
        self._dispatcher = threading.Thread(target=self._dispatch, name="ami-dispatch", daemon=True)
        self._threads = [
            threading.Thread(target=self._run, name="ami-reader", daemon=True),
            self._dispatcher,
            threading.Thread(target=self._keepalive, name="ami-keepalive", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Log off (``Response: Goodbye``), stop the threads. Safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()  # from here on, a lost connection is not re-opened
        if self._connected.is_set():
            try:
                self.send_action("Logoff", timeout=min(timeout, 2.0))
            except AmiError as exc:
                log.debug("AMI logoff: %s", exc)
        with self._lock:
            sock = self._sock
        if sock is not None:
            _shutdown(sock)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    # --- actions ---

    def next_action_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def send_action(self, name: str, headers: Headers | None = None,
                    timeout: float | None = None) -> Message:
        """Send an action and return its response, paired by ActionID.

        For list actions (the response says ``EventList: start``) the list's events, up to the
        one with ``EventList: Complete``, are collected into ``response.events``. Raises
        ``AmiTimeout`` after ``timeout`` seconds, ``AmiNotConnected`` without a session or when
        it drops first, ``ValueError`` for a header value with CR/LF. A ``Response: Error`` is
        returned, not raised: check ``response["Response"]``.
        """
        return self._request(name, headers, self.next_action_id(), timeout)

    def ping(self, timeout: float | None = None) -> Message:
        return self.send_action("Ping", timeout=timeout)

    def core_show_channels(self, timeout: float | None = None) -> list[Message]:
        """The ``CoreShowChannel`` events of every channel up right now."""
        response = self.send_action("CoreShowChannels", timeout=timeout)
        if response.get("Response") != "Success":
            raise AmiActionError(f"CoreShowChannels refused: {response.get('Message')}", response)
        return [event for event in response.events if event.get("Event") == "CoreShowChannel"]

    def originate(
        self,
        channel: str,
        exten: str,
        context: str,
        priority: int | str = 1,
        caller_id: str | None = None,
        variables: Mapping[str, object] | None = None,
        timeout_ms: int = 30000,
        channel_id: str | None = None,
        *,
        response_timeout: float | None = None,
    ) -> OriginateResult:
        """Click-to-call: ring ``channel`` (the seller's phone), then send it to
        ``exten@context``. Returns once Asterisk has queued it (``Async: true``: a synchronous
        Originate would hold the AMI session until the phone answers); the outcome comes later
        in ``result.outcome``.

        ``caller_id`` (``"Name" <number>``) is what the seller's phone shows. AMI rewrites the
        number in it: spaces, dashes, parentheses and dots are stripped (``+62 812-3456-7890``
        becomes ``+6281234567890``, capture 08); set ``CALLERID(num)`` in ``variables`` to pass a
        number through unchanged. ``channel_id`` presets the new channel's Uniqueid, so the
        call can be matched to its events before any arrives. Variable values may not contain
        ``, " \\ ( )``: Asterisk would split or unquote them (pass ids, not free text).
        """
        headers: list[tuple[str, object]] = [
            ("Channel", channel), ("Exten", exten), ("Context", context), ("Priority", priority),
            ("Timeout", int(timeout_ms)), ("Async", "true"), ("CallerID", caller_id),
            ("ChannelId", channel_id),
        ]
        for name, value in (variables or {}).items():
            text = str(value)
            if not _VARIABLE_NAME.match(name):
                raise ValueError(f"{name!r} is not a channel variable name Originate accepts")
            if _VARIABLE_VALUE_REFUSED.intersection(text):
                raise ValueError(
                    f"variable {name}: the value contains one of , \" \\ ( ) which Asterisk "
                    "would split or unquote; pass an id and look the text up in the dialplan")
            headers.append(("Variable", f"{name}={text}"))
        action_id = self.next_action_id()
        outcome: Future = Future()
        with self._lock:
            self._originates[action_id] = outcome  # before sending: the event may come fast
        try:
            response = self._request("Originate", headers, action_id, response_timeout)
            if response.get("Response") != "Success":
                raise AmiActionError(
                    f"Originate {channel} -> {exten}@{context} refused: {response.get('Message')}",
                    response)
        except BaseException:
            with self._lock:
                self._originates.pop(action_id, None)
            raise
        return OriginateResult(action_id, response, outcome)

    def _request(self, name: str, headers: Headers | None, action_id: str,
                 timeout: float | None) -> Message:
        data = format_action(name, headers, action_id)  # ValueError before anything is sent
        timeout = self._action_timeout if timeout is None else timeout
        pending = _Pending(name)
        with self._lock:
            sock = self._sock if self._connected.is_set() else None
            if sock is None:
                raise AmiNotConnected(f"cannot send {name}: no AMI session with "
                                      f"{self.host}:{self.port}")
            self._pending[action_id] = pending
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as exc:
            self._forget(action_id)
            raise AmiNotConnected(f"cannot send {name} to {self.host}:{self.port}: {exc}") from exc
        if not pending.done.wait(timeout):
            self._forget(action_id)
            raise AmiTimeout(f"no response to AMI action {name} (ActionID {action_id}) from "
                             f"{self.host}:{self.port} within {timeout:g} s")
        if pending.error is not None:
            raise pending.error
        return pending.response

    def _forget(self, action_id: str) -> None:
        with self._lock:
            self._pending.pop(action_id, None)

    # --- reader thread: connect, log in, read, reconnect ---

    def _run(self) -> None:
        delay = self._reconnect_delay
        while not self._stopping.is_set():
            sock = None
            try:
                sock = socket.create_connection((self.host, self.port), self._connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self._lock:  # from here close() can interrupt the handshake
                    if self._stopping.is_set():
                        break
                    self._sock = sock
                reader = AmiReader.from_socket(sock)
                self.banner = reader.read_banner()
                if not self.banner.startswith(BANNER_PREFIX):
                    raise AmiProtocolError(f"not an AMI server: {self.banner[:80]!r}")
                self._login(sock, reader)
                sock.settimeout(None)  # idle is normal; the keepalive finds dead links
                with self._lock:
                    self._connected.set()
                self.connections += 1
                self.last_error = None
                delay = self._reconnect_delay
                log.info("AMI session with %s:%s open (%s)", self.host, self.port, self.banner)
                self._queue.put(_CONNECTED)
                while True:
                    self._route(reader.read_message())
            except ConnectionClosed:
                self.last_error = "connection closed by Asterisk"
            except (OSError, AmiError, AmiProtocolError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug must not end the session for good
                log.exception("AMI reader failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                if sock is not None:
                    self._teardown(sock)
            if self._stopping.is_set():
                break
            log.warning("AMI %s:%s: %s; reconnecting in %g s", self.host, self.port,
                        self.last_error, delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, self._reconnect_delay_max)
        self._queue.put(_STOP)

    def _login(self, sock: socket.socket, reader: AmiReader) -> None:
        action_id = self.next_action_id()
        sock.sendall(format_action("Login", [
            ("Username", self._username), ("Secret", self._secret),
            ("Events", self._events_filter)], action_id))
        while True:
            response = reader.read_message()
            if response.action_id == action_id and response.is_response:
                break
        if response.get("Response") != "Success":
            raise AmiAuthError(f"AMI login as {self._username!r} refused: "
                               f"{response.get('Message')}", response)

    def _route(self, msg: Message) -> None:
        action_id = msg.get("ActionID")
        if action_id is not None:
            with self._lock:
                pending = self._pending.get(action_id)
            if pending is not None:
                self._answer(action_id, pending, msg)
                return
            if msg.get("Event") == "OriginateResponse":
                with self._lock:
                    outcome = self._originates.pop(action_id, None)
                if outcome is not None and not outcome.done():
                    outcome.set_result(msg)
        if msg.is_event:
            self.events_read += 1
            self._queue.put(msg)
        else:
            log.debug("AMI message nobody waits for (late or foreign): %r", msg)

    def _answer(self, action_id: str, pending: _Pending, msg: Message) -> None:
        if pending.response is None:
            pending.response = msg
            if (msg.get("EventList") or "").lower() == "start":
                return  # a list follows, up to "EventList: Complete"
        elif (msg.get("EventList") or "").lower() != "complete":
            pending.response.events.append(msg)
            return
        with self._lock:
            self._pending.pop(action_id, None)
        pending.done.set()

    def _teardown(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
            self._connected.clear()
            pending, self._pending = self._pending, {}
            originates, self._originates = self._originates, {}
        _shutdown(sock)
        sock.close()
        for action in pending.values():
            action.error = AmiNotConnected(
                f"AMI session lost before the response to {action.name}")
            action.done.set()
        for outcome in originates.values():
            if not outcome.done():
                outcome.set_exception(AmiNotConnected(
                    "AMI session lost before the OriginateResponse event"))

    # --- dispatcher and keepalive threads ---

    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if item is _CONNECTED:
                    if self._on_connect is not None:
                        self._on_connect(self)
                elif self._on_event is not None:
                    self._on_event(item)
            except Exception:
                what = "on_connect" if item is _CONNECTED else f"on_event({item.get('Event')})"
                log.exception("AMI %s callback failed; dispatch goes on", what)

    def _keepalive(self) -> None:
        while not self._stopping.wait(self._ping_interval):
            with self._lock:
                sock = self._sock if self._connected.is_set() else None
            if sock is None:
                continue
            try:
                self.send_action("Ping", timeout=self._ping_timeout)
            except AmiTimeout:
                log.warning("AMI %s:%s did not answer Ping within %g s: dropping the session",
                            self.host, self.port, self._ping_timeout)
                with self._lock:
                    current = self._sock is sock
                if current:
                    _shutdown(sock)  # the reader sees EOF and reconnects
            except AmiError:
                pass  # the session dropped meanwhile; the reader is on it

    @property
    def queued_events(self) -> int:
        """Events read but not yet dispatched (a slow ``on_event`` makes this grow)."""
        return self._queue.qsize()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
