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
``ScenarioBuilder`` writes PJSIP calls in the shapes the captures show: ``PJSIP/trunk-...``
inbound leg whose Uniqueid is the Linkedid, one ``PJSIP/<ext>-...`` leg per phone, ring groups,
busy phones, no answer, the caller giving up, two phones answering at once, queue members as
``Local/<ext>@from-queue-...;1`` legs. Nothing here needs Asterisk.
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

log = logging.getLogger(__name__)

BANNER = "Asterisk Call Manager/11.0.0"
# The emulator's own action (see the module's docstring); Asterisk has no such action.
SIMULATE_ACTION = "PbxCrmSimulate"
STATE_DESC = {"0": "Down", "4": "Ring", "5": "Ringing", "6": "Up", "7": "Busy"}
# The channel snapshot every channel event carries, in Asterisk 22's order.
SNAPSHOT_FIELDS = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                   "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
                   "Exten", "Priority", "Uniqueid", "Linkedid")
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


# ---------------------------------------------------------------------------------------------
# Synthesized PJSIP calls
# ---------------------------------------------------------------------------------------------


@dataclass
class _Channel:
    name: str
    uniqueid: str
    linkedid: str
    state: str
    context: str
    exten: str
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    cl_num: str = "<unknown>"
    cl_name: str = "<unknown>"
    priority: str = "1"

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        values = (self.name, self.state, STATE_DESC[self.state], self.cid_num, self.cid_name,
                  self.cl_num, self.cl_name, "en", "", self.context, self.exten, self.priority,
                  self.uniqueid, self.linkedid)
        return [(prefix + key, value) for key, value in zip(SNAPSHOT_FIELDS, values)]


@dataclass
class SyntheticCall:
    """A synthesized call, cut into phases: ``"ringing"`` (up to every phone ringing),
    ``"answer"`` (up to the bridge), ``"end"`` (the hangups); a call nobody answers has no
    ``"answer"`` phase. ``data`` is what to play now (every phase, or up to ``stop_after``),
    ``rest`` what comes after it."""

    linkedid: str
    phases: dict[str, bytes]
    stop_after: str | None = None
    legs: dict[str, str] = field(default_factory=dict)  # extension -> its phone leg's Uniqueid
    trunk: str = ""  # the inbound leg's channel name (its Uniqueid is the linkedid)
    channels: dict[str, str] = field(default_factory=dict)  # extension -> its phone leg's name

    def _split(self) -> int:
        names = list(self.phases)
        return names.index(self.stop_after) + 1 if self.stop_after in names else len(names)

    @property
    def data(self) -> bytes:
        return b"".join(list(self.phases.values())[:self._split()])

    @property
    def rest(self) -> bytes:
        return b"".join(list(self.phases.values())[self._split():])


class _Script:
    def __init__(self):
        self.parts: list[bytes] = []
        self.phases: dict[str, bytes] = {}

    def event(self, name: str, *groups: Iterable[tuple[str, object]],
              privilege: str = "call,all") -> None:
        pairs = [("Event", name), ("Privilege", privilege)]
        for group in groups:
            pairs.extend(group)
        self.parts.append(format_message(pairs))

    def channel_event(self, name: str, channel: _Channel, *extra: tuple[str, object]) -> None:
        self.event(name, channel.snapshot(), extra)

    def dial_event(self, name: str, caller: _Channel, dest: _Channel, *extra) -> None:
        self.event(name, caller.snapshot(), dest.snapshot("Dest"), extra)

    def end_phase(self, name: str) -> None:
        self.phases[name] = b"".join(self.parts)
        self.parts = []


class ScenarioBuilder:
    """Writes realistic AMI event sequences for inbound PJSIP calls.

    The shapes follow the recorded Asterisk 22 calls (see tests/fixtures/asterisk-captures):
    ``Newchannel``, ``DialBegin`` with the dialed leg as ``Dest*``, ``Newstate`` 5 and
    ``DialState RINGING``, ``DialEnd`` with ANSWER / CANCEL / NOANSWER / BUSY, bridge events,
    ``Hangup`` last. The dialed phone leg shows the DID as its caller number and the real
    caller as its connected line, as Dial sets it. Ids grow from one builder to the next call,
    from ``first_id`` (a player that must not reuse another run's uniqueids starts elsewhere).
    """

    def __init__(self, epoch: int = 1795900000, trunk: str = "trunk", *, first_id: int = 0):
        self.epoch = epoch
        self.trunk = trunk
        self._uniqueids = itertools.count(first_id)
        self._suffixes = itertools.count(1)

    def _uniqueid(self) -> str:
        return f"{self.epoch}.{next(self._uniqueids)}"

    def _suffix(self) -> str:
        return f"{next(self._suffixes):08x}"

    def new_inbound(self) -> tuple[str, str]:
        """(channel name, uniqueid) of a new inbound trunk leg, for ``ring_pjsip(inbound=...)``:
        Asterisk creates that leg, and runs the lookup on it, before anything is dialed."""
        return f"PJSIP/{self.trunk}-{self._suffix()}", self._uniqueid()

    def ring_pjsip(
        self,
        caller: str,
        did: str,
        extensions: Sequence[str],
        answer: str | None = None,
        *,
        caller_name: str = "",
        busy: Sequence[str] = (),
        also_answer: Sequence[str] = (),
        abandon: bool = False,
        queue: bool = False,
        stop_after: str | None = None,
        inbound: tuple[str, str] | None = None,
        tried_first: Sequence[str] = (),
    ) -> SyntheticCall:
        """An inbound call from ``caller`` to ``did`` ringing ``extensions`` together.

        ``answer``: the extension that picks up (None: nobody; the Dial times out with
        NOANSWER, or the caller gives up first with ``abandon=True``: CANCEL). ``busy``:
        extensions that answer BUSY at once and never ring. ``also_answer``: extensions whose
        ANSWER arrives right after the winner's (two pick-ups "at once"). ``queue``: members are
        reached through ``Local/<ext>@from-queue-...;1`` legs whose ``;2`` half dials the phone.
        ``stop_after="ringing"`` or ``"answer"`` leaves the call there (``data``); the events
        after it are in ``call.rest``, each phase in ``call.phases``. An empty ``caller`` is a
        call without caller ID (``<unknown>``).

        ``inbound``: the trunk leg's (channel name, uniqueid) from ``new_inbound()``.
        ``tried_first``: phones a Dial of their own rang before this one, unanswered (the
        dialplan's owner-first ring): they ring in a ``"first"`` phase, then end NOANSWER and
        hang up as the group's Dial begins.
        """
        if answer is not None and (answer not in extensions or answer in busy):
            raise ValueError(f"answer={answer!r} must be a dialed extension that is not busy")
        if stop_after not in (None, "ringing", "answer"):
            raise ValueError(f"stop_after={stop_after!r}: use 'ringing', 'answer' or None")
        script = _Script()
        trunk_name, linkedid = inbound or self.new_inbound()
        number = caller or "<unknown>"
        name = caller_name or "<unknown>"
        trunk = _Channel(trunk_name, linkedid, linkedid, "4", "from-pstn", did, cid_num=number,
                         cid_name=name)
        script.channel_event("Newchannel", trunk)
        if tried_first:
            self._ring_unanswered_first(script, trunk, did, tried_first, name, number)

        # Each extension: the leg the trunk dials (the phone itself, or a queue's Local ;1),
        # and in queue mode the hop from the Local ;2 half to the phone.
        hops: dict[str, list[tuple[_Channel, _Channel]]] = {}
        phones: dict[str, _Channel] = {}
        for ext in extensions:
            phone = _Channel(f"PJSIP/{ext}-{self._suffix()}", self._uniqueid(), linkedid, "0",
                             "from-internal", ext, cid_num=did, cid_name=name, cl_num=number,
                             cl_name=name)
            phones[ext] = phone
            if queue:
                suffix = self._suffix()
                one = _Channel(f"Local/{ext}@from-queue-{suffix};1", self._uniqueid(), linkedid,
                               "0", "from-queue", ext, cid_num=did, cid_name=name,
                               cl_num=number, cl_name=name)
                two = _Channel(f"Local/{ext}@from-queue-{suffix};2", self._uniqueid(), linkedid,
                               "4", "from-queue", ext, cid_num=number, cid_name=name,
                               cl_num=did, cl_name=name)
                script.channel_event("Newchannel", one)
                script.channel_event("Newchannel", two)
                hops[ext] = [(trunk, one), (two, phone)]
            else:
                hops[ext] = [(trunk, phone)]
        for ext in extensions:
            for caller_leg, dest in hops[ext]:
                if dest is phones[ext]:
                    script.channel_event("Newchannel", dest)
                script.dial_event("DialBegin", caller_leg, dest, ("DialString", ext))

        ringing = [ext for ext in extensions if ext not in busy]
        for ext in busy:
            phone = phones[ext]
            phone.state = "7"
            script.channel_event("Newstate", phone)
            for caller_leg, dest in reversed(hops[ext]):
                script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", "BUSY"))
            self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                         "17", "User busy")
        for ext in ringing:
            for caller_leg, dest in reversed(hops[ext]):
                dest.state = "5"
                script.channel_event("Newstate", dest)
                script.dial_event("DialState", caller_leg, dest, ("DialStatus", "RINGING"))
        script.end_phase("ringing")
        if not ringing:
            self._hangup(script, [trunk], "16", "Normal Clearing")
            script.end_phase("end")
            return self._finish(script, linkedid, phones, stop_after, trunk.name)

        if answer is not None:
            winners = [answer] + [ext for ext in also_answer if ext != answer and ext in ringing]
            for ext in winners:
                for caller_leg, dest in reversed(hops[ext]):
                    dest.state = "6"
                    script.channel_event("Newstate", dest)
                    script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", "ANSWER"))
            losers = [ext for ext in ringing if ext not in winners]
            for ext in losers:
                for caller_leg, dest in reversed(hops[ext]):
                    script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", "CANCEL"))
                self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                             "26", "Answered elsewhere")
            for ext in winners[1:]:  # the late pick-up is hung up by Asterisk
                self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                             "26", "Answered elsewhere")
            trunk.state = "6"
            script.channel_event("Newstate", trunk)
            bridge = f"{linkedid.replace('.', '')}-bridge"
            bridge_fields = [("BridgeUniqueid", bridge), ("BridgeType", "basic"),
                             ("BridgeTechnology", "simple_bridge")]
            script.event("BridgeCreate", bridge_fields, [("BridgeNumChannels", "0")])
            first_hop = hops[answer][0][1]
            script.event("BridgeEnter", bridge_fields, [("BridgeNumChannels", "1")],
                         first_hop.snapshot())
            script.event("BridgeEnter", bridge_fields, [("BridgeNumChannels", "2")],
                         trunk.snapshot())
            script.end_phase("answer")
            self._hangup(script, [dest for _, dest in reversed(hops[answer])]
                         + self._halves(hops[answer]) + [trunk], "16", "Normal Clearing")
        else:
            status = "CANCEL" if abandon else "NOANSWER"
            if abandon:
                script.channel_event("HangupRequest", trunk, ("Cause", "16"))
            for ext in ringing:
                for caller_leg, dest in reversed(hops[ext]):
                    script.dial_event("DialEnd", caller_leg, dest, ("DialStatus", status))
                self._hangup(script, [dest for _, dest in hops[ext]] + self._halves(hops[ext]),
                             "16" if abandon else "0", "Normal Clearing" if abandon else "Unknown")
            self._hangup(script, [trunk], "16", "Normal Clearing")
        script.event("Cdr", [
            ("AccountCode", ""), ("Source", caller), ("Destination", did),
            ("DestinationContext", "from-pstn"), ("CallerID", f'"{caller_name}" <{caller}>'),
            ("Channel", trunk.name), ("Disposition", "ANSWERED" if answer else "NO ANSWER"),
            ("UniqueID", linkedid)], privilege="cdr,all")
        script.end_phase("end")
        return self._finish(script, linkedid, phones, stop_after, trunk.name)

    def _ring_unanswered_first(self, script: _Script, trunk: _Channel, did: str,
                               extensions: Sequence[str], name: str, number: str) -> None:
        """A Dial of its own to ``extensions`` that rings (phase ``"first"``), then times out:
        its DialEnd NOANSWER and hangups open the next phase."""
        phones = [_Channel(f"PJSIP/{ext}-{self._suffix()}", self._uniqueid(), trunk.linkedid, "0",
                           "from-internal", ext, cid_num=did, cid_name=name, cl_num=number,
                           cl_name=name) for ext in extensions]
        for ext, phone in zip(extensions, phones):
            script.channel_event("Newchannel", phone)
            script.dial_event("DialBegin", trunk, phone, ("DialString", ext))
        for phone in phones:
            phone.state = "5"
            script.channel_event("Newstate", phone)
            script.dial_event("DialState", trunk, phone, ("DialStatus", "RINGING"))
        script.end_phase("first")
        for phone in phones:
            script.dial_event("DialEnd", trunk, phone, ("DialStatus", "NOANSWER"))
        self._hangup(script, phones, "0", "Unknown")

    @staticmethod
    def _halves(hops: list[tuple[_Channel, _Channel]]) -> list[_Channel]:
        """The Local ;2 halves (queue mode): they go with their ;1."""
        return [caller_leg for caller_leg, _ in hops[1:]]

    @staticmethod
    def _hangup(script: _Script, channels: list[_Channel], cause: str, text: str) -> None:
        for channel in channels:
            script.channel_event("Hangup", channel, ("Cause", cause), ("Cause-txt", text))

    @staticmethod
    def _finish(script: _Script, linkedid: str, phones: dict[str, _Channel],
                stop_after: str | None, trunk: str = "") -> SyntheticCall:
        return SyntheticCall(linkedid, script.phases, stop_after,
                             {ext: phone.uniqueid for ext, phone in phones.items()}, trunk,
                             {ext: phone.name for ext, phone in phones.items()})


def ring_pjsip(caller: str, did: str, extensions: Sequence[str], answer: str | None = None,
               **options) -> SyntheticCall:
    """One synthesized call from a fresh ``ScenarioBuilder`` (ids start at its epoch)."""
    return ScenarioBuilder().ring_pjsip(caller, did, extensions, answer, **options)
