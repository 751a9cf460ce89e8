"""The AMI listener: calls as Asterisk reports them, turned into screen-pops and call records.

This module owns the link between one box's AMI event stream and the CRM. It builds one
``AmiClient`` for its box (``PbxBox``: the ami_* settings unless told another), feeds every
event to a ``CallTracker`` whose ``DeviceMap`` holds the extensions of the active users on that
box (reloaded every ``refresh_interval`` seconds, at each (re)connect and on
``refresh_devices()``: a new seller's phone pops without a restart), and turns the tracker's
signals into CRM writes, each in its own short transaction, reading every extension as its
box's. ``start_ami`` in ``pbx_crm.components`` starts one per box (``pbx_boxes``) for
``pbx-crm ami``, ``serve`` and ``demo``.

The AGI hooks stay the primary source of call records: this listener never creates a deal or a
call. It pops the card in the browser of each seller whose phone rings (the AGI ``incoming``
hook only tells the deal's owner and the heads, before any phone rings), records who answered
(``calls.record_answer``, idempotent with the ``answered`` hook) and closes a recorded call the
hangup hook never closed, ``hangup_grace`` seconds after its last channel went (that hook runs
before the channel's ``Hangup`` event, so it normally wins; the grace covers a hook that was
spooled or slow). Such a call ends when its last channel went, not after the grace, and its
talk is the one the PBX's CDR bills (``CallEnded.talk_seconds``). A seller's own call out that
the CRM recorded (click-to-call) and no hook closed is closed the same way. Each signal is one
service call: a call's end also writes its legs (every seller rung, a queue's wait:
``funnel.call_legs``), and a transfer (``Transferred``) moves the pop and the deal to the
seller now on the call (``funnel.transfers``). The session asks for the ``agent`` class too:
app_queue's events (``AgentConnect``, ``QueueCallerAbandon``) say who connected and how long
the caller waited.

A call the CRM does not know (a dialplan without the hooks) still pops: the caller is looked
up read-only, and since no hook told the heads, they get one copy too, and a ``call_ended``
when it ends. Internal calls (a colleague's extension calling) pop nothing.
A phone may ring before the ``incoming`` hook's recording of the call committed (the dialplan
dials as soon as the lookup answered): the pop then names no deal, and the listener looks for
the recording again a few times (``POP_CHECKS``); once the call is recorded with a deal (for a
new caller, the Unsorted deal the CRM opened), the browsers it popped in get a ``ringing``
marked ``update`` that names it, so no one is offered to create a second deal.

Threads: signals are handled on the client's dispatcher thread, never on its reader, so a slow
database delays the pops but never the socket; the call ends waiting out their grace and the
periodic refresh run on one housekeeping thread. A failed write is logged and counted
(``failures``), and the listener goes on with the next signal.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlmodel import Session

from ..funnel import call_legs, calls, events, transfers
from ..funnel.call_pops import known_call_payload, pop_shown
from .ami_client import AmiActionError, AmiClient, AmiError
from .listener_reads import call_of, heads_told, outbound_call_of
from .call_tracker import (
    Answered,
    AnswerIgnored,
    CallEnded,
    CallTracker,
    DeviceMap,
    Ringing,
    Signal,
    StoppedRinging,
    Transferred,
)
from ..config import PbxBox, Settings
from ..funnel.contacts import find_contact_by_number
from ..db import transaction
from ..funnel.deals import open_deal_of_contact
from ..errors import NumberConflict
from ..models import utcnow
from ..rules.phones import CallerKind, classify_caller
from ..people.users import device_extensions, extensions_on, user_for_extension

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 60.0  # seconds between reloads of the sellers' extensions
HANGUP_GRACE = 5.0  # seconds the AGI hangup hook gets to close a call before we do
# Seconds after a pop that named no deal at which the call's recording is looked for again.
POP_CHECKS = (0.25, 0.5, 1.0, 2.0, 4.0)
# Status of a pop for a caller the CRM has no contact for (and, from AMI, made no deal for).
UNKNOWN = "UNKNOWN"


@dataclass
class _PopToComplete:
    """A pop shown before the call was recorded: who saw it (None: the heads)."""

    linkedid: str
    inbound_uniqueid: str
    extension: str
    targets: set[int | None] = field(default_factory=set)
    tries: int = 0


class _CurrentDevices:
    """The listener's device map as the tracker reads it (extension, device, transfer target),
    whichever map the last refresh made."""

    def __init__(self, listener: AmiListener):
        self._listener = listener

    def __call__(self, channel: str | None) -> str | None:
        return self._listener._devices(channel)

    def device(self, channel: str | None) -> str | None:
        return self._listener._devices.device(channel)

    def seller(self, exten: str | None) -> str | None:
        return self._listener._devices.seller(exten)


class AmiListener:
    """Follows calls on one AMI session, the box's (default: the ami_* settings').
    ``start()``, ``stop()``; ``client`` is the session (its ``originate`` serves
    click-to-call)."""

    def __init__(self, engine, settings: Settings, *, box: PbxBox | None = None,
                 client_factory: Callable[..., AmiClient] = AmiClient,
                 refresh_interval: float = REFRESH_INTERVAL,
                 hangup_grace: float = HANGUP_GRACE):
        self.engine = engine
        self.settings = settings
        self.box = box or settings.main_pbx
        self.pbx = self.box.stored  # the extensions' box as stored (None: the default)
        self.refresh_interval = refresh_interval
        self.hangup_grace = hangup_grace
        self._devices = DeviceMap(extensions=())
        # The tracker asks through this view, so a refresh swaps the map under it.
        self.tracker = CallTracker(_CurrentDevices(self))
        self.client = client_factory(self.box.host, self.box.port, self.box.username,
                                     self.box.secret, on_event=self._on_event,
                                     on_connect=self._on_connect)
        self._progress = threading.Condition()  # notified after each event, resync, refresh
        self._wake = threading.Condition()  # wakes the housekeeping thread
        # Heap of (due, seq, signal, when the call's last channel went).
        self._endings: list[tuple[float, int, CallEnded, datetime]] = []
        self._seq = itertools.count()
        self._pop_checks: list[tuple[float, int, _PopToComplete]] = []  # heap, under _wake
        self._pops_to_complete: dict[str, _PopToComplete] = {}  # by linkedid, under _wake
        self._stopping = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self.events_handled = 0
        self.signals_handled = 0
        self.failures = 0  # signals whose CRM write failed (logged)
        self.resyncs = 0  # on_connect runs, whether CoreShowChannels was allowed or not

    # --- life cycle ---

    def start(self) -> AmiListener:
        self._housekeeper = threading.Thread(target=self._housekeeping, name="ami-housekeeping",
                                             daemon=True)
        self._housekeeper.start()
        self.client.start()
        return self

    def stop(self) -> None:
        """Close the session; call ends still in their grace period are handled now."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        self.client.close()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=10)
        for ended, at in self._take_endings(due_before=None):
            self._handle(ended, partial(self._call_ended_now, ended_at=at))

    @property
    def extensions(self) -> frozenset[str]:
        """The seller extensions whose phones pop, as last loaded."""
        return self._devices.extensions or frozenset()

    def refresh_devices(self) -> frozenset[str] | None:
        """Reload the active users' extensions on this box, and the devices that ring for
        them (a desk phone and a softphone read as their seller); None (logged) if the
        database is away."""
        try:
            with transaction(self.engine, read_only=True) as session:
                found = extensions_on(session, self.pbx)
                devices = device_extensions(session, self.pbx)
        except Exception:  # keep the last known map and try again later
            log.exception("could not reload the sellers' extensions; keeping the last ones")
            return None
        if found != self._devices.extensions or devices != self._devices.devices:
            log.info("AMI listener (PBX %s) follows %d seller extension(s) and %d device(s) "
                     "of their own", self.box.name, len(found), len(devices))
        self._devices = DeviceMap(extensions=found, devices=devices)
        self._notify()
        return found

    # --- waiting, for the CLI and the tests ---

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds; re-checked after each event, resync and refresh."""
        with self._progress:
            return self._progress.wait_for(predicate, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every event Asterisk sent so far is handled (a Ping round trip marks
        "so far"); call ends waiting out ``hangup_grace`` are not waited for."""
        deadline = time.monotonic() + timeout
        self.client.ping(timeout)
        sent = self.client.events_read
        return self.wait_until(lambda: self.events_handled >= sent,
                               max(0.0, deadline - time.monotonic()))

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    # --- the client's callbacks (dispatcher thread) ---

    def _on_connect(self, client: AmiClient) -> None:
        try:
            self.refresh_devices()
            try:
                channels = client.core_show_channels()
            except AmiActionError as error:
                log.warning(
                    "AMI user %r may not list channels (%s): calls in progress are not "
                    "resynced after a reconnect. Give it `write = originate,reporting` in "
                    "manager.conf.", self.box.username, error)
                return
            except AmiError as error:
                log.warning("AMI resync skipped: %s", error)
                return
            for signal in self.tracker.resync(channels):
                self._dispatch(signal)
        finally:
            self.resyncs += 1
            self._notify()

    def _on_event(self, msg) -> None:
        try:
            for signal in self.tracker.feed(msg):
                self._dispatch(signal)
        finally:
            self.events_handled += 1
            self._notify()

    def _dispatch(self, signal: Signal) -> None:
        if isinstance(signal, Ringing):
            self._handle(signal, self._ringing)
        elif isinstance(signal, Answered):
            self._handle(signal, self._answered)
        elif isinstance(signal, StoppedRinging):
            if signal.rang:  # a busy phone never showed a pop: nothing to close
                self._handle(signal, self._stopped_ringing)
        elif isinstance(signal, Transferred):
            self._handle(signal, self._transferred)
        elif isinstance(signal, AnswerIgnored):
            log.info("call %s: ext %s answered after ext %s did; %s keeps the call",
                     signal.linkedid, signal.extension, signal.owner, signal.owner)
        elif isinstance(signal, CallEnded):
            ended_at = utcnow()  # the call's end, whenever it is written
            if self.hangup_grace <= 0:
                self._handle(signal, partial(self._call_ended_now, ended_at=ended_at))
            else:
                with self._wake:
                    heapq.heappush(self._endings, (time.monotonic() + self.hangup_grace,
                                                   next(self._seq), signal, ended_at))
                    self._wake.notify_all()

    def _handle(self, signal: Signal, handler: Callable[[Session, Signal], None]) -> None:
        """One signal, one transaction; a failure is logged and the next signal goes on."""
        try:
            with transaction(self.engine) as session:
                handler(session, signal)
        except Exception:  # the database may be away; the calls go on
            log.exception("AMI listener: %s not written to the CRM; going on",
                          type(signal).__name__)
            with self._progress:  # two threads count here: dispatcher and housekeeping
                self.failures += 1
        else:
            with self._progress:
                self.signals_handled += 1

    # --- what each signal writes ---

    def _ringing(self, session: Session, signal: Ringing) -> None:
        user = user_for_extension(session, signal.extension, self.pbx)
        if user is None:
            return
        events.serialize_pops(session, signal.linkedid)
        call = call_of(session, signal.inbound_uniqueid, signal.linkedid)
        payload = (known_call_payload(session, call) if call is not None
                   else self._unknown_call_payload(session, signal))
        if payload is None:
            return  # an internal call: no card to show
        payload.update(extension=signal.extension, source="ami")
        told: set[int | None] = set()
        if not pop_shown(session, user.id, signal.linkedid):  # e.g. the owner's AGI copy
            events.emit(session, events.RINGING, target_user_id=user.id, payload=payload,
                        deal_id=payload["deal_id"], linkedid=signal.linkedid)
            told.add(user.id)
        if call is None and not heads_told(session, signal.linkedid):
            events.emit(session, events.RINGING, target_user_id=None, payload=payload,
                        deal_id=payload["deal_id"], linkedid=signal.linkedid)
            told.add(None)
        if call is None and told and payload["deal_id"] is None and payload["status"] in (
                UNKNOWN, calls.FOUND):
            # A number the hook may be opening a deal for right now: look again shortly.
            self._complete_later(signal, told)

    def _complete_later(self, signal: Ringing, told: set[int | None]) -> None:
        with self._wake:
            pending = self._pops_to_complete.get(signal.linkedid)
            if pending is None:
                pending = self._pops_to_complete[signal.linkedid] = _PopToComplete(
                    signal.linkedid, signal.inbound_uniqueid, signal.extension)
                heapq.heappush(self._pop_checks, (time.monotonic() + POP_CHECKS[0],
                                                  next(self._seq), pending))
                self._wake.notify_all()
            pending.targets |= told

    def _complete_pops(self, now: float) -> None:
        """The pops whose check is due: completed when the call is recorded, else looked for
        again later (up to ``POP_CHECKS``)."""
        due = []
        with self._wake:
            while self._pop_checks and self._pop_checks[0][0] <= now:
                due.append(heapq.heappop(self._pop_checks)[2])
        for pending in due:
            done = False
            try:
                with transaction(self.engine) as session:
                    with self._wake:
                        targets = set(pending.targets)
                    done = _complete_pop(session, pending, targets)
            except Exception:  # the database may be away: look again at the next check
                log.exception("AMI listener: the pop of call %s not completed; going on",
                              pending.linkedid)
                with self._progress:
                    self.failures += 1
            with self._wake:
                pending.tries += 1
                if done or pending.tries >= len(POP_CHECKS):
                    self._pops_to_complete.pop(pending.linkedid, None)
                else:
                    heapq.heappush(self._pop_checks, (
                        time.monotonic() + POP_CHECKS[pending.tries] - POP_CHECKS[pending.tries - 1],
                        next(self._seq), pending))
            self._notify()

    def _unknown_call_payload(self, session: Session, signal: Ringing) -> dict | None:
        """The pop of a call no AGI hook recorded: the caller looked up, nothing written."""
        caller = classify_caller(signal.caller_number, region=self.settings.phone_region,
                                 extensions=self.settings.internal_extensions)
        if caller.kind is CallerKind.INTERNAL:
            return None
        status, contact, deal = calls.ANONYMOUS, None, None
        if caller.kind is CallerKind.NUMBER:
            try:
                contact = find_contact_by_number(session, caller.e164)
            except NumberConflict:
                status = calls.CONFLICT
            else:
                status = calls.FOUND if contact is not None else UNKNOWN
            if contact is not None:
                deal = open_deal_of_contact(session, contact.id)
        return {"uniqueid": signal.inbound_uniqueid, "linkedid": signal.linkedid,
                "status": status, "caller": caller.e164 or signal.caller_number,
                "caller_name": (contact.name if contact else "") or signal.caller_name,
                "deal_id": deal.id if deal else None,
                "contact_id": contact.id if contact else None, "did": None,
                "recorded": False}

    def _answered(self, session: Session, signal: Answered) -> None:
        call = call_of(session, signal.inbound_uniqueid, signal.linkedid)
        if call is not None:
            calls.record_answer(session, uniqueid=call.uniqueid, extension=signal.extension,
                                device=signal.device, pbx=self.pbx)

    def _stopped_ringing(self, session: Session, signal: StoppedRinging) -> None:
        user = user_for_extension(session, signal.extension, self.pbx)
        if user is None:
            return
        events.emit(session, events.STOPPED_RINGING, target_user_id=user.id,
                    payload={"linkedid": signal.linkedid, "extension": signal.extension,
                             "status": signal.status},
                    linkedid=signal.linkedid)

    def _transferred(self, session: Session, signal: Transferred) -> None:
        call = call_of(session, signal.inbound_uniqueid, signal.linkedid)
        if call is not None:
            transfers.record_transfer(
                session, call, from_extension=signal.from_extension,
                to_extension=signal.to_extension, kind=signal.kind,
                move_owner=self.settings.transfers_move_owner, pbx=self.pbx)
        elif heads_told(session, signal.linkedid):  # a call we popped without a record
            giver = (user_for_extension(session, signal.from_extension, self.pbx)
                     if signal.from_extension else None)
            taker = user_for_extension(session, signal.to_extension, self.pbx)
            payload = {"uniqueid": signal.inbound_uniqueid, "linkedid": signal.linkedid,
                       "extension": signal.to_extension, "deal_id": None, "source": "ami"}
            if giver is not None:
                events.emit(session, events.CALL_ENDED, target_user_id=giver.id,
                            payload={**payload, "disposition": "transferred"},
                            linkedid=signal.linkedid)
            events.emit_to_users(session, events.ANSWERED, [taker.id if taker else None],
                                 payload=payload, linkedid=signal.linkedid)

    def _call_ended_now(self, session: Session, signal: CallEnded, *,
                        ended_at: datetime | None = None) -> None:
        call = call_of(session, signal.inbound_uniqueid, signal.linkedid)
        if call is None:
            own = outbound_call_of(session, signal.linkedid)
            if own is not None:
                if own.ended_at is None:  # no hangup hook ran on the seller's channel
                    calls.record_hangup(session, uniqueid=own.uniqueid,
                                        dial_status=signal.dial_status, hangup_cause=None,
                                        answered_seconds=signal.talk_seconds,
                                        linkedid=signal.linkedid, now=ended_at)
                call_legs.record_call_end(session, own, legs=signal.legs,
                                          talk_by=signal.talk_by, pbx=self.pbx)
                return
            if heads_told(session, signal.linkedid):  # we popped it: close the pops
                owner = (user_for_extension(session, signal.owner, self.pbx)
                         if signal.owner else None)
                events.emit_to_users(
                    session, events.CALL_ENDED, [owner.id if owner else None],
                    payload={"uniqueid": signal.inbound_uniqueid, "linkedid": signal.linkedid,
                             "disposition": "answered" if signal.owner else "missed",
                             "deal_id": None, "source": "ami"},
                    linkedid=signal.linkedid)
            return
        if call.ended_at is None:  # else the hangup hook closed it, as it should
            # A caller who left the queue gave up, as one who hangs up while phones ring.
            unanswered = "CANCEL" if signal.abandoned else "NOANSWER"
            call = calls.record_hangup(
                session, uniqueid=call.uniqueid,
                dial_status="ANSWER" if signal.owner else unanswered, hangup_cause=None,
                answered_seconds=signal.talk_seconds if signal.owner else None,
                linkedid=signal.linkedid, now=ended_at)
        call_legs.record_call_end(session, call, legs=signal.legs, talk_by=signal.talk_by,
                                  queue=signal.queue, hold_seconds=signal.hold_seconds,
                                  talk_seconds=signal.talk_seconds, pbx=self.pbx)

    # --- housekeeping thread: the periodic refresh, call ends after their grace ---

    def _housekeeping(self) -> None:
        next_refresh = time.monotonic() + self.refresh_interval
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                self.refresh_devices()
                next_refresh = now + self.refresh_interval
            for ended, at in self._take_endings(due_before=now):
                self._handle(ended, partial(self._call_ended_now, ended_at=at))
            self._complete_pops(now)
            with self._wake:
                due = min([next_refresh] + [item[0] for item in self._endings[:1]]
                          + [item[0] for item in self._pop_checks[:1]])
                if not self._stopping.is_set():
                    self._wake.wait(max(0.0, due - time.monotonic()))

    def _take_endings(self, due_before: float | None) -> list[tuple[CallEnded, datetime]]:
        taken = []
        with self._wake:
            while self._endings and (due_before is None or self._endings[0][0] <= due_before):
                _due, _seq, ended, at = heapq.heappop(self._endings)
                taken.append((ended, at))
        return taken


def _complete_pop(session: Session, pending: _PopToComplete,
                  targets: set[int | None]) -> bool:
    """Whether the call of ``pending`` is recorded now; if it is, with a deal, the browsers
    that show its pop learn the deal (a ``ringing`` marked ``update``, which opens no card)."""
    call = call_of(session, pending.inbound_uniqueid, pending.linkedid)
    if call is None:
        return False
    payload = known_call_payload(session, call)
    if payload["deal_id"] is not None:
        payload.update(extension=pending.extension, source="ami", update=True)
        events.serialize_pops(session, pending.linkedid)
        events.emit_rows(session, [events.event_row(
            events.RINGING, target, payload=payload, deal_id=payload["deal_id"],
            linkedid=pending.linkedid) for target in sorted(targets, key=lambda t: t or 0)])
    return True

