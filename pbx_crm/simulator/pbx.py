"""The call player: whole inbound calls, through both of Asterisk's paths into the CRM.

During one inbound call a real Asterisk reaches the CRM two ways: the AGI hooks of
dialplan/pbx-crm.conf over FastAGI (``incoming`` on the inbound leg before any Dial,
``answered`` on the leg that picks up, ``hangup`` in the inbound leg's hangup handler) and the
AMI events the listener follows (phones ringing, the answer, the hangups). ``CallPlayer.play``
plays a ``SimulatedCall`` through both, in the order Asterisk 22 produces them (capture 01):
the lookup; the CRM's answer deciding the dialplan's next step (``CRM_OWNER_EXTEN`` rings the
seller first, then the ring group); the phones ringing; the phone that picks up, then Dial's
``U()`` hook on it, then the bridge; the seller hanging up, then the hangup handler, then the
inbound leg's ``Hangup``. The AMI events come from ``ScenarioBuilder``; the inbound leg's
``Newchannel`` goes out with the ringing, after the lookup (nothing in the CRM acts on a trunk
leg before it dials a phone). Ringing and talk are real waits, compressed by ``time_scale``.

The AMI side goes to a ``FakeAmiServer`` in the same process (the demo), to ``EmulatorLink``
(the ``PbxCrmSimulate`` action of a FakeAmiServer in another process: ``pbx-crm simulate``
against the demo), or nowhere (the AGI path only). The AGI steps at the top are the ones the
tests' ``Pbx`` helper plays too. ``callers.random_calls`` makes a believable mix
of calls; ``CallLoop`` plays one every few seconds (``pbx-crm demo``), ``play_at_rate`` N at a rate.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pbx_crm.telephony.ami_protocol import parse_message, split_stream

from .agi import FakeChannel, Transcript
from .agi_commands import mset_pairs, parse_args
from .ami import SIMULATE_ACTION, ScenarioBuilder
from .hagi import run_agi

DID = "2150001"
RING_GROUP = ("101", "102", "103")  # CRM_RING_GROUP of the shipped dialplan
OWNER_RING_TIME = 15  # CRM_OWNER_RING_TIME: seconds the seller rings before the group
RING_GROUP_TIME = 30  # CRM_RING_GROUP_TIME: seconds the group rings before NOANSWER
TIME_SCALE = 0.1  # real seconds per simulated second
OWNER = "owner"  # SimulatedCall.answer: the seller the CRM names for the caller
LOOKUP_VARIABLES = ("CRM_STATUS", "CRM_DEAL_ID", "CRM_CONTACT_ID", "CRM_CALLER_NAME",
                    "CRM_OWNER_EXTEN")
OUTCOMES = {"ANSWER": "answered", "NOANSWER": "missed", "BUSY": "busy", "CANCEL": "abandoned"}
STATUSES = ("NEW", "FOUND", "ANONYMOUS", "UNAVAILABLE")  # always in a summary, even at 0


# --- the dialplan's AGI steps on emulated channels -----------------------------------------


def inbound_leg(name: str, uniqueid: str, *, number: str | None, caller_name: str | None,
                callingpres: int = 0, did: str = DID, **channel) -> FakeChannel:
    """The inbound trunk leg as ``[pbx-crm-route]`` runs the lookup on it; its uniqueid is the
    call's linkedid. ``number`` None: no caller ID at all. ``channel`` overrides the rest."""
    fields = {"name": name, "uniqueid": uniqueid, "callerid": number,
              "calleridname": caller_name, "callingpres": callingpres, "dnid": did,
              "context": "pbx-crm-route", "extension": "s", "priority": 11, **channel}
    return FakeChannel(**fields)


def answering_leg(inbound: FakeChannel, name: str, uniqueid: str, *, did: str = DID,
                  context: str = "pbx-crm-answered") -> FakeChannel:
    """The leg that picked up, as Dial's ``U()`` subroutine runs on it (capture 01): its
    CALLERID is the DID, the caller is its connected line, it is up."""
    connected = f'"{inbound.calleridname or ""}" <{inbound.callerid or ""}>'
    return FakeChannel(name=name, uniqueid=uniqueid, linkedid=inbound.linkedid, callerid=did,
                       calleridname=inbound.calleridname, context=context, extension="s",
                       priority=3, up=True, type=name.split("/", 1)[0],
                       variables={"CONNECTEDLINE(all)": connected})


def hang_up(inbound: FakeChannel, dialstatus: str, *, talk: int | None = None,
            cause: int = 16, context: str = "pbx-crm-hangup") -> list[str]:
    """The inbound leg hangs up and its hangup handler starts: the leg is dead, DIALSTATUS,
    HANGUPCAUSE and ANSWEREDTIME describe the last Dial. Returns the handler's AGI arguments
    (``${UNIQUEID},${DIALSTATUS},${HANGUPCAUSE},${ANSWEREDTIME}``)."""
    inbound.hangup()
    answered_time = "" if talk is None else str(talk)
    inbound.variables.update({"DIALSTATUS": dialstatus, "HANGUPCAUSE": str(cause),
                              "ANSWEREDTIME": answered_time})
    inbound.context, inbound.extension, inbound.priority = context, "s", 2
    return [inbound.uniqueid, dialstatus, str(cause), answered_time]


def agi_incoming(address: tuple[str, int], inbound: FakeChannel, did: str, *,
                 script: str = "incoming", **options) -> Transcript:
    """``AGI(${CRM_AGI}/incoming,${ARG1},${CHANNEL(linkedid)})`` on the inbound leg."""
    return run_agi(address, script, [did, inbound.linkedid], inbound, **options)


def agi_answered(address: tuple[str, int], inbound: FakeChannel, leg: FakeChannel, *,
                 script: str = "answered", **options) -> Transcript:
    """``AGI(${CRM_AGI}/answered,${ARG1})`` on the leg that answered; ARG1 is the inbound
    leg's UNIQUEID."""
    return run_agi(address, script, [inbound.uniqueid], leg, **options)


def agi_hangup(address: tuple[str, int], inbound: FakeChannel, args: Sequence[str], *,
               script: str = "hangup", **options) -> Transcript:
    """The hangup handler's AGI on the dead inbound leg, with ``hang_up``'s arguments."""
    return run_agi(address, script, list(args), inbound, **options)


def variables_set(transcript: Transcript) -> dict[str, str]:
    """The variables a session set, as Asterisk decoded them (``SET VARIABLE`` and ``EXEC
    MSet``). Empty ones are not sent: the dialplan cleared them before the AGI."""
    variables = {}
    for exchange in transcript.exchanges:
        argv = parse_args(exchange.command)
        verb = [word.upper() for word in argv[:2]]
        if verb == ["SET", "VARIABLE"] and len(argv) == 4:
            variables[argv[2]] = argv[3]
        elif verb == ["EXEC", "MSET"] and len(argv) == 3 and exchange.response == "200 result=0":
            variables.update(mset_pairs(argv[2]))
    return variables


# --- the AMI side, from another process ----------------------------------------------------


class NotTheEmulator(Exception):
    """The AMI server refused ``PbxCrmSimulate``: a real Asterisk, not the demo's emulator."""


class EmulatorLink:
    """Plays AMI events on a FakeAmiServer running in another process (``pbx-crm demo``),
    through its ``PbxCrmSimulate`` action: the events reach that server's other clients, such
    as the demo's AMI listener, as if the calls happened on it. ``replay(data)`` like
    ``FakeAmiServer.replay``."""

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 timeout: float = 5.0):
        from pbx_crm.telephony.ami_client import AmiClient

        self.address = f"{host}:{port}"
        self.timeout = timeout
        self.client = AmiClient(host, port, username, secret, events="off",
                                connect_timeout=timeout, action_timeout=timeout)

    def connect(self) -> EmulatorLink:
        """Log in and check the server is the emulator; ``ConnectionError`` or
        ``NotTheEmulator`` (closed again) when not."""
        from pbx_crm.telephony.ami_client import AmiError

        self.client.start()
        try:
            if not self.client.wait_connected(self.timeout):
                raise ConnectionError(f"no AMI session with {self.address} after "
                                      f"{self.timeout:g} s: {self.client.last_error}")
            try:
                answer = self._send(b"")
            except AmiError as error:
                raise ConnectionError(f"AMI {self.address}: {error}") from None
            if answer.get("Response") != "Success":
                raise NotTheEmulator(f"the AMI server at {self.address} answers "
                                     f"{SIMULATE_ACTION} with “{answer.get('Message')}”: it "
                                     "is not the demo's emulator")
        except BaseException:
            self.client.close()
            raise
        return self

    def replay(self, data: bytes) -> int:
        answer = self._send(data)
        if answer.get("Response") != "Success":
            raise ConnectionError(f"{SIMULATE_ACTION} refused: {answer.get('Message')}")
        return int(answer.get("Events") or 0)

    def _send(self, data: bytes):
        return self.client.send_action(SIMULATE_ACTION,
                                       {"Data": base64.b64encode(data).decode("ascii")})

    def close(self) -> None:
        self.client.close()


# --- calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedCall:
    """One inbound call as it will happen, in simulated seconds.

    ``caller``: the number as the trunk sends it ("" for a withheld number: ``anonymous``,
    presentation prohibited, as in capture 06). ``answer``: the extension that picks up,
    ``OWNER`` (the seller the CRM names; when it names none, or their phone is busy, a phone of
    the ring group the player picks), or None: nobody, and ``unanswered`` says how it ends:
    ``"missed"`` (the group rings out: NOANSWER), ``"abandoned"`` (the caller hangs up after
    ``ring_seconds``: CANCEL) or ``"busy"`` (every phone busy: BUSY). ``owner_first`` False: the
    seller's phone is busy, so the dialplan skips their ring and the group rings at once (the
    seller's phone answering BUSY in it). ``ring_seconds``: how long the phone that picks up
    rings first.
    """

    caller: str = ""
    caller_name: str = ""
    answer: str | None = OWNER
    unanswered: str = "missed"
    owner_first: bool = True
    ring_seconds: float = 6.0
    talk_seconds: int = 30

    def __post_init__(self):
        if self.unanswered not in ("missed", "abandoned", "busy"):
            raise ValueError(f"unanswered={self.unanswered!r}: use missed, abandoned or busy")


@dataclass
class PlayedCall:
    """What happened: what the CRM answered, which Dials rang which phones, how it ended."""

    call: SimulatedCall
    linkedid: str
    status: str  # CRM_STATUS as the dialplan reads it: UNAVAILABLE when the lookup failed
    lookup: dict[str, str]  # the CRM_* variables the lookup set
    dials: list[tuple[str, ...]]  # each Dial's phones, in order
    owner_first: str  # the seller whose own Dial rang first, or ""
    busy: tuple[str, ...]
    answered_by: str | None
    dialstatus: str
    talk_seconds: int | None  # simulated; ANSWEREDTIME told the played talk
    disposition: str  # CRM_DISPOSITION from the hangup hook ("" when it did not answer)
    transcripts: dict[str, Transcript] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0  # real time the call took

    @property
    def outcome(self) -> str:
        return OUTCOMES.get(self.dialstatus, self.dialstatus.lower())

    @property
    def reached_crm(self) -> bool:
        lookup = self.transcripts.get("incoming")
        return lookup is not None and lookup.agistatus != "FAILURE"

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """One line: ``call from 0812... (Agus Salim) [FOUND] → rings ana (owner), then ana,
        budi, citra → answered by citra, 42 s``; ``names`` maps extensions to logins."""
        names = names or {}

        def who(ext: str) -> str:
            return names.get(ext) or f"ext {ext}"

        name = self.lookup.get("CRM_CALLER_NAME") or self.call.caller_name
        if name.lstrip("+").isdigit():
            name = ""  # a new caller's contact is named after the number: said already
        caller = self.call.caller or "anonymous"
        line = f"call from {caller}" + (f" ({name})" if name else "") + f" [{self.status}]"
        rings = []
        for index, phones in enumerate(self.dials):
            text = ", ".join(who(ext) for ext in phones if ext not in self.busy)
            if index == 0 and self.owner_first:
                text += " (owner)"
            rings.append(text)
        if any(rings):
            line += " → rings " + ", then ".join(r for r in rings if r)
        if self.busy:
            line += f" (busy: {', '.join(who(ext) for ext in self.busy)})"
        if self.answered_by:
            line += f" → answered by {who(self.answered_by)}, {self.talk_seconds} s"
        elif self.outcome == "missed":
            line += " → missed: nobody answered"
        elif self.outcome == "busy":
            line += " → busy"
        else:
            line += f" → the caller hung up after {self.call.ring_seconds:g} s"
        if self.errors:
            line += f" ({'; '.join(self.errors)})"
        return line


class CallPlayer:
    """Plays calls into a running CRM, as Asterisk would: the AGI hooks at ``fastagi_address``
    (or at several, as ``hagi://`` reaches them: a ``hagi.Hagi``) and, with ``ami`` (a
    ``FakeAmiServer`` or an ``EmulatorLink``), the AMI events. Thread-safe: ``play`` calls may
    overlap. ``stop.set()`` makes every wait end at once, so calls in
    progress finish quickly (they still hang up properly); ``give_up_unreachable`` sets it
    when a lookup finds no FastAGI server (``pbx-crm simulate`` with nothing serving)."""

    def __init__(self, fastagi_address: tuple[str, int], ami=None, *, did: str = DID,
                 ring_group: Sequence[str] = RING_GROUP, time_scale: float = TIME_SCALE,
                 owner_ring_time: float = OWNER_RING_TIME,
                 ring_group_time: float = RING_GROUP_TIME,
                 builder: ScenarioBuilder | None = None, give_up_unreachable: bool = False):
        self.address = fastagi_address
        self.ami = ami
        self.did = did
        self.ring_group = tuple(ring_group)
        self.time_scale = time_scale
        self.owner_ring_time = owner_ring_time
        self.ring_group_time = ring_group_time
        # Uniqueids "<now>.<n>", from a random n: another run (the demo, a simulate) on the
        # same database must not reuse this one's, or the CRM would take them for repeats.
        # The events and hooks report the durations played, at this time scale.
        self.builder = builder or ScenarioBuilder(
            epoch=int(time.time()), first_id=random.SystemRandom().randrange(10**6) * 100,
            time_scale=time_scale)
        self.stop = threading.Event()
        self.give_up_unreachable = give_up_unreachable

    # --- one call ---

    def play(self, call: SimulatedCall) -> PlayedCall:
        if not isinstance(call, SimulatedCall):  # a queue call, a transfer (floor_calls)
            return call.play(self)
        started = time.monotonic()
        trunk, linkedid, caller, inbound, steps, lookup = self.look_up(call)
        owner = lookup["CRM_OWNER_EXTEN"] if lookup["CRM_OWNER_EXTEN"].isdigit() else ""
        plan = self._dial_plan(call, owner)
        synthetic = self.builder.ring_pjsip(
            caller, self.did, plan.group, plan.answer, caller_name=inbound.calleridname or "",
            busy=plan.busy, abandon=plan.abandon, inbound=(trunk, linkedid),
            tried_first=plan.first)
        phases = synthetic.phases

        # The Dials: the seller's own first, when it applies, then the one that decides.
        if plan.first:
            steps.note(self._send(phases["first"]))
            self._wait(self.owner_ring_time)
        steps.note(self._send(phases["ringing"]))
        talk = answered_time = None
        if plan.answer is not None:
            self._wait(call.ring_seconds)
            leg_id = synthetic.legs[plan.answer]
            picked_up, bridged = _cut(phases["answer"], lambda event: (
                event.get("Event") == "Newstate" and event.get("ChannelState") == "6"
                and event.get("Uniqueid") == leg_id), keep=True)
            steps.note(self._send(picked_up))
            leg = answering_leg(inbound, synthetic.channels[plan.answer], leg_id, did=self.did)
            steps.hook("answered", lambda: agi_answered(self.address, inbound, leg,
                                                        exit_on_hangup=True))
            steps.note(self._send(bridged))
            self._wait(call.talk_seconds)
            # ANSWEREDTIME: the talk as played, as Asterisk counts the real one; the deal's
            # page reads the same from the answer and the hangup.
            dialstatus, talk = "ANSWER", call.talk_seconds
            answered_time = self.builder.played(talk)
        elif plan.busy and set(plan.busy) == set(plan.group):
            dialstatus = "BUSY"
        elif plan.abandon:
            self._wait(call.ring_seconds - (self.owner_ring_time if plan.first else 0.0))
            dialstatus = "CANCEL"
        else:
            self._wait(self.ring_group_time)
            dialstatus = "NOANSWER"

        # The phones hang up, then the caller's leg: its hangup handler, then its Hangup.
        phones_gone, caller_gone = _cut(phases["end"], lambda event: (
            event.get("Event") == "Hangup" and event.get("Uniqueid") == linkedid), keep=False)
        steps.note(self._send(phones_gone))
        args = hang_up(inbound, dialstatus, talk=answered_time,
                       cause=17 if dialstatus == "BUSY" else 16)
        steps.hook("hangup", lambda: agi_hangup(self.address, inbound, args))
        steps.note(self._send(caller_gone))
        return PlayedCall(
            call, linkedid, lookup["CRM_STATUS"] or "UNAVAILABLE", lookup,
            dials=[plan.first, plan.group] if plan.first else [plan.group],
            owner_first=plan.owner_first, busy=plan.busy, answered_by=plan.answer,
            dialstatus=dialstatus, talk_seconds=talk,
            disposition=inbound.variables.get("CRM_DISPOSITION", ""),
            transcripts=steps.transcripts, errors=list(dict.fromkeys(steps.errors)),
            seconds=time.monotonic() - started)

    def look_up(self, call):
        """[pbx-crm-route]'s first step for any call: the trunk leg comes in, the lookup runs,
        the caller's name is the CRM's. Returns (trunk channel, linkedid, caller number,
        inbound leg, the call's ``_Steps``, the lookup's variables)."""
        trunk, linkedid = self.builder.new_inbound()
        withheld = not call.caller
        caller = "anonymous" if withheld else call.caller
        inbound = inbound_leg(trunk, linkedid, number=caller,
                              caller_name="Anonymous" if withheld else call.caller_name or None,
                              callingpres=35 if withheld else 0, did=self.did)
        steps = _Steps()
        steps.hook("incoming", lambda: agi_incoming(self.address, inbound, self.did,
                                                    exit_on_hangup=True))
        if not steps.reached_crm and self.give_up_unreachable:
            self.stop.set()
        lookup = {name: inbound.variables.get(name, "") for name in LOOKUP_VARIABLES}
        if lookup["CRM_CALLER_NAME"]:
            inbound.write("CALLERID(name)", lookup["CRM_CALLER_NAME"])
        return trunk, linkedid, caller, inbound, steps, lookup

    def _dial_plan(self, call: SimulatedCall, owner: str) -> _DialPlan:
        """What [pbx-crm-route] dials for this call, given the seller the CRM named."""
        group = self.ring_group
        owner_idle = bool(owner) and call.owner_first
        if call.answer is None and call.unanswered == "busy":
            return _DialPlan((), group, group, None)  # a busy seller is not tried first either
        busy = (owner,) if owner and not owner_idle and owner in group else ()
        answer = owner if call.answer == OWNER else call.answer
        abandon = call.answer is None and call.unanswered == "abandoned"
        if owner_idle and (answer == owner or (
                abandon and call.ring_seconds <= self.owner_ring_time)):
            # The seller's own Dial is the whole call: they answer, or the caller gives up.
            return _DialPlan((), (owner,), (), answer, abandon, owner_first=owner)
        candidates = [ext for ext in group if ext not in busy]
        if call.answer is not None and answer not in candidates:
            # The seller is busy or named nobody: someone else picks up, the same one every
            # time this call is played (a seeded `simulate` is repeatable).
            answer = random.Random(repr(call)).choice(candidates) if candidates else None
        first = (owner,) if owner_idle else ()
        return _DialPlan(first, group, busy, answer, abandon, owner_first=owner if first else "")

    def _wait(self, simulated_seconds: float) -> None:
        self.stop.wait(max(0.0, simulated_seconds) * self.time_scale)

    def _send(self, data: bytes) -> str:
        if self.ami is None or not data:
            return ""
        try:
            self.ami.replay(data)
        except Exception as error:  # the AMI side is gone: the AGI side goes on, as in Asterisk
            return f"AMI: {error}"
        return ""


@dataclass(frozen=True)
class _DialPlan:
    first: tuple[str, ...]  # the seller's own Dial, rung first and unanswered (or empty)
    group: tuple[str, ...]  # the Dial that decides the call
    busy: tuple[str, ...]  # phones of that Dial that answer BUSY
    answer: str | None
    abandon: bool = False
    owner_first: str = ""  # the seller whose own Dial rang first


class _Steps:
    """One call's AGI sessions, and what went wrong on the way."""

    def __init__(self):
        self.transcripts: dict[str, Transcript] = {}
        self.errors: list[str] = []

    @property
    def reached_crm(self) -> bool:
        lookup = self.transcripts.get("incoming")
        return lookup is not None and lookup.agistatus != "FAILURE"

    def hook(self, name: str, run: Callable[[], Transcript]) -> None:
        try:
            transcript = self.transcripts[name] = run()
        except OSError as error:  # the CRM stopped answering mid-session (a read timeout)
            self.errors.append(f"{name} hook: {error}")
            return
        if transcript.agistatus == "FAILURE":
            self.errors.append(f"{name} hook: CRM unreachable")

    def note(self, error: str) -> None:
        if error:
            self.errors.append(error)


def _cut(data: bytes, is_the_event: Callable, *, keep: bool) -> tuple[bytes, bytes]:
    """``data`` split at the first event ``is_the_event`` accepts: that event goes with the
    first part (``keep``) or opens the second."""
    _, blocks = split_stream(data)
    for index, block in enumerate(blocks):
        if is_the_event(parse_message(block)):
            cut = index + 1 if keep else index
            return b"".join(blocks[:cut]), b"".join(blocks[cut:])
    return data, b""


# --- many calls ----------------------------------------------------------------------------

def play_at_rate(player: CallPlayer, calls: Sequence[SimulatedCall], rate: float, *,
                 on_played: Callable[[int, PlayedCall], object] | None = None,
                 max_concurrent: int = 256) -> list[PlayedCall]:
    """Start ``calls`` at ``rate`` per second, overlapping as they last; wait for them all.
    ``on_played(index, played)`` runs as each ends (from its thread). Stops starting new ones
    once ``player.stop`` is set."""
    results: list[PlayedCall | None] = [None] * len(calls)
    lock = threading.Lock()

    def play(index: int, call: SimulatedCall) -> None:
        played = player.play(call)
        with lock:
            results[index] = played
            if on_played is not None:
                on_played(index, played)

    start = time.monotonic()
    workers = max(1, min(len(calls), max_concurrent))
    with ThreadPoolExecutor(workers, thread_name_prefix="simulated-call") as pool:
        futures = []
        try:
            for index, call in enumerate(calls):
                if player.stop.wait(max(0.0, start + index / rate - time.monotonic())):
                    break
                futures.append(pool.submit(play, index, call))
            for future in futures:
                future.result()
        except BaseException:  # Ctrl-C: the calls in progress hang up now
            player.stop.set()
            raise
    return [played for played in results if played is not None]


def summary(played: Iterable[PlayedCall], seconds: float) -> str:
    """``5 calls in 2.1 s: NEW 2, FOUND 2, ANONYMOUS 1, UNAVAILABLE 0; answered 4, missed 1,
    busy 0, abandoned 0``."""
    played = list(played)
    statuses = Counter(call.status for call in played)
    outcomes = Counter(call.outcome for call in played)
    names = list(STATUSES) + sorted(set(statuses) - set(STATUSES))
    return (f"{len(played)} call{'s' if len(played) != 1 else ''} in {seconds:.1f} s: "
            + ", ".join(f"{name} {statuses[name]}" for name in names) + "; "
            + ", ".join(f"{outcome} {outcomes[outcome]}" for outcome in OUTCOMES.values()))


class CallLoop:
    """Plays a call from ``calls`` every ``every`` seconds, each in a thread of its own (a
    call may last longer than the interval), until ``stop()``. The first call waits until
    ``ready()`` says yes, asked again and again for up to ``ready_timeout`` seconds (the demo
    asks its FakeAmiServer, briefly, whether the AMI listener has logged in);
    ``on_played(played)`` runs after each call."""

    def __init__(self, player: CallPlayer, calls: Iterator[SimulatedCall], every: float, *,
                 on_played: Callable[[PlayedCall], object] | None = None,
                 ready: Callable[[], bool] | None = None, ready_timeout: float = 30.0):
        self.player = player
        self.calls = calls
        self.every = every
        self.on_played = on_played
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.played = 0
        self._count_lock = threading.Lock()
        self._calls: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name="demo-calls", daemon=True)

    def start(self) -> CallLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """No new call; the ones in progress skip their waits and hang up."""
        self.player.stop.set()
        self._thread.join(timeout)
        for thread in list(self._calls):
            thread.join(timeout)

    def _run(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while (self.ready is not None and not self.ready() and not self.player.stop.is_set()
               and time.monotonic() < deadline):
            pass
        while not self.player.stop.wait(self.every):
            call = next(self.calls)
            thread = threading.Thread(target=self._play, args=(call,), name="demo-call",
                                      daemon=True)
            self._calls = [t for t in self._calls if t.is_alive()] + [thread]
            thread.start()

    def _play(self, call: SimulatedCall) -> None:
        played = self.player.play(call)
        with self._count_lock:
            self.played += 1
        if self.on_played is not None and not self.player.stop.is_set():
            self.on_played(played)
