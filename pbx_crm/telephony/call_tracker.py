"""Calls from AMI events: which seller's phone rings, who answered, who has the caller, when
the call is over.

This module owns the call state machine behind the screen-pop. It is pure: no I/O, no threads,
no clock of its own unless asked, no database. The AMI listener feeds it every event from its
single dispatcher thread (``tracker.feed(msg)``) and, after each (re)connect, the channel list
(``tracker.resync(client.core_show_channels())``); what comes back is a list of signals
(``Ringing``, ``Answered``, ``AnswerIgnored``, ``StoppedRinging``, ``Transferred``,
``CallEnded``, in ``call_signals``) that the CRM side turns into screen-pops, call records and
deal events.

The rules come from Asterisk's own behaviour, recorded in the capture set: a call is grouped by
``Linkedid`` (uniqueids are opaque strings; transferred legs keep the call's Linkedid); a
seller's phone rings when a ``DialBegin`` to one of its channels is followed by ``Newstate`` 5 /
``DialState RINGING`` (in either order, as the order between channels varies); ``DialEnd``
says ANSWER, CANCEL, NOANSWER or BUSY, once per leg that counts (app_queue repeats it: the first
one per ``DestUniqueid`` wins); the call is over when its last channel hangs up (counting
channels works for trunks, where the first channel is the inbound leg, and for Local test
calls, where it is not). Dial events without a ``Channel`` header belong to an Originate, not to
a call leg: they pop nothing, but a seller's own phone rung that way (click-to-call) is one of
the call's legs. A channel's ``Cdr`` event (cdr_manager) gives Asterisk's own count of the talk,
``BillableSeconds``, per segment of the inbound leg; it may come after the call's last
``Hangup``, so the queue's ``AgentComplete`` count and the tracker's clock stand in for it.

Queues (app_queue): ``QueueCallerJoin`` names the queue; the member whose leg connected owns the
call (``DialEnd ANSWER``, ``AgentConnect``), never the last one rung; ``AgentConnect`` and
``AgentRingNoAnswer`` give ring times (the latter in milliseconds), ``QueueCallerAbandon`` the
caller's wait when nobody answered. Transfers: after ``BlindTransfer`` the next seller to answer
the caller takes the call; ``AttendedTransfer`` names a helper ``Local`` channel as the target,
and the seller is the one that channel's other half dialed and who answered it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from .call_state import CallState, ExtensionState, LegRecord, local_base, seconds_of
from .call_state import talk_by as call_talk_by
from .call_signals import (
    DEFAULT_PHONE_CONTEXTS,
    Answered,
    AnswerIgnored,
    CallEnded,
    DeviceMap,
    Leg,
    Ringing,
    Signal,
    StoppedRinging,
    Transferred,
    caller_name,
    caller_number,
    channel_device,
)

__all__ = [
    "DEFAULT_PHONE_CONTEXTS", "IDLE_TIMEOUT", "Answered", "AnswerIgnored", "CallEnded",
    "CallTracker", "DeviceMap", "Leg", "Ringing", "Signal", "StoppedRinging", "Transferred",
    "caller_name", "caller_number",
]

IDLE_TIMEOUT = 2 * 3600.0  # a call with no event for this long is dropped as "expired"
RINGING, UP = "5", "6"  # AMI ChannelState values
OUTCOMES = {"ANSWER": "answered", "CANCEL": "cancelled", "NOANSWER": "noanswer", "BUSY": "busy"}


class CallTracker:
    """Feed it AMI events; it answers with the signals the CRM acts on.

    ``device_extension`` maps a channel name to a seller extension: a ``DeviceMap`` (default:
    ``DeviceMap()``), a plain mapping of endpoint names to extensions, or any callable (the
    device name is then read from the channel name itself). ``now`` passed to ``feed`` is the
    clock that times rings and talk when the PBX gives no count of its own.
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
        self._device_name = getattr(device_extension, "device", None) or (
            lambda channel: channel_device(channel) if self._device(channel) else None)
        self._seller = getattr(device_extension, "seller", None) or (
            lambda exten: self._device(f"PJSIP/{exten}") if exten else None)
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._calls: dict[str, CallState] = {}
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
            "QueueCallerJoin": self._queue_join,
            "QueueCallerAbandon": self._queue_abandon,
            "AgentConnect": self._agent_connect,
            "AgentRingNoAnswer": self._agent_ring_no_answer,
            "AgentComplete": self._agent_complete,
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
        if event in ("BlindTransfer", "AttendedTransfer"):  # Linkedids of each party instead
            self._transfer_event(msg, now, signals)
            return signals
        if event in ("DialBegin", "DialEnd") and "Channel" not in msg:
            self._originate_dial(msg, now)
            return signals
        # No Linkedid: Cdr, Bridge*, OriginateResponse, and the Originate's own DialState.
        linkedid = msg.get("Linkedid")
        if linkedid is None or linkedid in self._ended:
            return signals
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = CallState(linkedid, now)
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
            self._calls[linkedid].last_seen = now
            self._end(self._calls[linkedid], "gone", signals)
        for linkedid, rows in snapshot.items():
            self._ended.pop(linkedid, None)  # still up after all: track it again
            call = self._calls.get(linkedid)
            if call is None:
                call = self._calls[linkedid] = CallState(linkedid, now)
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
                elif state == RINGING and uniqueid not in call.records:  # rang while we were away
                    self._add_leg(call, uniqueid, extension, row.get("Channel"))
                    self._rings(call, uniqueid, signals)
        return signals

    def expire(self, now: float | None = None) -> list[Signal]:
        """End the calls with no event for ``idle_timeout`` seconds (``feed`` does it too)."""
        signals: list[Signal] = []
        self._sweep(self._clock() if now is None else now, signals)
        return signals

    # --- event handlers ---

    def _dial_begin(self, call: CallState, msg, signals: list[Signal]) -> None:
        dest, dest_channel = msg.get("DestUniqueid"), msg.get("DestChannel")
        if not dest or not dest_channel:
            return
        if dest not in call.hung_up and dest not in call.channels:
            call.channels[dest] = msg.get("DestChannelState")
        extension = self._device(dest_channel)
        if extension is None or dest in call.records:
            return
        if not call.caller_known:
            # The first dial to a phone comes from the inbound leg: its caller ID is the
            # caller's. Later hops (Local ;2 -> PJSIP, transfers) keep it.
            self._caller_is(call, msg)
        self._add_leg(call, dest, extension, dest_channel)
        if msg.get("DestChannelState") == RINGING or call.channels.get(dest) == RINGING:
            self._rings(call, dest, signals)

    def _caller_is(self, call: CallState, msg) -> None:
        """The channel of ``msg`` is the caller's (the inbound leg)."""
        call.caller_known = True
        call.inbound_uniqueid = msg.get("Uniqueid") or ""
        call.caller_number = caller_number(msg.get("CallerIDNum")) or caller_number(
            msg.get("DestConnectedLineNum"))
        call.caller_name = caller_name(msg.get("CallerIDName")) or caller_name(
            msg.get("DestConnectedLineName"))

    def _caller_id_update(self, call: CallState, msg, signals: list[Signal]) -> None:
        """Until a phone is dialed, the first channel's caller ID stands for the caller (a call
        that never reaches a phone still ends with its number)."""
        if not call.caller_known and msg.get("Uniqueid") == call.linkedid:
            number = caller_number(msg.get("CallerIDNum"))
            if number:
                call.caller_number, call.caller_name = number, caller_name(msg.get("CallerIDName"))

    def _newstate(self, call: CallState, msg, signals: list[Signal]) -> None:
        uniqueid = msg.get("Uniqueid")
        if msg.get("ChannelState") == RINGING and uniqueid in call.legs:
            self._rings(call, uniqueid, signals)

    def _dial_state(self, call: CallState, msg, signals: list[Signal]) -> None:
        dest = msg.get("DestUniqueid")
        if msg.get("DialStatus") == "RINGING" and dest in call.legs:
            self._rings(call, dest, signals)

    def _dial_end(self, call: CallState, msg, signals: list[Signal]) -> None:
        dest = msg.get("DestUniqueid")
        if not dest:
            return
        if dest not in call.legs:
            if dest in call.records:
                return  # this leg already ended: app_queue's second DialEnd, the first one wins
            extension = self._device(msg.get("DestChannel"))
            if extension is None:
                call.dial_status = msg.get("DialStatus") or ""  # a trunk, a ring group...
                return
            self._add_leg(call, dest, extension, msg.get("DestChannel"))  # dialed before a resync
        if msg.get("DialStatus") == "ANSWER":
            call.answered_via[local_base(msg.get("Channel"))] = (
                call.legs[dest], dest, call.devices.get(dest, ""))
            self._answer(call, dest, signals)
        else:
            self._stops(call, dest, msg.get("DialStatus") or "UNKNOWN", signals)

    def _originate_dial(self, msg, now: float) -> None:
        """An Originate ringing a seller's own phone (click-to-call): no pop, but a leg."""
        call = self._calls.get(msg.get("DestLinkedid") or "")
        dest = msg.get("DestUniqueid")
        if call is None or not dest:
            return
        call.last_seen = now
        record = call.records.get(dest)
        if msg.get("Event") == "DialBegin":
            extension = self._device(msg.get("DestChannel"))
            if extension is not None and record is None:
                record = LegRecord(extension, self._device_name(msg.get("DestChannel")) or "",
                                    rang_at=now)
                call.records[dest] = record
                call.rung.append(record)
        elif record is not None and not record.outcome:
            record.outcome = OUTCOMES.get(msg.get("DialStatus") or "", "unknown")
            record.ended_at = now

    def _cdr(self, msg) -> None:
        """A segment of talk as Asterisk bills it: which channel dialed whom, for how long."""
        uniqueid, seconds = msg.get("UniqueID"), seconds_of(msg.get("BillableSeconds"))
        peer = msg.get("DestinationChannel")
        if msg.get("Disposition") != "ANSWERED" or seconds is None or not peer:
            return
        call = next((call for call in self._calls.values() if uniqueid in call.channels), None)
        if call is None:
            return
        call.cdrs.append((uniqueid, peer, seconds))
        if uniqueid == call.linkedid:
            call.own_talk = seconds

    def _hangup(self, call: CallState, uniqueid: str | None, status: str,
                signals: list[Signal]) -> None:
        if uniqueid:
            call.channels.pop(uniqueid, None)
            call.hung_up.add(uniqueid)
            if uniqueid in call.legs:  # a dialed leg that went away without a DialEnd
                self._stops(call, uniqueid, status, signals)
        if not call.channels:
            self._end(call, "hangup", signals)

    # --- queues (app_queue) ---

    def _queue_join(self, call: CallState, msg, signals: list[Signal]) -> None:
        call.queue = msg.get("Queue") or call.queue
        if not call.caller_known:  # the caller's own channel waits in the queue
            self._caller_is(call, msg)

    def _queue_abandon(self, call: CallState, msg, signals: list[Signal]) -> None:
        call.abandoned = call.owner is None
        call.hold_seconds = seconds_of(msg.get("HoldTime"))

    def _agent_connect(self, call: CallState, msg, signals: list[Signal]) -> None:
        """The member whose leg the queue connected: normally its DialEnd ANSWER came first."""
        dest = msg.get("DestUniqueid") or ""
        call.hold_seconds = seconds_of(msg.get("HoldTime"))
        if dest in call.legs:
            self._answer(call, dest, signals)
        record = call.records.get(dest)
        if record is not None and seconds_of(msg.get("RingTime")) is not None:
            record.queue_ring = float(seconds_of(msg.get("RingTime")))

    def _agent_ring_no_answer(self, call: CallState, msg, signals: list[Signal]) -> None:
        record = call.records.get(msg.get("DestUniqueid") or "")
        milliseconds = seconds_of(msg.get("RingTime"))  # this one counts in milliseconds
        if record is not None and milliseconds is not None:
            record.queue_ring = milliseconds / 1000

    def _agent_complete(self, call: CallState, msg, signals: list[Signal]) -> None:
        record = call.records.get(msg.get("DestUniqueid") or "")
        talk = seconds_of(msg.get("TalkTime"))
        if record is not None and talk is not None:
            call.queue_talk[record.extension] = call.queue_talk.get(record.extension, 0) + talk
        if call.hold_seconds is None:
            call.hold_seconds = seconds_of(msg.get("HoldTime"))

    # --- transfers ---

    def _transfer_event(self, msg, now: float, signals: list[Signal]) -> None:
        linkedid = (msg.get("TransfereeLinkedid") or msg.get("TransfererLinkedid")
                    or msg.get("OrigTransfererLinkedid") or "")
        call = self._calls.get(linkedid)
        if call is None or msg.get("Result") != "Success":
            return
        call.last_seen = now
        if msg.get("Event") == "BlindTransfer":
            call.blind_pending = True
            call.blind_from = self._device(msg.get("TransfererChannel")) or call.owner
            self._stop_talk(call, now)  # the transferer is off the call
            return
        transferer = (self._device(msg.get("OrigTransfererChannel"))
                      or self._device(msg.get("SecondTransfererChannel")) or call.owner)
        target = msg.get("TransferTargetChannel") or ""
        found = call.answered_via.get(local_base(target))
        if found is None:
            leg = msg.get("TransferTargetUniqueid") or ""
            extension = self._device(target)
            device = self._device_name(target) or "" if extension else ""
            if extension is None:
                extension = self._seller(msg.get("TransferTargetExten"))
                device = msg.get("TransferTargetExten") or "" if extension else ""
            if extension is None:
                return  # the caller went to something that is not a seller's phone
            found = (extension, leg, device)
        call.helpers[target] = found[0]
        self._transfer(call, transferer, *found, "attended", signals)

    def _transfer(self, call: CallState, transferer: str | None, extension: str, leg: str,
                  device: str, kind: str, signals: list[Signal]) -> None:
        if extension == call.owner:
            return
        call.owner = extension
        self._start_talk(call, extension)
        signals.append(Transferred(call.linkedid, transferer, extension, kind, leg,
                                   call.inbound_uniqueid, call.caller_number, call.caller_name,
                                   device))

    # --- transitions ---

    def _add_leg(self, call: CallState, uniqueid: str, extension: str, channel: str | None) -> None:
        call.legs[uniqueid] = extension
        call.devices[uniqueid] = self._device_name(channel) or ""
        state = call.extensions.get(extension)
        if state is None or not state.legs:  # a new ring episode (queue retry, transfer)
            record = LegRecord(extension)
            call.rung.append(record)
            if state is None:
                state = call.extensions[extension] = ExtensionState(record)
            else:
                state.record, state.ringing, state.answered = record, False, False
        state.legs.add(uniqueid)
        call.records[uniqueid] = state.record
        if extension not in call.dialed:
            call.dialed.append(extension)

    def _rings(self, call: CallState, uniqueid: str, signals: list[Signal]) -> None:
        extension = call.legs[uniqueid]
        state = call.extensions[extension]
        if state.ringing or state.answered or uniqueid not in state.legs:
            return  # one Ringing per extension per ring episode, whatever the number of hops
        state.ringing = True
        device = call.devices.get(uniqueid, "")
        record = state.record
        record.device = record.device or device
        if record.rang_at is None:
            record.rang_at = call.last_seen
        signals.append(Ringing(call.linkedid, extension, call.caller_number, call.caller_name,
                               uniqueid, call.inbound_uniqueid, device, call.queue))

    def _answer(self, call: CallState, uniqueid: str, signals: list[Signal]) -> None:
        extension = call.legs.pop(uniqueid)
        state = call.extensions[extension]
        state.legs.discard(uniqueid)
        if state.answered:
            return  # the same phone seen through another hop (Local ;1 after PJSIP)
        state.answered, state.ringing = True, False
        device = call.devices.get(uniqueid, "")
        record = state.record
        record.outcome, record.ended_at = "answered", call.last_seen
        record.device = device or record.device
        if call.blind_pending and extension != call.owner:
            call.blind_pending = False
            self._transfer(call, call.blind_from, extension, uniqueid, device, "blind", signals)
        elif call.owner is None:
            call.owner = extension
            self._start_talk(call, extension)
            signals.append(Answered(call.linkedid, extension, uniqueid, call.caller_number,
                                    call.caller_name, call.inbound_uniqueid, device, call.queue))
        elif call.owner != extension:
            signals.append(AnswerIgnored(call.linkedid, extension, call.owner, uniqueid))

    def _stops(self, call: CallState, uniqueid: str, status: str, signals: list[Signal]) -> None:
        extension = call.legs.pop(uniqueid)
        state = call.extensions[extension]
        state.legs.discard(uniqueid)
        if state.legs or state.answered:
            return  # another hop of this phone is still dialing, or it answered
        record = state.record
        record.outcome = OUTCOMES.get(status, "unknown")
        record.ended_at = call.last_seen
        record.device = record.device or call.devices.get(uniqueid, "")
        signals.append(StoppedRinging(call.linkedid, extension, status, uniqueid, state.ringing))
        state.ringing = False

    def _start_talk(self, call: CallState, extension: str) -> None:
        self._stop_talk(call, call.last_seen)
        call.talking = (extension, call.last_seen)
        if extension not in call.talkers:
            call.talkers.append(extension)

    @staticmethod
    def _stop_talk(call: CallState, now: float) -> None:
        if call.talking is not None:
            extension, since = call.talking
            call.clock_talk[extension] = call.clock_talk.get(extension, 0.0) + max(0.0, now - since)
            call.talking = None

    def _end(self, call: CallState, reason: str, signals: list[Signal]) -> None:
        for uniqueid in list(call.legs):
            self._stops(call, uniqueid, "UNKNOWN", signals)
        self._stop_talk(call, call.last_seen)
        talk_by, counted = call_talk_by(call, self._device)
        if call.talkers:
            talk_seconds = sum(seconds for _, seconds in talk_by) if counted else None
        else:
            talk_seconds = call.own_talk
        signals.append(CallEnded(
            call.linkedid, call.owner, call.caller_number, call.caller_name, tuple(call.dialed),
            reason, call.inbound_uniqueid, talk_seconds, call.dial_status,
            legs=tuple(record.leg() for record in call.rung), queue=call.queue,
            hold_seconds=call.hold_seconds, abandoned=call.abandoned, talk_by=talk_by))
        del self._calls[call.linkedid]
        self._ended[call.linkedid] = None
        while len(self._ended) > self._ended_memory:
            self._ended.popitem(last=False)

    def _sweep(self, now: float, signals: list[Signal]) -> None:
        self._next_sweep = now + min(60.0, self._idle_timeout / 4)
        deadline = now - self._idle_timeout
        for call in [call for call in self._calls.values() if call.last_seen < deadline]:
            self._end(call, "expired", signals)

    def _caller_from_snapshot(self, call: CallState, rows: list) -> None:
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
