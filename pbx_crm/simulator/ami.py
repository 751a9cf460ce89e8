"""Asterisk's side of AMI on a loopback port, for the demo and the tests.

``FakeAmiServer`` speaks enough of the Asterisk 22 manager protocol for ``pbx_crm.telephony.ami_client``: the
banner, ``Login`` (``Events:`` filter by event class, ``FullyBooted``; a wrong secret gets
``Authentication failed`` and the connection closed), ``Ping``, ``CoreShowChannels`` (built
from the events it has sent), ``Originate`` (recorded; ``Async`` answers at once and sends an
``OriginateResponse`` with the same ActionID), ``Logoff``. Any other action gets ``Response:
Error``. Test hooks: hold an action's response back (``hold_next``), stop answering pings
(``answer_pings``), drop every client (``drop_clients``).

One action is the emulator's own, not Asterisk's: ``Action: PbxCrmSimulate`` with ``Data:`` the
base64 of an AMI event stream. A logged-in client sends it to make the server play those events
to its clients as if calls were happening on it: that is how ``pbx-crm simulate``, in another
process, rings the phones the demo's AMI listener follows. A real Asterisk answers it with
``Response: Error`` (``Invalid/unknown command``), which tells a client it is not talking to the
emulator.

Calls come in two ways: ``replay(raw)`` sends the events of a recorded capture byte for byte
(the recording session's banner, responses, list answers and login events are left out), and
``ScenarioBuilder`` (``pbx_crm.simulator.ami_calls``) writes PJSIP calls in the shapes the
captures show. Nothing here needs Asterisk.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

from pbx_crm.telephony.ami_protocol import (
    AmiProtocolError,
    AmiReader,
    ConnectionClosed,
    Message,
    format_message,
    parse_message,
    split_stream,
)

from .ami_calls import SNAPSHOT_FIELDS, ScenarioBuilder, SyntheticCall

log = logging.getLogger(__name__)

BANNER = "Asterisk Call Manager/11.0.0"
# The emulator's own action (see the module's docstring); Asterisk has no such action.
SIMULATE_ACTION = "PbxCrmSimulate"
_PRIVILEGE = re.compile(rb"(?:^|\n)Privilege: ([^\r\n]*)")
# Events of the recording session's own login: the fake server sends its own.
_LOGIN_EVENTS = (b"Event: FullyBooted\r", b"Event: SuccessfulAuth\r")
_ALL_EVENTS = None  # an event filter that lets everything through


def _event_classes(privilege: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in privilege.split(",")) - {"all"}


def _parse_filter(value: str | None) -> frozenset[str] | None:
    """The ``Events:`` header of Login: a class list, ``on`` (everything) or ``off``."""
    if value is None or value.strip().lower() in ("on", "yes", "true", "all"):
        return _ALL_EVENTS
    if value.strip().lower() in ("off", "no", "false"):
        return frozenset()
    return _event_classes(value)


def shrink_phone_number(number: str) -> str:
    """What AMI's Originate does to the number in ``CallerID:`` (ast_shrink_phone_number):
    spaces, dashes, parentheses and dots go (capture 08: +62 812-3456-7890 -> +6281234567890)."""
    return re.sub(r"[\s\-().]", "", number)


def _split_callerid(value: str) -> tuple[str, str]:
    """``"Budi" <+62 812>`` -> (name, number)."""
    match = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', value)
    if match:
        return match[1], match[2]
    return "", value.strip()


@dataclass
class Hold:
    """An action whose response the server keeps back until ``release()``."""

    action: str
    received: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    message: Message | None = None

    def release(self) -> None:
        self.gate.set()


class _Client:
    def __init__(self, sock: socket.socket, address):
        self.sock = sock
        self.address = address
        self.send_lock = threading.Lock()
        self.username: str | None = None
        self.events: frozenset[str] | None = frozenset()  # nothing before login
        self.closed = False

    def wants(self, privilege: str | None) -> bool:
        if not self.username or privilege is None:
            return False
        if self.events is _ALL_EVENTS:
            return True
        return bool(self.events & _event_classes(privilege))

    def send(self, data: bytes) -> bool:
        with self.send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def close(self) -> None:
        with self.send_lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class FakeAmiServer:
    """A loopback AMI server. ``start()``/``stop()`` or ``with FakeAmiServer() as server``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 users: dict[str, str] | None = None, *, banner: str = BANNER):
        self.host, self._requested_port = host, port
        self.users = dict(users) if users is not None else {"crm": "secret"}
        self.banner = banner
        self.answer_pings = True
        # "answered" (Reason 4), "failed" (Failure, Reason 0), or None: keep the
        # OriginateResponse until complete_originate().
        self.originate_outcome: str | None = "answered"
        self.actions: list[Message] = []  # every action received, in order
        self.originates: list[Message] = []
        self.logins = 0
        self.failed_logins = 0
        self.scenarios = ScenarioBuilder()
        self._channels: dict[str, dict[str, str]] = {}  # uniqueid -> latest snapshot
        self._started_at: dict[str, float] = {}
        self._clients: list[_Client] = []
        self._holds: list[Hold] = []
        self._held_originates: dict[str, tuple[_Client, Message]] = {}
        self._state = threading.Condition()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._running = False
        self._started = time.monotonic()
        self._originate_ids = itertools.count(1)

    # --- life cycle ---

    def start(self) -> FakeAmiServer:
        self._listener = socket.create_server((self.host, self._requested_port))
        self._running = True
        self._spawn(self._accept, "fake-ami-accept")
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def stop(self) -> None:
        self._running = False
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for hold in list(self._holds):
            hold.release()
        self.drop_clients()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)

    def _spawn(self, target: Callable, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # --- test hooks ---

    @property
    def clients(self) -> int:
        """Clients logged in right now."""
        with self._state:
            return sum(1 for client in self._clients if client.username)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` is true; re-checked on every login, action and disconnect."""
        with self._state:
            return self._state.wait_for(predicate, timeout)

    def hold_next(self, action: str) -> Hold:
        """Keep back the response to the next ``action`` until ``hold.release()``; the actions
        after it are answered at once (so responses go out of order)."""
        hold = Hold(action.lower())
        with self._state:
            self._holds.append(hold)
        return hold

    def drop_clients(self) -> None:
        """Close every client connection, as a restarting Asterisk would."""
        with self._state:
            clients, self._clients = self._clients, []
            self._state.notify_all()
        for client in clients:
            client.close()

    def complete_originate(self, action_id: str, answered: bool = True) -> None:
        """Send the OriginateResponse of a held Originate (``originate_outcome = None``)."""
        client, action = self._held_originates.pop(action_id)
        client.send(self._originate_response(action, answered))

    @property
    def channels(self) -> list[dict[str, str]]:
        """The channels up right now, as CoreShowChannels would list them."""
        with self._state:
            return [dict(snapshot) for snapshot in self._channels.values()]

    # --- sending events ---

    def replay(self, raw: bytes, *, track_channels: bool = True) -> int:
        """Send a recorded stream's events to the logged-in clients, each byte for byte.

        Left out: the banner, every response, list events answering the recording session's
        actions (no ``Privilege``), and its login's ``FullyBooted``/``SuccessfulAuth``. Each
        client gets the events its ``Events:`` filter lets through. With ``track_channels`` the
        channel table behind CoreShowChannels follows the events (a parse per event; the
        benchmark turns it off). Returns the number of events replayed.
        """
        _, blocks = split_stream(raw)
        events = []
        for block in blocks:
            if not block.startswith(b"Event: ") or block.startswith(_LOGIN_EVENTS):
                continue
            privilege = _PRIVILEGE.search(block)
            if privilege is None:
                continue
            events.append((privilege[1].decode(), block))
        if track_channels:
            for _, block in events:
                if b"Uniqueid: " in block:
                    self._track(parse_message(block))
        self._send_events(events)
        return len(events)

    def send_event(self, name: str, headers: Iterable[tuple[str, object]],
                   privilege: str = "call,all") -> None:
        """Send one event built from ``headers`` (after ``Event`` and ``Privilege``)."""
        data = format_message([("Event", name), ("Privilege", privilege), *headers])
        self.replay(data)

    def ring_pjsip(self, caller: str, did: str, extensions: Sequence[str],
                   answer: str | None = None, **options) -> SyntheticCall:
        """Play a PJSIP call (see ``ScenarioBuilder.ring_pjsip``); returns it, with the events
        not played yet in ``call.rest`` when ``stop_after`` was given."""
        call = self.scenarios.ring_pjsip(caller, did, extensions, answer, **options)
        self.replay(call.data)
        return call

    def hangup(self, linkedid: str, cause: str = "16") -> int:
        """Hang up every channel of a call still up (phones first): ``Hangup`` events."""
        with self._state:
            doomed = [dict(s) for s in self._channels.values() if s.get("Linkedid") == linkedid]
        doomed.sort(key=lambda snapshot: snapshot["Uniqueid"] == linkedid)
        data = b"".join(
            format_message([("Event", "Hangup"), ("Privilege", "call,all"),
                            *((key, snapshot.get(key, "")) for key in SNAPSHOT_FIELDS),
                            ("Cause", cause), ("Cause-txt", "Normal Clearing")])
            for snapshot in doomed)
        return self.replay(data)

    def _send_events(self, events: list[tuple[str, bytes]]) -> None:
        with self._state:
            clients = [client for client in self._clients if client.username]
        by_filter: dict[frozenset[str] | None, bytes] = {}
        for client in clients:
            data = by_filter.get(client.events)
            if data is None:
                data = by_filter[client.events] = b"".join(
                    block for privilege, block in events if client.wants(privilege))
            if data:
                client.send(data)

    def _track(self, event: Message) -> None:
        uniqueid, name = event.get("Uniqueid"), event.get("Event")
        if not uniqueid or not event.get("Linkedid") or not event.get("Channel"):
            return
        with self._state:
            if name == "Hangup":
                self._channels.pop(uniqueid, None)
                self._started_at.pop(uniqueid, None)
                return
            snapshot = self._channels.get(uniqueid)
            if snapshot is None:
                if name != "Newchannel":
                    return  # an event for a channel we never saw created: not ours to list
                snapshot = self._channels[uniqueid] = {}
                self._started_at[uniqueid] = time.monotonic()
            for key in SNAPSHOT_FIELDS:
                value = event.get(key)
                if value is not None:
                    snapshot[key] = value
            if name == "BridgeEnter":
                snapshot["BridgeId"] = event.get("BridgeUniqueid", "")
            elif name == "BridgeLeave":
                snapshot["BridgeId"] = ""

    # --- the connection side ---

    def _accept(self) -> None:
        while self._running:
            try:
                sock, address = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(sock, address)
            with self._state:
                self._clients.append(client)
            self._spawn(self._serve, f"fake-ami-client-{address[1]}", client)

    def _serve(self, client: _Client) -> None:
        reader = AmiReader.from_socket(client.sock)
        client.send(f"{self.banner}\r\n".encode())
        try:
            while self._running and not client.closed:
                action = reader.read_message()
                if not self._handle(client, action):
                    break
        except (ConnectionClosed, AmiProtocolError, OSError):
            pass
        finally:
            client.close()
            with self._state:
                if client in self._clients:
                    self._clients.remove(client)
                self._state.notify_all()

    def _handle(self, client: _Client, action: Message) -> bool:
        """Answer one action; False closes the connection."""
        name = (action.get("Action") or "").lower()
        with self._state:
            if name != SIMULATE_ACTION.lower():  # a demo sends thousands: not kept
                self.actions.append(action)
            hold = next((h for h in self._holds if h.action == name), None)
            if hold is not None:
                self._holds.remove(hold)
            self._state.notify_all()
        if hold is not None:
            hold.message = action
            hold.received.set()
            self._spawn(self._answer_when_released, f"fake-ami-hold-{name}", client, action, hold)
            return True
        return self._answer(client, action)

    def _answer_when_released(self, client: _Client, action: Message, hold: Hold) -> None:
        hold.gate.wait()
        if self._running and not client.closed:
            self._answer(client, action)

    def _answer(self, client: _Client, action: Message) -> bool:
        name = (action.get("Action") or "").lower()
        action_id = action.get("ActionID")
        if name == "login":
            return self._login(client, action)
        if name == "logoff":
            client.send(_response(action_id, "Goodbye", Message="Thanks for all the fish."))
            return False
        if not client.username:
            client.send(_response(action_id, "Error", Message="Authentication Required"))
            return True
        if name == "ping":
            if self.answer_pings:
                client.send(_response(action_id, "Success", Ping="Pong",
                                      Timestamp=f"{time.time():.6f}"))
        elif name == "coreshowchannels":
            client.send(self._core_show_channels(action_id))
        elif name == "originate":
            self._originate(client, action)
        elif name == SIMULATE_ACTION.lower():
            self._simulate(client, action)
        else:
            client.send(_response(action_id, "Error", Message="Invalid/unknown command"))
        return True

    def _login(self, client: _Client, action: Message) -> bool:
        username = action.get("Username") or ""
        action_id = action.get("ActionID")
        if username not in self.users or self.users[username] != action.get("Secret"):
            client.send(_response(action_id, "Error", Message="Authentication failed"))
            with self._state:
                self.failed_logins += 1
                self._state.notify_all()
            return False  # Asterisk closes the session after a failed login
        uptime = int(time.monotonic() - self._started)
        welcome = (_response(action_id, "Success", Message="Authentication accepted")
                   + format_message([("Event", "FullyBooted"), ("Privilege", "system,all"),
                                     ("Uptime", uptime), ("LastReload", uptime),
                                     ("Status", "Fully Booted")]))
        # Holding the send lock: an event played meanwhile waits for the welcome to go out, and
        # whoever saw the login succeed finds the client already listed as logged in.
        with client.send_lock:
            with self._state:
                client.events = _parse_filter(action.get("Events"))
                client.username = username
                self.logins += 1
                self._state.notify_all()
            try:
                client.sock.sendall(welcome)
            except OSError:
                return False
        return True

    def _simulate(self, client: _Client, action: Message) -> None:
        """``PbxCrmSimulate``: play the events in ``Data`` (base64) to the logged-in clients,
        then answer with how many were played (the events go out before the answer)."""
        action_id = action.get("ActionID")
        try:
            raw = base64.b64decode(action.get("Data") or "", validate=True)
        except (binascii.Error, ValueError):
            client.send(_response(action_id, "Error", Message="Data is not base64"))
            return
        count = self.replay(raw)
        client.send(_response(action_id, "Success", Message="Events played", Events=count))

    def _core_show_channels(self, action_id: str | None) -> bytes:
        now = time.monotonic()
        with self._state:
            rows = [(dict(s), now - self._started_at.get(uid, now))
                    for uid, s in self._channels.items()]
        parts = [format_message([("Response", "Success"), ("ActionID", action_id),
                                 ("EventList", "start"), ("Message", "Channels will follow")])]
        for snapshot, age in rows:
            seconds = int(age)
            parts.append(format_message([
                ("Event", "CoreShowChannel"), ("ActionID", action_id),
                *((key, snapshot.get(key, "")) for key in SNAPSHOT_FIELDS),
                ("Application", "Dial" if snapshot.get("ChannelState") != "6" else "AppDial"),
                ("ApplicationData", ""),
                ("Duration", f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"),
                ("BridgeId", snapshot.get("BridgeId", "")),
            ]))
        parts.append(format_message([("Event", "CoreShowChannelsComplete"), ("ActionID", action_id),
                                     ("EventList", "Complete"), ("ListItems", len(rows))]))
        return b"".join(parts)

    def _originate(self, client: _Client, action: Message) -> None:
        action_id = action.get("ActionID")
        with self._state:
            self.originates.append(action)
            self._state.notify_all()
        if not action.get("Channel") or not (action.get("Exten") or action.get("Application")):
            client.send(_response(action_id, "Error", Message="Channel and Exten required"))
            return
        held = self.originate_outcome is None
        if held:  # listed before the answer goes out: the test may complete it right after
            self._held_originates[action_id] = (client, action)
        client.send(_response(action_id, "Success", Message="Originate successfully queued"))
        if not held:
            client.send(self._originate_response(action, self.originate_outcome == "answered"))

    def _originate_response(self, action: Message, answered: bool) -> bytes:
        name, number = _split_callerid(action.get("CallerID") or "")
        channel = action.get("Channel") or ""
        uniqueid = "<unknown>"
        if answered:
            channel = f"{channel}-{next(self._originate_ids):08x}"
            uniqueid = action.get("ChannelId") or f"{int(time.time())}.{next(self._originate_ids)}"
        return format_message([
            ("Event", "OriginateResponse"), ("Privilege", "call,all"),
            ("ActionID", action.get("ActionID")),
            ("Response", "Success" if answered else "Failure"),
            ("Channel", channel), ("Context", action.get("Context", "")),
            ("Exten", action.get("Exten", "")), ("Reason", "4" if answered else "0"),
            ("Uniqueid", uniqueid),
            ("CallerIDNum", shrink_phone_number(number) or "<unknown>"),
            ("CallerIDName", name or "<unknown>"),
        ])


def _response(action_id: str | None, response: str, **headers: object) -> bytes:
    return format_message([("Response", response), ("ActionID", action_id), *headers.items()])
