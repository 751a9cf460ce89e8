"""Calls from AMI events: which seller's phone rings, who answered, when the call is over.

This module owns the call state machine behind the screen-pop. It is pure: no I/O, no threads,
no clock of its own unless asked, no database. The AMI listener feeds it every event from its
single dispatcher thread (``tracker.feed(msg)``) and, after each (re)connect, the channel list
(``tracker.resync(client.core_show_channels())``); what comes back is a list of signals
(``Ringing``, ``Answered``, ``AnswerIgnored``, ``StoppedRinging``, ``CallEnded``) that the CRM
side turns into screen-pops, call records and deal events.

The rules come from Asterisk's own behaviour, recorded in the capture set: a call is grouped by
``Linkedid`` (uniqueids are opaque strings); a seller's phone rings when a ``DialBegin`` to one
of its channels is followed by ``Newstate`` 5 / ``DialState RINGING`` (in either order, as the
order between channels varies); ``DialEnd`` says ANSWER, CANCEL, NOANSWER or BUSY; the call is
over when its last channel hangs up (counting channels works for trunks, where the first
channel is the inbound leg, and for Local test calls, where it is not). Dial events without a
``Channel`` header belong to an Originate, not to a call leg, and are ignored. A channel's
``Cdr`` event (cdr_manager; it comes just before that channel's ``Hangup``) gives Asterisk's
own count of the talk, ``BillableSeconds``, which the call's end carries.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ..rules.phones import WITHHELD_WORDS

DEFAULT_PHONE_CONTEXTS = ("phones", "from-queue", "from-internal")
IDLE_TIMEOUT = 2 * 3600.0  # a call with no event for this long is dropped as "expired"
RINGING, UP = "5", "6"  # AMI ChannelState values

# "<endpoint>-0000001a" / "<exten>@<context>-0000001a;2", and masquerade tags like "<ZOMBIE>".
_CHANNEL_NAME = re.compile(r"^(?P<tech>[^/]+)/(?P<base>.*?)(?:-[0-9a-fA-F]{8})?(?:;[12])?(?:<.*>)?$")
_DEVICE_TECHS = frozenset({"PJSIP", "SIP", "IAX2"})


def caller_number(value: str | None) -> str:
    """A caller number as AMI shows it, with withheld and missing numbers as ``""``."""
    value = (value or "").strip()
    return "" if value.lower() in WITHHELD_WORDS else value


def caller_name(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value == "<unknown>" else value


class DeviceMap:
    """Which seller extension a channel name belongs to, or ``None`` (trunks, IVRs, ...).

    * ``PJSIP/<endpoint>-0000000a`` and ``SIP/<peer>-...``: with ``endpoints`` (a mapping from
      endpoint name to extension, from configuration) only mapped endpoints count, so the trunk
      endpoint is never taken for a phone. Without it, the endpoint name is the extension:
      good for a demo PBX whose endpoints are named after extensions, not for production.
    * ``Local/<exten>@<context>-0000000a;1|;2``: ``<exten>`` when ``<context>`` is one of
      ``phone_contexts`` (queue members are ``Local/<ext>@from-queue/n``).
    * ``extensions``, if given, is the set of seller extensions: anything else is not a device.

    Nothing is guessed from a number's length (the classic connector bug).
    """

    def __init__(
        self,
        endpoints: Mapping[str, str] | None = None,
        *,
        extensions: Collection[str] | None = None,
        phone_contexts: Iterable[str] = DEFAULT_PHONE_CONTEXTS,
    ):
        self.endpoints = dict(endpoints) if endpoints is not None else None
        self.extensions = frozenset(extensions) if extensions is not None else None
        self.phone_contexts = frozenset(phone_contexts)
        self._cache: dict[str, str | None] = {}

    def __call__(self, channel: str | None) -> str | None:
        if not channel:
            return None
        try:
            return self._cache[channel]
        except KeyError:
            pass
        extension = self._lookup(channel)
        if len(self._cache) > 4096:  # channel names never repeat: keep the cache small
            self._cache.clear()
        self._cache[channel] = extension
        return extension

    def _lookup(self, channel: str) -> str | None:
        match = _CHANNEL_NAME.match(channel)
        if not match:
            return None
        tech, base = match["tech"].upper(), match["base"]
        if tech in _DEVICE_TECHS:
            extension = base if self.endpoints is None else self.endpoints.get(base)
        elif tech == "LOCAL":
            exten, _, context = base.partition("@")
            extension = exten if context in self.phone_contexts else None
        else:
            return None
        if not extension or (self.extensions is not None and extension not in self.extensions):
            return None
        return extension


# --- signals ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ringing:
    """A seller's phone started ringing: pop the caller's card in that seller's browser."""

    linkedid: str
    extension: str
    caller_number: str  # "" when withheld or missing
    caller_name: str
    dest_uniqueid: str  # the ringing leg
    inbound_uniqueid: str = ""  # the leg that dialed: the AGI hooks' agi_uniqueid


@dataclass(frozen=True, slots=True)
class Answered:
    """The first phone to answer this call: that seller now owns it."""

    linkedid: str
    extension: str
    dest_uniqueid: str
    caller_number: str = ""
    caller_name: str = ""
    inbound_uniqueid: str = ""


@dataclass(frozen=True, slots=True)
class AnswerIgnored:
    """Another phone answered after the owner did (two pick-ups "at once"); the owner stays."""

    linkedid: str
    extension: str
    owner: str
    dest_uniqueid: str


@dataclass(frozen=True, slots=True)
class StoppedRinging:
    """A phone stopped ringing without answering: close its pop.

    ``status`` is the DialStatus (CANCEL for the losers of a ring group or when the caller gave
    up, NOANSWER, BUSY, CHANUNAVAIL...), ``HANGUP`` if the leg vanished without a DialEnd, and
    ``UNKNOWN`` when the call ended or disappeared while we were disconnected. ``rang`` is
    False when the phone never rang at all (BUSY): there was no ``Ringing`` before it.
    """

    linkedid: str
    extension: str
    status: str
    dest_uniqueid: str
    rang: bool = True


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call's last channel hung up (``reason="hangup"``), it was gone from the channel
    list at a resync (``"gone"``), or it had no event for two hours (``"expired"``)."""

    linkedid: str
    owner: str | None  # the extension that answered, if any
    caller_number: str
    caller_name: str
    dialed: tuple[str, ...]  # every seller extension dialed, in order
    reason: str = "hangup"
    inbound_uniqueid: str = ""
    # Seconds of conversation as the PBX's CDR bills them (None: no answered CDR seen).
    talk_seconds: int | None = None
    # How the last Dial to something other than a seller's phone ended (ANSWER, NOANSWER...):
    # the outcome of a seller's own call out, such as a click-to-call.
    dial_status: str = ""


Signal = Ringing | Answered | AnswerIgnored | StoppedRinging | CallEnded


# --- state --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Extension:
    """One seller extension within one call: its dialed legs still in progress."""

    legs: set[str] = field(default_factory=set)
    ringing: bool = False  # Ringing was emitted for the current ring episode
    answered: bool = False


@dataclass(slots=True)
class _Call:
    linkedid: str
    last_seen: float
    channels: dict[str, str | None] = field(default_factory=dict)  # open: uniqueid -> state
    hung_up: set[str] = field(default_factory=set)
    legs: dict[str, str] = field(default_factory=dict)  # dialed device leg -> extension
    extensions: dict[str, _Extension] = field(default_factory=dict)
    dialed: list[str] = field(default_factory=list)
    owner: str | None = None
    caller_number: str = ""
    caller_name: str = ""
    caller_known: bool = False  # set by the first dial to a phone, which comes from the caller
    inbound_uniqueid: str = ""
    talk_seconds: int | None = None
    dial_status: str = ""


class CallTracker:
    """Feed it AMI events; it answers with the signals the CRM acts on.

    ``device_extension`` maps a channel name to a seller extension: a ``DeviceMap`` (default:
    ``DeviceMap()``), a plain mapping of endpoint names to extensions, or any callable.
    Not thread-safe: feed and resync it from one thread (the AMI client's dispatcher thread
    runs both ``on_event`` and ``on_connect``).
    """

    def __init__(
        self,
        device_extension: Callable[[str], str | None] | Mapping[str, str] | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        ended_memory: int = 10_000,
    ):
        if device_extension is None:
            device_extension = DeviceMap()
        elif isinstance(device_extension, Mapping):
            device_extension = DeviceMap(device_extension)
        self._device = device_extension
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._calls: dict[str, _Call] = {}
        # Linkedids of finished calls, so a straggling event cannot reopen one (bounded).
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._ended_memory = ended_memory
        self._next_sweep = float("-inf")
        self._handlers = {
            "DialBegin": self._dial_begin,
            "DialState": self._dial_state,
            "DialEnd": self._dial_end,
            "Newstate": self._newstate,
            "Newchannel": self._caller_id_update,
            "NewCallerid": self._caller_id_update,
        }

    # --- public ---

    @property
    def open_calls(self) -> tuple[str, ...]:
        """Linkedids of the calls in progress."""
        return tuple(self._calls)

    def owner(self, linkedid: str) -> str | None:
        call = self._calls.get(linkedid)
        return call.owner if call else None

    def feed(self, msg, now: float | None = None) -> list[Signal]:
        """One AMI message in, the signals it causes out (usually none)."""
        event = msg.get("Event")
        # Responses, and list events answering some action (CoreShowChannel: see resync).
        if event is None or "ActionID" in msg:
            return []
        now = self._clock() if now is None else now
        signals: list[Signal] = []
        if now >= self._next_sweep:
            self._sweep(now, signals)
        if event == "Cdr":  # no Linkedid: found by its channel's UniqueID
            self._cdr(msg)
            return signals
        # No Linkedid: Cdr, Bridge*, OriginateResponse, and the Originate's own Dial* events.
        linkedid = msg.get("Linkedid")
        if linkedid is None or linkedid in self._ended:
            return signals
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = _Call(linkedid, now)
        call.last_seen = now
        uniqueid = msg.get("Uniqueid")
        if event == "Hangup":
            self._hangup(call, uniqueid, "HANGUP", signals)
            return signals
        if uniqueid and uniqueid not in call.hung_up:
            state = msg.get("ChannelState")
            if state is not None or uniqueid not in call.channels:
                call.channels[uniqueid] = state
        handler = self._handlers.get(event)
        if handler is not None:
            handler(call, msg, signals)
        return signals

    def resync(self, channels: Iterable, now: float | None = None) -> list[Signal]:
        """Rebuild the state from ``CoreShowChannel`` events after a (re)connect.

        Calls that are gone from the list ended while we were away (``CallEnded``, reason
        ``"gone"``); a known call keeps its state, loses the channels that hung up meanwhile and
        learns the new ones; a seller's phone found ringing emits ``Ringing`` unless it was
        already known to ring; a known ringing leg now ``Up`` was answered meanwhile. A call
        first seen here is tracked (so it ends correctly) but gets no ``Answered``: the
        channel list does not say which leg dialed which.
        """
        now = self._clock() if now is None else now
        snapshot: dict[str, list] = {}
        for row in channels:
            if row.get("Event") == "CoreShowChannel" and row.get("Linkedid") and row.get("Uniqueid"):
                snapshot.setdefault(row["Linkedid"], []).append(row)
        signals: list[Signal] = []
        for linkedid in [known for known in self._calls if known not in snapshot]:
            self._end(self._calls[linkedid], "gone", signals)
        for linkedid, rows in snapshot.items():
            self._ended.pop(linkedid, None)  # still up after all: track it again
            call = self._calls.get(linkedid)
            if call is None:
                call = self._calls[linkedid] = _Call(linkedid, now)
            call.last_seen = now
            present = {row["Uniqueid"]: row for row in rows}
            for uniqueid, row in present.items():
                call.hung_up.discard(uniqueid)
                call.channels[uniqueid] = row.get("ChannelState")
            for uniqueid in [gone for gone in call.channels if gone not in present]:
                self._hangup(call, uniqueid, "UNKNOWN", signals)
            if not call.caller_known:
                self._caller_from_snapshot(call, rows)
            for uniqueid, row in present.items():
                extension = self._device(row.get("Channel"))
                if extension is None:
                    continue
                state = row.get("ChannelState")
                if uniqueid in call.legs:  # dialed before we lost the connection
                    if state == RINGING:
                        self._rings(call, uniqueid, signals)
                    elif state == UP:
                        self._answer(call, uniqueid, signals)
                elif state == RINGING:  # started ringing while we were away
                    self._add_leg(call, uniqueid, extension)
                    self._rings(call, uniqueid, signals)
        return signals

    def expire(self, now: float | None = None) -> list[Signal]:
        """End the calls with no event for ``idle_timeout`` seconds (``feed`` does it too)."""
        signals: list[Signal] = []
        self._sweep(self._clock() if now is None else now, signals)
        return signals

    # --- event handlers ---

    def _dial_begin(self, call: _Call, msg, signals: list[Signal]) -> None:
        dest, dest_channel = msg.get("DestUniqueid"), msg.get("DestChannel")
        if not dest or not dest_channel or "Channel" not in msg:
            return
        if dest not in call.hung_up and dest not in call.channels:
            call.channels[dest] = msg.get("DestChannelState")
        extension = self._device(dest_channel)
        if extension is None:
            return
        if not call.caller_known:
            # The first dial to a phone comes from the inbound leg: its caller ID is the
            # caller's. Later hops (Local ;2 -> PJSIP, transfers) keep it.
            call.caller_known = True
            call.inbound_uniqueid = msg.get("Uniqueid") or ""
            call.caller_number = caller_number(msg.get("CallerIDNum")) or caller_number(
                msg.get("DestConnectedLineNum"))
            call.caller_name = caller_name(msg.get("CallerIDName")) or caller_name(
                msg.get("DestConnectedLineName"))
        self._add_leg(call, dest, extension)
        if msg.get("DestChannelState") == RINGING or call.channels.get(dest) == RINGING:
            self._rings(call, dest, signals)

    def _caller_id_update(self, call: _Call, msg, signals: list[Signal]) -> None:
        """Until a phone is dialed, the first channel's caller ID stands for the caller (a call
        that never reaches a phone still ends with its number)."""
        if not call.caller_known and msg.get("Uniqueid") == call.linkedid:
            number = caller_number(msg.get("CallerIDNum"))
            if number:
                call.caller_number, call.caller_name = number, caller_name(msg.get("CallerIDName"))

    def _newstate(self, call: _Call, msg, signals: list[Signal]) -> None:
        uniqueid = msg.get("Uniqueid")
        if msg.get("ChannelState") == RINGING and uniqueid in call.legs:
            self._rings(call, uniqueid, signals)

    def _dial_state(self, call: _Call, msg, signals: list[Signal]) -> None:
        dest = msg.get("DestUniqueid")
        if msg.get("DialStatus") == "RINGING" and dest in call.legs:
            self._rings(call, dest, signals)

    def _dial_end(self, call: _Call, msg, signals: list[Signal]) -> None:
        dest = msg.get("DestUniqueid")
        if not dest or "Channel" not in msg:
            return
        if dest not in call.legs:
            extension = self._device(msg.get("DestChannel"))
            if extension is None:
                call.dial_status = msg.get("DialStatus") or ""  # a trunk, a ring group...
                return
            self._add_leg(call, dest, extension)  # its DialBegin came before a resync
        if msg.get("DialStatus") == "ANSWER":
            self._answer(call, dest, signals)
        else:
            self._stops(call, dest, msg.get("DialStatus") or "UNKNOWN", signals)

    def _cdr(self, msg) -> None:
        """The talk of an answered call as Asterisk bills it: the CDR of the channel that
        dialed the seller who answered (the inbound leg, or a ring group's Local half); on a
        call no seller answered (a seller's own call out), the CDR of its first channel."""
        uniqueid, seconds = msg.get("UniqueID"), msg.get("BillableSeconds") or ""
        if (msg.get("Disposition") != "ANSWERED" or not seconds.isdigit()
                or not msg.get("DestinationChannel")):
            return
        call = next((call for call in self._calls.values() if uniqueid in call.channels), None)
        if call is None:
            return
        if call.owner is not None:
            if self._device(msg.get("DestinationChannel")) != call.owner:
                return  # a segment with someone else (an IVR, a ring group's Local leg)
        elif uniqueid != call.linkedid:
            return
        call.talk_seconds = int(seconds)

    def _hangup(self, call: _Call, uniqueid: str | None, status: str, signals: list[Signal]) -> None:
        if uniqueid:
            call.channels.pop(uniqueid, None)
            call.hung_up.add(uniqueid)
            if uniqueid in call.legs:  # a dialed leg that went away without a DialEnd
                self._stops(call, uniqueid, status, signals)
        if not call.channels:
            self._end(call, "hangup", signals)

    # --- transitions ---

    def _add_leg(self, call: _Call, uniqueid: str, extension: str) -> None:
        call.legs[uniqueid] = extension
        state = call.extensions.get(extension)
        if state is None:
            state = call.extensions[extension] = _Extension()
        elif not state.legs:  # a new ring episode for this extension (queue retry, transfer)
            state.ringing = state.answered = False
        state.legs.add(uniqueid)
        if extension not in call.dialed:
            call.dialed.append(extension)

    def _rings(self, call: _Call, uniqueid: str, signals: list[Signal]) -> None:
        extension = call.legs[uniqueid]
        state = call.extensions[extension]
        if state.ringing or state.answered or uniqueid not in state.legs:
            return  # one Ringing per extension per ring episode, whatever the number of hops
        state.ringing = True
        signals.append(Ringing(call.linkedid, extension, call.caller_number, call.caller_name,
                               uniqueid, call.inbound_uniqueid))

    def _answer(self, call: _Call, uniqueid: str, signals: list[Signal]) -> None:
        extension = call.legs.pop(uniqueid)
        state = call.extensions[extension]
        state.legs.discard(uniqueid)
        if state.answered:
            return  # the same phone seen through another hop (Local ;1 after PJSIP)
        state.answered, state.ringing = True, False
        if call.owner is None:
            call.owner = extension
            signals.append(Answered(call.linkedid, extension, uniqueid, call.caller_number,
                                    call.caller_name, call.inbound_uniqueid))
        elif call.owner != extension:
            signals.append(AnswerIgnored(call.linkedid, extension, call.owner, uniqueid))

    def _stops(self, call: _Call, uniqueid: str, status: str, signals: list[Signal]) -> None:
        extension = call.legs.pop(uniqueid)
        state = call.extensions[extension]
        state.legs.discard(uniqueid)
        if state.legs or state.answered:
            return  # another hop of this phone is still dialing, or it answered
        signals.append(StoppedRinging(call.linkedid, extension, status, uniqueid, state.ringing))
        state.ringing = False

    def _end(self, call: _Call, reason: str, signals: list[Signal]) -> None:
        for uniqueid in list(call.legs):
            self._stops(call, uniqueid, "UNKNOWN", signals)
        signals.append(CallEnded(call.linkedid, call.owner, call.caller_number, call.caller_name,
                                 tuple(call.dialed), reason, call.inbound_uniqueid,
                                 call.talk_seconds, call.dial_status))
        del self._calls[call.linkedid]
        self._ended[call.linkedid] = None
        while len(self._ended) > self._ended_memory:
            self._ended.popitem(last=False)

    def _sweep(self, now: float, signals: list[Signal]) -> None:
        self._next_sweep = now + min(60.0, self._idle_timeout / 4)
        deadline = now - self._idle_timeout
        for call in [call for call in self._calls.values() if call.last_seen < deadline]:
            self._end(call, "expired", signals)

    def _caller_from_snapshot(self, call: _Call, rows: list) -> None:
        """The caller of a call first seen in a channel list: the first non-phone channel's
        caller ID (the inbound leg), else what a ringing phone shows as connected line."""
        ordered = sorted(rows, key=lambda row: row["Uniqueid"] != call.linkedid)
        for row in ordered:
            number = caller_number(row.get("CallerIDNum"))
            if number and self._device(row.get("Channel")) is None:
                call.caller_number = number
                call.caller_name = caller_name(row.get("CallerIDName"))
                call.inbound_uniqueid = row["Uniqueid"]
                call.caller_known = True
                return
        for row in ordered:
            number = caller_number(row.get("ConnectedLineNum"))
            if number:
                call.caller_number = number
                call.caller_name = caller_name(row.get("ConnectedLineName"))
                call.caller_known = True
                return
