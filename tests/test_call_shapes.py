"""The emulator's queue calls, transfers and two-device calls are the recorded ones.

Each shape the emulator plays (``pbx_crm.simulator.queue_calls`` and ``transfer_calls``) is
written with the parameters of its capture (10-16 in tests/fixtures/asterisk-captures/ami/) and
compared with it channel by channel: every channel of the call (the inbound leg, each half of
each Local leg) must see the same events in the same order, the bridge and transfer events that
name no channel must come in the same order, and the Cdrs must be the same per channel. The
call tracker must also draw the same conclusions from both. Left out on both sides: VarSet, Newexten and AGIExec* (the dialplan's own steps), the queue's
member-state and QueueStatus answers (not a call's), the Originate's answer, and what the
captures' injection added (the far-end half of ``Local/<DID>@from-trunk``, which stands in for
the trunk, and the caller ID its Originate set on the inbound half before the dialplan ran).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from call_replay import feed_all, summary
from pbx_crm.simulator.ami_calls import ScenarioBuilder
from pbx_crm.simulator.queue_calls import queue_call
from pbx_crm.simulator.transfer_calls import (attended_transfer, blind_transfer,
                                              click_to_call_unanswered, two_devices)
from pbx_crm.telephony.ami_protocol import parse_message, parse_stream, split_stream
from pbx_crm.telephony.call_tracker import CallEnded, CallTracker, DeviceMap

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "ami"
CALLER, NAME = "+62 812-3456-7890", "Budi"
NOT_THE_CALLS = {"VarSet", "Newexten", "AGIExecStart", "AGIExecEnd", "QueueMemberStatus",
                 "QueueParams", "QueueMember", "QueueEntry", "QueueStatusComplete",
                 "OriginateResponse", "FullyBooted", "SuccessfulAuth", "Cdr"}
SUFFIX = re.compile(r"-[0-9a-f]{8}(;[12])?$")


def events(raw: bytes) -> list:
    _, blocks = split_stream(raw)
    return [parse_message(block) for block in blocks if block.startswith(b"Event: ")]


def shape(raw: bytes) -> tuple[dict[str, list[str]], list[str], Counter]:
    """(each channel's events, the channel-less bridge/transfer events, the Cdrs per channel)
    of one call, channels named by role: ``inbound`` for the leg the hangup handler was pushed
    on, others by name without their ``-XXXXXXXX`` suffix (``Local/101@phones;1``)."""
    stream = events(raw)
    inbound = next(e["Channel"] for e in stream if e.get("Event") == "HangupHandlerPush")
    far_end = inbound[:-1] + "1" if "@from-trunk" in inbound else "(none)"

    def role(channel: str) -> str:
        return "inbound" if channel == inbound else SUFFIX.sub(r"\1", channel)

    channels: dict[str, list[str]] = {}
    bridges: list[str] = []
    cdrs: Counter = Counter()
    started = False
    for event in stream:
        name, channel = event.get("Event"), event.get("Channel")
        if name == "Cdr" and channel != far_end:
            cdrs[role(channel), event.get("Disposition")] += 1
        if name in NOT_THE_CALLS or far_end in (channel, event.get("LocalOneChannel")):
            continue
        if channel == inbound and name == "HangupHandlerPush":
            started = True
        if channel == inbound and not started and name != "Newchannel":
            continue  # the injection's caller ID, set before the dialplan ran
        label = name
        if name.startswith("Dial"):
            label += "/" + (event.get("DialStatus") or "")
        elif name == "Newstate":
            label += "/" + event.get("ChannelState", "")
        if channel is None and name.startswith("Dial"):
            channel = event.get("DestChannel")
            if channel == far_end:
                continue
        if channel is None:
            bridges.append(name)
        else:
            channels.setdefault(role(channel), []).append(label)
    return channels, bridges, cdrs


def played(call) -> bytes:
    return b"".join(call.phases.values())


def local_phones() -> ScenarioBuilder:
    return ScenarioBuilder(epoch=1796587769)


def assert_same_shape(call, recorded: bytes) -> None:
    ours, theirs = shape(played(call)), shape(recorded)
    assert sorted(ours[0]) == sorted(theirs[0]), "not the same channels"
    for channel in theirs[0]:
        assert ours[0][channel] == theirs[0][channel], channel
    assert ours[1] == theirs[1], "bridge and transfer events"
    assert ours[2] == theirs[2], "Cdrs"


# Each shape with its capture's parameters (the phones of the captures' README table).
SHAPES = {
    "10-queue-answered": lambda: queue_call(
        local_phones(), CALLER, "2150010", ["101", "102", "103"], "102", caller_name=NAME,
        member_names={ext: f"Seller {ext}" for ext in ("101", "102", "103")}),
    "11-queue-abandoned": lambda: queue_call(
        local_phones(), CALLER, "2150010", ["101", "102", "103"], None, caller_name=NAME,
        ring_seconds=6),
    "12-queue-rrmemory-ringnoanswer": lambda: queue_call(
        local_phones(), CALLER, "2150012", ["101", "102", "103"], "102", queue="sales-rr",
        strategy="rrmemory", member_timeout=3, caller_name=NAME),
    "13-blind-transfer": lambda: blind_transfer(
        local_phones(), CALLER, "2150013", "101", "102", caller_name=NAME),
    "14-attended-transfer": lambda: attended_transfer(
        local_phones(), CALLER, "2150014", "101", "102", caller_name=NAME),
    "15-ring-group-two-devices-one-extension": lambda: two_devices(
        local_phones(), CALLER, "2150015", ["101a", "101b"], "101b", caller_name=NAME),
    "16-callback-outbound-noanswer": lambda: click_to_call_unanswered(
        local_phones(), "101", "081234567890", seller_name=NAME),
}
TWO_DEVICES = {"101a": "101", "101b": "101"}  # 101's desk phone and softphone (capture 15)


@pytest.mark.parametrize("name", SHAPES)
def test_each_channel_of_the_emulated_call_sees_the_recorded_events(name):
    assert_same_shape(SHAPES[name](), (CAPTURES / f"{name}.ami.raw").read_bytes())


@pytest.mark.parametrize("name", SHAPES)
def test_the_call_tracker_concludes_the_same_from_the_emulated_call_as_from_the_recorded(name):
    """Who rang, answered, stopped ringing, took a transferred caller; the call's seller legs,
    queue, hold time and each seller's talk."""
    def conclusions(raw: bytes):
        signals = feed_all(CallTracker(DeviceMap(devices=TWO_DEVICES)),
                           parse_stream(raw)[1])
        (ended,) = [s for s in signals if isinstance(s, CallEnded)]
        return summary(signals), [(getattr(ended, field)) for field in (
            "owner", "legs", "queue", "hold_seconds", "abandoned", "talk_by", "talk_seconds")]

    assert conclusions(played(SHAPES[name]())) == conclusions(
        (CAPTURES / f"{name}.ami.raw").read_bytes())
