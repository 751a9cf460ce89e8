"""What the call tracker says, and how it reads a channel name: its signals and ``DeviceMap``.

The tracker (``call_tracker``) turns AMI events into these frozen signals; the AMI listener turns
them into screen-pops, call records and deal events. ``DeviceMap`` says which seller extension,
and which of its devices (a desk phone, a softphone), a channel belongs to. Both are imported
from ``call_tracker`` by their users; this module only keeps that one from growing too long.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from ..rules.phones import WITHHELD_WORDS

DEFAULT_PHONE_CONTEXTS = ("phones", "from-queue", "from-internal")

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


def channel_device(channel: str | None,
                   phone_contexts: Collection[str] | None = None) -> str | None:
    """The device a channel name shows: the endpoint of ``PJSIP/<endpoint>-...``, the exten of
    ``Local/<exten>@<context>-...;1`` (only in ``phone_contexts``, if given); else ``None``."""
    match = _CHANNEL_NAME.match(channel or "")
    if not match:
        return None
    tech, base = match["tech"].upper(), match["base"]
    if tech in _DEVICE_TECHS:
        return base or None
    if tech == "LOCAL":
        exten, _, context = base.partition("@")
        if phone_contexts is None or context in phone_contexts:
            return exten or None
    return None


class DeviceMap:
    """Which seller extension a channel name belongs to, or ``None`` (trunks, IVRs, ...).

    * ``PJSIP/<endpoint>-0000000a`` and ``SIP/<peer>-...``: with ``endpoints`` (a mapping from
      endpoint name to extension, from configuration) only mapped endpoints count, so the trunk
      endpoint is never taken for a phone. Without it, the endpoint name is the extension:
      good for a demo PBX whose endpoints are named after extensions, not for production.
    * ``Local/<exten>@<context>-0000000a;1|;2``: ``<exten>`` when ``<context>`` is one of
      ``phone_contexts`` (queue members are ``Local/<ext>@from-queue/n``).
    * ``devices`` maps a seller's extra device names (endpoint or Local exten, e.g. a desk phone
      ``101a`` and a softphone ``101b``) to the extension: they ring as that one seller.
    * ``extensions``, if given, is the set of seller extensions: anything else is not a device.

    Calling the map gives the extension; ``device(channel)`` gives the device name itself.
    Nothing is guessed from a number's length (the classic connector bug).
    """

    def __init__(
        self,
        endpoints: Mapping[str, str] | None = None,
        *,
        extensions: Collection[str] | None = None,
        phone_contexts: Iterable[str] = DEFAULT_PHONE_CONTEXTS,
        devices: Mapping[str, str] | None = None,
    ):
        self.endpoints = dict(endpoints) if endpoints is not None else None
        self.extensions = frozenset(extensions) if extensions is not None else None
        self.phone_contexts = frozenset(phone_contexts)
        self.devices = dict(devices or {})
        self._cache: dict[str, tuple[str, str] | None] = {}

    def __call__(self, channel: str | None) -> str | None:
        found = self._found(channel)
        return found[0] if found else None

    def device(self, channel: str | None) -> str | None:
        """The device name of a seller's channel (``"101b"``), ``None`` for anything else."""
        found = self._found(channel)
        return found[1] if found else None

    def seller(self, exten: str | None) -> str | None:
        """The seller extension a dialled extension or device name stands for, if any (a
        transfer target's ``TransferTargetExten``)."""
        if not exten:
            return None
        extension = self.devices.get(exten, exten)
        if self.extensions is not None and extension not in self.extensions:
            return None
        return extension

    def _found(self, channel: str | None) -> tuple[str, str] | None:
        if not channel:
            return None
        try:
            return self._cache[channel]
        except KeyError:
            pass
        found = self._lookup(channel)
        if len(self._cache) > 4096:  # channel names never repeat: keep the cache small
            self._cache.clear()
        self._cache[channel] = found
        return found

    def _lookup(self, channel: str) -> tuple[str, str] | None:
        device = channel_device(channel, self.phone_contexts)
        if device is None:
            return None
        if device in self.devices:
            extension = self.devices[device]
        elif self.endpoints is not None and not channel.upper().startswith("LOCAL/"):
            extension = self.endpoints.get(device)
        else:
            extension = device
        if not extension or (self.extensions is not None and extension not in self.extensions):
            return None
        return extension, device


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
    device: str = ""  # the seller's device that rang first ("" unknown)
    queue: str = ""  # the queue the caller waits in, if the call went through Queue()


@dataclass(frozen=True, slots=True)
class Answered:
    """The first phone to answer this call: that seller now owns it."""

    linkedid: str
    extension: str
    dest_uniqueid: str
    caller_number: str = ""
    caller_name: str = ""
    inbound_uniqueid: str = ""
    device: str = ""  # the device that answered ("101b": the softphone)
    queue: str = ""


@dataclass(frozen=True, slots=True)
class AnswerIgnored:
    """Another phone answered after the owner did (two pick-ups "at once", or the colleague
    answering an attended transfer's consultation); the owner stays."""

    linkedid: str
    extension: str
    owner: str
    dest_uniqueid: str


@dataclass(frozen=True, slots=True)
class StoppedRinging:
    """A phone stopped ringing without answering: close its pop. Once per extension per ring
    episode, however many hops and duplicate ``DialEnd`` events the PBX sends.

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
class Transferred:
    """The caller now talks to another seller: ``from_extension`` handed the call over (it is
    no longer on it) and ``to_extension`` owns it from here. ``kind`` is ``"blind"`` or
    ``"attended"``; ``dest_uniqueid`` is the new seller's leg."""

    linkedid: str
    from_extension: str | None
    to_extension: str
    kind: str
    dest_uniqueid: str
    inbound_uniqueid: str = ""
    caller_number: str = ""
    caller_name: str = ""
    device: str = ""


@dataclass(frozen=True, slots=True)
class Leg:
    """One seller rung within a call, once per ring episode. ``outcome`` is ``"answered"``,
    ``"cancelled"`` (answered elsewhere, or the caller gave up), ``"noanswer"``, ``"busy"`` or
    ``"unknown"``; ``ring_seconds`` is the queue's count when it gives one, else the tracker's
    clock from ringing to the leg's end (``None``: it never rang, or we did not see it)."""

    extension: str
    device: str
    outcome: str
    ring_seconds: float | None
    answered: bool


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call's last channel hung up (``reason="hangup"``), it was gone from the channel
    list at a resync (``"gone"``), or it had no event for two hours (``"expired"``)."""

    linkedid: str
    owner: str | None  # the extension on the call at its end (after transfers, the last one)
    caller_number: str
    caller_name: str
    dialed: tuple[str, ...]  # every seller extension dialed, in order
    reason: str = "hangup"
    inbound_uniqueid: str = ""
    # Seconds of conversation as the PBX counts them (its CDR, or the queue's AgentComplete),
    # all sellers together; None when the PBX gave no count for some part of the talk.
    talk_seconds: int | None = None
    # How the last Dial to something other than a seller's phone ended (ANSWER, NOANSWER...):
    # the outcome of a seller's own call out, such as a click-to-call.
    dial_status: str = ""
    legs: tuple[Leg, ...] = ()  # every seller leg rung, in the order rung
    queue: str = ""  # the queue the caller joined (QueueCallerJoin), if any
    hold_seconds: int | None = None  # the caller's wait in the queue
    abandoned: bool = False  # the caller left the queue before anyone answered
    # Seconds of talk per seller who had the caller, in order: CDR segments, else the
    # queue's TalkTime, else the tracker's clock between answers and transfers.
    talk_by: tuple[tuple[str, int], ...] = ()


Signal = Ringing | Answered | AnswerIgnored | StoppedRinging | Transferred | CallEnded
