"""A sales floor's other calls, played whole: queue calls, transfers, a seller's two devices.

``FloorCall`` is played by ``CallPlayer.play`` like a ``SimulatedCall``, through both of
Asterisk's paths: the lookup (``incoming``) on the inbound leg, then the call's phases as
``queue_calls``/``transfer_calls`` write them to the AMI side, the ``answered`` hook on the leg
that picked up (for a queue call, Queue's gosub hook: its CALLERID is the real caller, and
MEMBERINTERFACE/MEMBERNAME are set), the waits, and the ``hangup`` hook (after Queue(),
DIALSTATUS and QUEUESTATUS are unset there). The emulated queue calls come from callers whose
seller is not tried first (busy, or named by nobody): the queue variant of the dialplan rings
the seller before the queue only when they are free.

``floor_calls`` mixes them into ``random_calls``: ``pbx-crm demo`` and ``pbx-crm simulate``
play that mix (``--floor-calls``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .callers import random_calls
from .pbx import PlayedCall, SimulatedCall, agi_answered, agi_hangup, answering_leg, hang_up
from .queue_calls import queue_call
from .transfer_calls import attended_transfer, blind_transfer, two_devices

# kind -> its share of the floor calls; two-devices needs a seller with two devices.
KINDS = {"queue": 0.3, "queue-rrmemory": 0.15, "queue-abandoned": 0.1, "blind-transfer": 0.15,
         "attended-transfer": 0.15, "two-devices": 0.15}
QUEUE, QUEUE_RR = "sales", "sales-rr"  # the queues.conf names the emulated queues have
MEMBER_TIMEOUT = 10  # seconds an rrmemory member rings before the next one


@dataclass(frozen=True)
class FloorCall:
    """One queue call, transfer or two-device call, in simulated seconds.

    ``kind``: one of ``KINDS``. ``members``: the queue's members, or the two extensions of a
    transfer (who answers, who takes the call over). ``answer``: the member who picks up (a
    queue; default the first, or for rrmemory the second); ``devices``: for ``two-devices``, the
    seller's extension and the devices that ring for it, the last one answering.
    """

    kind: str
    caller: str = ""
    caller_name: str = ""
    members: tuple[str, ...] = ()
    answer: str = ""
    devices: tuple[str, tuple[str, ...]] = ("", ())
    ring_seconds: float = 4.0
    talk_seconds: int = 30

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: use one of {', '.join(KINDS)}")

    def play(self, player) -> PlayedFloorCall:
        return play_floor_call(player, self)


@dataclass
class PlayedFloorCall(PlayedCall):
    """What happened, with the queue and the transfer said too."""

    kind: str = ""
    queue: str = ""
    transfer: tuple[str, str, str] | None = None  # (blind|attended, from, to)
    device: str = ""  # two-devices: the device that answered
    hold_seconds: int | None = None

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """``call from 0812... [NEW] → queue sales rings ana, budi, citra → answered by budi,
        30 s``; a transfer adds ``→ transferred (blind) to budi``."""
        names = names or {}

        def who(ext: str) -> str:
            return names.get(ext) or f"ext {ext}"

        caller = self.call.caller or "anonymous"
        name = self.lookup.get("CRM_CALLER_NAME") or self.call.caller_name
        name = "" if name.lstrip("+").isdigit() else name
        line = f"call from {caller}" + (f" ({name})" if name else "") + f" [{self.status}]"
        if self.queue:
            line += f" → queue {self.queue} rings " + ", then ".join(
                ", ".join(who(ext) for ext in dial) for dial in self.dials)
        elif self.device:
            seller, devices = self.call.devices
            line += f" → rings {who(seller)} on {', '.join(devices)}"
        else:
            line += f" → rings {who(self.dials[0][0])}"
        if self.answered_by:
            line += f" → answered by {who(self.answered_by)}"
            line += f" on {self.device}" if self.device else ""
            line += f", {self.call.talk_seconds} s"
        else:
            line += f" → the caller hung up after {self.hold_seconds} s in the queue"
        if self.transfer:
            line += f" → transferred ({self.transfer[0]}) to {who(self.transfer[2])}"
        if self.errors:
            line += f" ({'; '.join(self.errors)})"
        return line


def play_floor_call(player, call: FloorCall) -> PlayedFloorCall:
    """``call`` through ``player`` (a ``CallPlayer``): lookup, phases, hooks, waits."""
    started = time.monotonic()
    trunk, linkedid, caller, inbound, steps, lookup = player.look_up(call)
    shape, dials = _write(player, call, caller, inbound.calleridname or "", (trunk, linkedid))

    for phase, data in shape.phases.items():
        steps.note(player._send(data))
        hook, wait = shape.steps.get(phase, ("", 0.0))
        if hook == "answered" and shape.answered_leg:
            leg = answering_leg(inbound, *shape.answered_leg, did=player.did)
            if shape.queue:  # Queue's gosub: the real caller, and the member's interface
                leg.callerid = inbound.callerid
                leg.variables.update(MEMBERINTERFACE=shape.member[0], MEMBERNAME=shape.member[1])
            steps.hook("answered", lambda: agi_answered(player.address, inbound, leg,
                                                        exit_on_hangup=True))
        elif hook == "hangup":
            args = hang_up(inbound, shape.dialstatus, talk=shape.answered_time)
            if shape.queue and shape.answered_by:
                inbound.variables.update(MEMBERINTERFACE=shape.member[0],
                                         MEMBERNAME=shape.member[1])
            steps.hook("hangup", lambda: agi_hangup(player.address, inbound, args))
        player._wait(wait)

    answered = shape.answered_by is not None
    seller, _ = call.devices
    return PlayedFloorCall(
        call, linkedid, lookup["CRM_STATUS"] or "UNAVAILABLE", lookup, dials=dials,
        owner_first="", busy=(), answered_by=seller if call.kind == "two-devices"
        else shape.answered_by, dialstatus="ANSWER" if answered else "CANCEL",
        talk_seconds=call.talk_seconds if answered else None,
        disposition=inbound.variables.get("CRM_DISPOSITION", ""),
        transcripts=steps.transcripts, errors=list(dict.fromkeys(steps.errors)),
        seconds=time.monotonic() - started, kind=call.kind, queue=shape.queue,
        transfer=shape.transfer, hold_seconds=shape.hold_seconds,
        device=shape.answered_by if call.kind == "two-devices" else "")


def _write(player, call: FloorCall, caller: str, name: str, trunk: tuple[str, str]):
    """The call's events (a ``ShapedCall``) and the Dials it makes, for the description."""
    builder, did = player.builder, player.did
    ring, talk = call.ring_seconds, call.talk_seconds
    members = list(call.members)
    if call.kind.startswith("queue"):
        rr = call.kind == "queue-rrmemory"
        answer = None if call.kind == "queue-abandoned" else (
            call.answer or members[1 if rr and len(members) > 1 else 0])
        shape = queue_call(builder, caller, did, members, answer, caller_name=name,
                           queue=QUEUE_RR if rr else QUEUE,
                           strategy="rrmemory" if rr else "ringall", ring_seconds=ring,
                           talk_seconds=talk, member_timeout=MEMBER_TIMEOUT, inbound=trunk)
        rung = members[:members.index(answer) + 1] if rr and answer else members
        return shape, [(ext,) for ext in rung] if rr else [tuple(members)]
    if call.kind == "two-devices":
        seller, devices = call.devices
        shape = two_devices(builder, caller, did, devices, devices[-1], caller_name=name,
                            ring_seconds=ring, talk_seconds=talk, inbound=trunk)
        return shape, [(seller,)]
    seller, to = members[:2]
    transfer = blind_transfer if call.kind == "blind-transfer" else attended_transfer
    shape = transfer(builder, caller, did, seller, to, caller_name=name, ring_seconds=ring,
                     talk_seconds=max(1, talk // 3), target_talk_seconds=talk, inbound=trunk)
    return shape, [(seller,), (to,)]


def floor_calls(rng: random.Random, known_numbers: Sequence[str] = (), *,
                ring_group: Sequence[str], share: float = 0.3,
                devices: Mapping[str, Sequence[str]] | None = None,
                ) -> Iterator[SimulatedCall | FloorCall]:
    """``random_calls``, with ``share`` of them made queue calls, transfers and (when a seller
    has two devices or more in ``devices``, extension -> device names) two-device calls,
    from the same callers."""
    ring_group = tuple(ring_group)
    two_device = [(ext, tuple(names)) for ext, names in (devices or {}).items()
                  if len(names) >= 2]
    kinds = {kind: weight for kind, weight in KINDS.items()
             if (kind != "two-devices" or two_device)
             and (len(ring_group) >= 2 or kind in ("queue", "queue-abandoned"))}
    for call in random_calls(rng, known_numbers, ring_group=ring_group):
        if not ring_group or rng.random() >= share:
            yield call
            continue
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        members = list(ring_group)
        if kind.endswith("transfer"):
            members = rng.sample(members, 2)
        yield FloorCall(kind, call.caller, call.caller_name, tuple(members),
                        answer=rng.choice(members) if kind == "queue" else "",
                        devices=rng.choice(two_device) if kind == "two-devices" else ("", ()),
                        ring_seconds=call.ring_seconds, talk_seconds=call.talk_seconds)
