"""The state the call tracker keeps per call, and how a call's talk is split between sellers.

Plain mutable records, owned by ``call_tracker.CallTracker`` (the only module that changes them);
kept apart so the state machine reads in one sitting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .call_signals import Leg


@dataclass(slots=True)
class LegRecord:
    """One seller's ring episode, as ``CallEnded.legs`` reports it."""

    extension: str
    device: str = ""
    rang_at: float | None = None
    ended_at: float | None = None
    outcome: str = ""  # "" while it rings
    queue_ring: float | None = None  # the queue's own count of the ring, in seconds

    def leg(self) -> Leg:
        ring = self.queue_ring
        if ring is None and self.rang_at is not None and self.ended_at is not None:
            ring = max(0.0, self.ended_at - self.rang_at)
        outcome = self.outcome or "unknown"
        return Leg(self.extension, self.device, outcome, ring, outcome == "answered")


@dataclass(slots=True)
class ExtensionState:
    """One seller extension within one call: its dialed legs still in progress."""

    record: LegRecord  # the current ring episode
    legs: set[str] = field(default_factory=set)
    ringing: bool = False  # Ringing was emitted for the current ring episode
    answered: bool = False


@dataclass(slots=True)
class CallState:
    linkedid: str
    last_seen: float
    channels: dict[str, str | None] = field(default_factory=dict)  # open: uniqueid -> state
    hung_up: set[str] = field(default_factory=set)
    legs: dict[str, str] = field(default_factory=dict)  # dialed device leg -> extension
    devices: dict[str, str] = field(default_factory=dict)  # dialed device leg -> device name
    records: dict[str, LegRecord] = field(default_factory=dict)  # dialed leg -> its episode
    rung: list[LegRecord] = field(default_factory=list)
    extensions: dict[str, ExtensionState] = field(default_factory=dict)
    dialed: list[str] = field(default_factory=list)
    owner: str | None = None
    caller_number: str = ""
    caller_name: str = ""
    caller_known: bool = False  # set by the first dial to a phone, which comes from the caller
    inbound_uniqueid: str = ""
    dial_status: str = ""
    queue: str = ""
    hold_seconds: int | None = None
    abandoned: bool = False
    blind_pending: bool = False  # a BlindTransfer: the next seller to answer takes the call
    blind_from: str | None = None
    # The channel that dialed an answering seller (a Local helper's base name) -> (extension,
    # leg, device): an attended transfer's target is found through it.
    answered_via: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    helpers: dict[str, str] = field(default_factory=dict)  # transfer target channel -> extension
    talkers: list[str] = field(default_factory=list)  # sellers who had the caller, in order
    talking: tuple[str, float] | None = None
    clock_talk: dict[str, float] = field(default_factory=dict)
    queue_talk: dict[str, int] = field(default_factory=dict)
    cdrs: list[tuple[str, str, int]] = field(default_factory=list)  # uniqueid, peer, billsec
    own_talk: int | None = None  # the first channel's billed talk (a seller's own call out)


def local_base(channel: str | None) -> str:
    """``Local/102@internal-00000010`` for either half (``;1``/``;2``) of a Local channel."""
    channel = channel or ""
    return channel.rsplit(";", 1)[0] if channel.upper().startswith("LOCAL/") else channel


def seconds_of(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


def talk_by(call: CallState, seller: Callable[[str], str | None]) -> tuple[
        tuple[tuple[str, int], ...], bool]:
    """Each seller's talk, and whether the PBX counted all of it: the inbound leg's CDR
    segments (or, for a ring group behind a Local channel, every channel's), else the queue's
    TalkTime, else the tracker's clock. ``seller`` maps a CDR peer channel to an extension."""
    segments = [(uniqueid, seller(peer) or call.helpers.get(peer), seconds)
                for uniqueid, peer, seconds in call.cdrs]
    segments = [segment for segment in segments if segment[1]]
    inbound = [segment for segment in segments if segment[0] == call.inbound_uniqueid]
    billed: dict[str, int] = {}
    for _, extension, seconds in inbound or segments:
        billed[extension] = billed.get(extension, 0) + seconds
    talk, counted = [], True
    for extension in call.talkers:
        seconds = billed.get(extension, call.queue_talk.get(extension))
        if seconds is None:
            seconds, counted = round(call.clock_talk.get(extension, 0.0)), False
        talk.append((extension, int(seconds)))
    return tuple(talk), counted
