"""Queue calls, as app_queue plays them in Asterisk 22 (captures 10, 11 and 12).

``queue_call`` writes an inbound call that waits in ``Queue()`` while its members'
``Local/<ext>@phones`` legs ring: ``ringall`` rings every member at once, ``rrmemory`` one
after the other, each for the queue's member timeout. What the captures show, and the CRM must
cope with, is kept: ``QueueCallerJoin`` and music on hold while the caller waits, unanswered;
``AgentCalled`` before each ``DialBegin``; on an answer the ``DialEnd ANSWER`` first, then two
``DialEnd CANCEL`` for every other member (cause 26, answered elsewhere), ``MusicOnHoldStop``,
``QueueCallerLeave`` and only then, after Queue's gosub hook ran the ``answered`` AGI on the
member's leg, ``AgentConnect``; a member whose own timeout expires gets ``AgentRingNoAnswer``
(``RingTime`` in milliseconds), ``DialEnd NOANSWER`` and a second ``DialEnd CANCEL``; a caller
who gives up gets ``QueueCallerAbandon`` with the seconds held. The inbound leg has one Cdr per
member rung. In the hangup handler DIALSTATUS and QUEUESTATUS are unset (fact 23).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .ami_calls import ScenarioBuilder
from .call_writer import RINGING, UP, CallWriter, LocalLeg, ShapedCall

STRATEGIES = ("ringall", "rrmemory")
RETRY_SECONDS = 1  # queues.conf retry: the pause before the next member rings


def queue_call(
    builder: ScenarioBuilder,
    caller: str,
    did: str,
    members: Sequence[str],
    answer: str | None = None,
    *,
    queue: str = "sales",
    strategy: str = "ringall",
    caller_name: str = "",
    member_names: Mapping[str, str] | None = None,
    ring_seconds: float = 2.0,
    member_timeout: int = 15,
    talk_seconds: int = 3,
    inbound: tuple[str, str] | None = None,
) -> ShapedCall:
    """A call into ``queue`` whose ``members`` (extensions) ring as ``strategy`` says.

    ``answer``: the member who picks up after ``ring_seconds`` and talks ``talk_seconds``;
    None: nobody does, and the caller hangs up after ``ring_seconds`` (the queue call is
    abandoned). With ``rrmemory`` the members before ``answer`` ring ``member_timeout``
    seconds each without answering. ``member_names``: the queues.conf member names (default:
    the interface). ``inbound``: the trunk leg from ``builder.new_inbound()``.

    Phases: ``"ringing"`` (after it the members ring; with rrmemory the first one, then
    ``"ringing-2"``... as each times out and the next rings), ``"answered"`` (the answered
    hook runs on ``answered_leg``), ``"talk"``, ``"hangup"`` (the hangup hook), ``"gone"``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: use {' or '.join(STRATEGIES)}")
    if answer is not None and answer not in members:
        raise ValueError(f"answer={answer!r} is not a member of {list(members)}")
    names = dict(member_names or {})
    w = CallWriter(builder, caller=caller, caller_name=caller_name, did=did)
    w.trunk_leg(inbound)
    w.queue_caller("QueueCallerJoin", ("Queue", queue), ("Position", 1), ("Count", 1))
    w.event("MusicOnHoldStart", w.inbound, ("Class", "default"))

    if strategy == "ringall":
        rounds = [list(members)]
    else:
        last = members.index(answer) + 1 if answer is not None else len(members)
        rounds = [[member] for member in members[:last]]
    rung: dict[str, LocalLeg] = {}
    held = 0.0
    for index, round_members in enumerate(rounds):
        legs = _ring(w, queue, round_members, names)
        rung.update(legs)
        phase = "ringing" if index == 0 else f"ringing-{index + 1}"
        if index == len(rounds) - 1:
            w.phase(phase, wait=ring_seconds)
            break
        w.phase(phase, wait=member_timeout + RETRY_SECONDS)
        for leg in legs.values():
            _ring_no_answer(w, queue, leg, _name(names, leg), member_timeout)
        held += member_timeout + RETRY_SECONDS
    held += ring_seconds
    ringing = rounds[-1]

    if answer is None:
        _abandon(w, queue, [rung[m] for m in ringing], hold=round(held))
        w.phase("hangup", hook="hangup")
        w.inbound_gone()
        w.phase("gone")
        return w.finish({m: leg.one for m, leg in rung.items()}, queue=queue,
                        hold_seconds=round(held))

    winner = rung[answer]
    losers = [rung[m] for m in ringing if m != answer]
    w.state(winner.two, UP)
    w.state(winner.one, UP)
    w.dial("DialEnd", w.inbound, winner.one, ("DialStatus", "ANSWER"))
    for leg in losers:
        w.dial("DialEnd", w.inbound, leg.one, ("DialStatus", "CANCEL"))
    for leg in losers:
        w.dial("DialEnd", w.inbound, leg.one, ("DialStatus", "CANCEL"))
        w.event("HangupRequest", leg.two, ("Cause", "26"))
        w.hangup(leg.one, "26")
    w.event("MusicOnHoldStop", w.inbound)
    for leg in losers:
        w.cdr(leg.two, "NO ANSWER")
    for leg in losers:
        w.hangup(leg.two, "26", request="SoftHangupRequest")
    w.queue_caller("QueueCallerLeave", ("Queue", queue), ("Position", 1), ("Count", 0))
    w.phase("answered", hook="answered")

    hold = round(held)
    w.agent("AgentConnect", winner, queue, _name(names, winner),
            ("HoldTime", w.played(hold)), ("RingTime", w.played(round(ring_seconds))))
    w.state(w.inbound, UP)
    bridge = w.bridge_create()
    w.bridge("BridgeEnter", bridge, winner.one, 1)
    w.bridge("BridgeEnter", bridge, w.inbound, 2)
    w.phase("talk", wait=talk_seconds)

    # The member hangs up: their phone's half, then app_queue's word, then their leg.
    w.event("SoftHangupRequest", winner.two, ("Cause", "16"))
    w.event("HangupRequest", winner.one, ("Cause", "16"))
    w.hangup(winner.two, "16")
    w.agent("AgentComplete", winner, queue, _name(names, winner), ("HoldTime", w.played(hold)),
            ("TalkTime", w.played(talk_seconds)), ("Reason", "agent"))
    w.cdr(winner.two, "ANSWERED", billsec=talk_seconds)
    w.bridge("BridgeLeave", bridge, winner.one, 1)
    w.hangup(winner.one, "16")
    w.bridge("BridgeLeave", bridge, w.inbound, 0)
    w.bridge_destroy(bridge)
    w.handler_runs()
    w.phase("hangup", hook="hangup")
    for member in ringing:
        leg = rung[member]
        w.inbound_cdr(leg.one, "ANSWERED" if leg is winner else "NO ANSWER",
                      talk_seconds if leg is winner else 0)
    w.inbound_gone()
    w.phase("gone")
    return w.finish({m: leg.one for m, leg in rung.items()},
                    answered_leg=(winner.one.name, winner.one.uniqueid), answered_by=answer,
                    queue=queue, member=(winner.interface, _name(names, winner)),
                    hold_seconds=hold)


def _name(names: Mapping[str, str], leg: LocalLeg) -> str:
    return names.get(leg.exten) or leg.interface


def _ring(w: CallWriter, queue: str, members: Sequence[str],
          names: Mapping[str, str]) -> dict[str, LocalLeg]:
    """app_queue calls each member (its Local leg, ``AgentCalled``, ``DialBegin``), then
    each phone rings."""
    legs = {}
    for member in members:
        leg = legs[member] = w.local_leg(member, queue=True)
        leg.one.exten = leg.two.exten = member
        w.agent("AgentCalled", leg, queue, _name(names, leg))
        w.dial("DialBegin", w.inbound, leg.one, ("DialString", leg.interface))
    for leg in legs.values():
        w.state(leg.one, RINGING)
        w.event("NewConnectedLine", leg.one)
        w.dial("DialState", w.inbound, leg.one, ("DialStatus", "RINGING"))
    return legs


def _ring_no_answer(w: CallWriter, queue: str, leg: LocalLeg, name: str,
                    timeout: int) -> None:
    """The member's own timeout expired (rrmemory): RingTime in milliseconds, NOANSWER then a
    second CANCEL for the same leg, and its legs hang up (cause 0; its Cdr FAILED)."""
    w.agent("AgentRingNoAnswer", leg, queue, name, ("RingTime", w.played(timeout * 1000)))
    w.dial("DialEnd", w.inbound, leg.one, ("DialStatus", "NOANSWER"))
    w.dial("DialEnd", w.inbound, leg.one, ("DialStatus", "CANCEL"))
    w.event("HangupRequest", leg.two, ("Cause", "0"))
    w.hangup(leg.one, "0")
    w.cdr(leg.two, "FAILED")
    w.hangup(leg.two, "0", request="SoftHangupRequest")
    w.inbound_cdr(leg.one, "NO ANSWER")


def _abandon(w: CallWriter, queue: str, ringing: Sequence[LocalLeg], *, hold: int) -> None:
    """The caller hangs up while the members ring: every member's two CANCELs, the abandon,
    the members' legs, the caller leaving the queue, the hangup handler."""
    w.event("HangupRequest", w.inbound, ("Cause", "16"))
    w.event("MusicOnHoldStop", w.inbound)
    for leg in ringing:
        w.dial("DialEnd", w.inbound, leg.one, ("DialStatus", "CANCEL"))
    for leg in ringing:
        w.dial("DialEnd", w.inbound, leg.one, ("DialStatus", "CANCEL"))
        w.event("HangupRequest", leg.two, ("Cause", "0"))
        w.hangup(leg.one, "0")
    w.queue_caller("QueueCallerAbandon", ("Queue", queue), ("Position", 1),
                   ("OriginalPosition", 1), ("HoldTime", w.played(hold)))
    for leg in ringing:
        w.cdr(leg.two, "FAILED")
    for leg in ringing:
        w.hangup(leg.two, "0", request="SoftHangupRequest")
    w.queue_caller("QueueCallerLeave", ("Queue", queue), ("Position", 1), ("Count", 0))
    w.handler_runs()
    for leg in ringing:
        w.inbound_cdr(leg.one, "NO ANSWER")
