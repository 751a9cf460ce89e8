"""The pieces Asterisk 22 builds every queue call, transfer and two-device call from.

``CallWriter`` writes one call's AMI events the way captures 10-16 show them, channel by
channel: the inbound ``PJSIP/trunk-...`` leg with its hangup handler pushed, ``Local/<ext>@phones``
member legs (their ``;1`` half is the leg the caller's channel dials, their ``;2`` half runs the
phone), ``DialBegin``/``DialState``/``DialEnd`` on the dialling channel, bridges, the hangups in
the order each half goes, and the ``Cdr`` events. ``queue_calls`` and ``transfer_calls`` put
these pieces together into whole calls, cut into phases so the call player can run the AGI
hooks and the waits between them (``SyntheticCall``). Durations come in simulated seconds, as
the waits; the events report them as played (``ScenarioBuilder.played``, at the player's time
scale), the way Asterisk reports the time a call really took.

The order of each channel's own events is the recorded one (``tests/test_call_shapes.py``
compares it with the captures). What the captures' injection added is not written: the far-end
half of the ``Local/<DID>@from-trunk`` channel that stood in for the trunk, and the caller ID
its ``Variable:`` headers set on the inbound half before its dialplan started.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .ami_calls import ScenarioBuilder, SyntheticCall, _Channel, _Script

PHONES = "phones"  # the context of the phones behind Local/<ext>@phones member legs
UP, RINGING = "6", "5"
ALLOWED = "0 (Presentation Allowed, Not Screened)"


@dataclass
class ShapedCall(SyntheticCall):
    """A written call, and what the dialplan does between its phases: ``steps`` maps a phase
    to the hook that runs once it has been played (``"answered"``, ``"hangup"`` or ``""``) and
    the simulated seconds that pass before the next one."""

    steps: dict[str, tuple[str, float]] = field(default_factory=dict)
    answered_leg: tuple[str, str] | None = None  # (channel, uniqueid) the answered hook runs on
    answered_by: str | None = None  # the extension (or device) whose leg was connected first
    queue: str = ""
    member: tuple[str, str] = ("", "")  # MEMBERINTERFACE, MEMBERNAME (setinterfacevar=yes)
    dialstatus: str = ""  # DIALSTATUS in the hangup handler: unset after Queue()
    # ANSWEREDTIME in the hangup handler (the last Dial's): the played talk, in real seconds.
    answered_time: int | None = None
    transfer: tuple[str, str, str] | None = None  # (blind|attended, from ext, to ext)
    hold_seconds: int | None = None  # queue calls: how long the caller waited (simulated)


@dataclass
class LocalLeg:
    """A ``Local/<exten>@<context>-XXXXXXXX`` channel: ``one`` is the half the caller's side
    dials and bridges with, ``two`` the half that runs ``<exten>@<context>`` (the phone)."""

    exten: str
    one: _Channel
    two: _Channel

    @property
    def interface(self) -> str:
        """What queues.conf names as the member: the channel without its suffix."""
        return self.one.name.rsplit("-", 1)[0]


class CallWriter:
    """One call's events, written in order; ``phase(name)`` closes what was written so far into
    a phase of the ``SyntheticCall`` that ``finish()`` returns."""

    def __init__(self, builder: ScenarioBuilder, *, caller: str, caller_name: str, did: str):
        self.builder = builder
        self.caller = caller or "<unknown>"
        self.caller_name = caller_name or "<unknown>"
        self.did = did
        self.script = _Script()
        self.bridge_ids = itertools.count(1)
        self.linkedid = ""
        self.inbound: _Channel | None = None
        self.cdrs: list[tuple[_Channel, str, str, int]] = []  # the inbound leg's, sent last
        self.steps: dict[str, tuple[str, float]] = {}

    # --- channels -----------------------------------------------------------------------------

    def trunk_leg(self, trunk: tuple[str, str] | None = None) -> _Channel:
        """The inbound leg (its Uniqueid is the call's Linkedid), created and with the CRM's
        hangup handler pushed, as [pbx-crm-route] does before the lookup."""
        name, uniqueid = trunk or self.builder.new_inbound()
        self.linkedid = uniqueid
        self.inbound = _Channel(name, uniqueid, uniqueid, "4", "from-pstn", self.did,
                                cid_num=self.caller, cid_name=self.caller_name,
                                cl_num=self.caller, cl_name=self.caller_name)
        self.event("Newchannel", self.inbound)
        self.event("HangupHandlerPush", self.inbound, ("Handler", "pbx-crm-hangup,s,1"))
        return self.inbound

    def local_leg(self, exten: str, context: str = PHONES, *, queue: bool = False,
                  cid: tuple[str, str] | None = None, linkedid: str = "") -> LocalLeg:
        """A Local channel pair as Dial (or app_queue, ``queue``) creates it: both halves, their
        caller ID, the ``LocalBridge``. ``cid``: (number, name) it presents; the caller's."""
        number, name = cid or (self.caller, self.caller_name)
        suffix, first = self.builder.next_suffix(), self.builder.next_uniqueid()
        linked = linkedid or self.linkedid or first  # an Originate's first channel: its own
        one = _Channel(f"Local/{exten}@{context}-{suffix};1", first,
                       linked, "0", context, exten, cid_num=number, cid_name=name,
                       cl_num=number, cl_name=name)
        two = _Channel(f"Local/{exten}@{context}-{suffix};2", self.builder.next_uniqueid(),
                       linked, "4", context, exten, cid_num=number, cid_name=name,
                       cl_num=number, cl_name=name)
        self.event("Newchannel", one)
        self.event("Newchannel", two)
        self.caller_id(one)
        if not queue:  # app_queue sets the ;1 half's connected line once it rings
            self.event("NewConnectedLine", one)
        self.caller_id(two)
        self.event("NewConnectedLine", two)
        self.script.event("LocalBridge", one.snapshot("LocalOne"), two.snapshot("LocalTwo"),
                          [("Context", context), ("Exten", exten), ("LocalOptimization", "Yes")])
        return LocalLeg(exten, one, two)

    # --- events -------------------------------------------------------------------------------

    def event(self, name: str, channel: _Channel, *extra: tuple[str, object],
              privilege: str = "call,all") -> None:
        self.script.event(name, channel.snapshot(), extra, privilege=privilege)

    def caller_id(self, channel: _Channel) -> None:
        self.event("NewCallerid", channel, ("CID-CallingPres", ALLOWED))

    def state(self, channel: _Channel, state: str) -> None:
        channel.state = state
        self.event("Newstate", channel)

    def dial(self, name: str, caller: _Channel | None, dest: _Channel, *extra) -> None:
        """A Dial event; ``caller`` None for a dial nobody's channel made (an Originate, or
        the bridge core dialling an attended transfer's target)."""
        groups = [caller.snapshot()] if caller is not None else []
        self.script.event(name, *groups, dest.snapshot("Dest"), extra)

    def agent(self, name: str, leg: LocalLeg, queue: str, member: str,
              *extra: tuple[str, object]) -> None:
        """An app_queue event about one member (privilege agent): the caller, the member's
        leg, the queue, its interface and name."""
        self.script.event(name, self.inbound.snapshot(), leg.one.snapshot("Dest"),
                          [("Queue", queue), ("Interface", leg.interface),
                           ("MemberName", member)], extra, privilege="agent,all")

    def queue_caller(self, name: str, *extra: tuple[str, object]) -> None:
        self.event(name, self.inbound, *extra, privilege="agent,all")

    def hangup(self, channel: _Channel, cause: str, *, request: str = "") -> None:
        """``Hangup``, after the ``HangupRequest``/``SoftHangupRequest`` ``request`` names."""
        if request:
            self.event(request, channel, ("Cause", "16" if request == "SoftHangupRequest"
                                          else cause))
        self.event("Hangup", channel, ("Cause", cause), ("Cause-txt", CAUSES[cause]))

    def handler_runs(self) -> None:
        """The inbound leg hangs up: its hangup handler starts (the ``hangup`` hook)."""
        self.event("SoftHangupRequest", self.inbound, ("Cause", "16"))
        self.event("HangupHandlerRun", self.inbound, ("Handler", "pbx-crm-hangup,s,1"),
                   privilege="dialplan,all")

    def bridge_create(self) -> str:
        bridge = f"{self.linkedid.replace('.', '')}-bridge-{next(self.bridge_ids)}"
        self.script.event("BridgeCreate", bridge_fields(bridge, 0))
        return bridge

    def bridge(self, name: str, bridge: str, channel: _Channel, members: int) -> None:
        """``BridgeEnter``/``BridgeLeave``: ``members`` in the bridge after it."""
        self.script.event(name, bridge_fields(bridge, members), channel.snapshot())

    def bridge_destroy(self, bridge: str) -> None:
        self.script.event("BridgeDestroy", bridge_fields(bridge, 0))

    def played(self, simulated: float) -> int:
        """A duration the events report: the played one (``ScenarioBuilder.played``)."""
        return self.builder.played(simulated)

    def cdr(self, channel: _Channel, disposition: str, *, billsec: float = 0,
            destination: str = "", dest_channel: str = "") -> None:
        """A ``Cdr``; ``billsec`` in simulated seconds, reported as played."""
        self.script.event("Cdr", [
            ("AccountCode", ""), ("Source", channel.cid_num), ("Destination",
                                                               destination or channel.exten),
            ("DestinationContext", channel.context),
            ("CallerID", f'"{channel.cid_name}" <{channel.cid_num}>'), ("Channel", channel.name),
            ("DestinationChannel", dest_channel), ("Disposition", disposition),
            ("BillableSeconds", self.played(billsec)), ("UniqueID", channel.uniqueid)],
            privilege="cdr,all")

    def inbound_cdr(self, dest: _Channel | None, disposition: str, billsec: float = 0,
                    destination: str = "") -> None:
        """One of the inbound leg's Cdrs (one per leg it dialled), sent after its Hangup."""
        self.cdrs.append((dest, disposition, destination, billsec))

    # --- the call -----------------------------------------------------------------------------

    def inbound_gone(self, *, cdrs_first: bool = False) -> None:
        """The inbound leg's ``Hangup`` after its handler, and its Cdrs: after it as a rule,
        before it when the CDR engine was quicker (capture 14)."""
        if not cdrs_first:
            self.hangup(self.inbound, "16")
        for dest, disposition, destination, billsec in self.cdrs:
            self.cdr(self.inbound, disposition, billsec=billsec,
                     destination=destination or self.did,
                     dest_channel=dest.name if dest is not None else "")
        if cdrs_first:
            self.hangup(self.inbound, "16")

    def phase(self, name: str, *, hook: str = "", wait: float = 0.0) -> None:
        """What was written so far is phase ``name``; once it is played, ``hook`` runs and
        ``wait`` simulated seconds pass."""
        self.script.end_phase(name)
        self.steps[name] = (hook, wait)

    def finish(self, legs: dict[str, _Channel], **shape) -> ShapedCall:
        """The call: ``legs`` maps each extension (or device) to the (first) leg its phone rang
        on; ``shape`` fills the rest of ``ShapedCall`` (``answered_time`` in simulated
        seconds: the hangup hook is told the played one)."""
        if shape.get("answered_time") is not None:
            shape["answered_time"] = self.played(shape["answered_time"])
        return ShapedCall(self.linkedid, self.script.phases, None,
                          {ext: leg.uniqueid for ext, leg in legs.items()},
                          self.inbound.name if self.inbound else "",
                          {ext: leg.name for ext, leg in legs.items()}, steps=self.steps,
                          **shape)


CAUSES = {"0": "Unknown", "16": "Normal Clearing", "17": "User busy",
          "26": "Answered elsewhere"}


def bridge_fields(bridge: str, members: int, prefix: str = "") -> list[tuple[str, object]]:
    """A bridge's snapshot, as bridge and transfer events carry it (``prefix``: ``Orig``,
    ``Second``, ``To``, ``From``)."""
    return [(prefix + key, value) for key, value in (
        ("BridgeUniqueid", bridge), ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
        ("BridgeName", "<unknown>"), ("BridgeNumChannels", members),
        ("BridgeVideoSourceMode", "none"))]

