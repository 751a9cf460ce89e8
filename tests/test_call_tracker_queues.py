"""Queues, transfers, a seller on two devices and a click-to-call, as Asterisk 22 recorded them.

Each capture 10-16 (tests/fixtures/asterisk-captures, facts 16-29 of its README) is replayed
byte for byte through the real AMI reader into the call tracker: who rang (once each), who
answered and owns the call, what stopped ringing and why, who took a transferred caller, and how
the call ended: its seller legs, queue, hold time and each seller's talk. A replay runs at one
instant unless the test moves the clock, so the tracker's own timing reads 0 s there; the
queue's and the CDR's counts are the recorded ones.
"""

from __future__ import annotations

import pytest

from call_replay import CAPTURES, capture, feed_all, replay_through_client, summary
from pbx_crm.telephony.call_tracker import (
    Answered,
    CallEnded,
    CallTracker,
    DeviceMap,
    Leg,
    Ringing,
    Transferred,
)

BUDI = "+62 812-3456-7890"
TWO_DEVICES = {"101a": "101", "101b": "101"}  # 101's desk phone and softphone


def rings(*extensions: str) -> list[str]:
    return [f"Ringing {extension} from {BUDI!r} 'Budi'" for extension in extensions]


def ended(owner: str | None) -> str:
    return f"CallEnded owner={owner} caller={BUDI!r} hangup"


def replay_with_clock(tracker: CallTracker, messages, moves) -> list:
    """Feed ``messages`` with the clock at 0 s, moving it to each ``(seconds, event, fields)``
    of ``moves`` in turn, at the first message after the previous move that matches it."""
    signals, now, pending = [], 0.0, list(moves)
    for message in messages:
        if pending:
            seconds, event, fields = pending[0]
            if message.get("Event") == event and all(
                    message.get(key) == value for key, value in fields.items()):
                now = seconds
                pending.pop(0)
        signals += tracker.feed(message, now=now)
    assert not pending
    return signals


# --- queues ---------------------------------------------------------------------------------


def test_a_ring_all_queue_belongs_to_the_member_who_answered_not_the_last_one_rung():
    """10: queue "sales" rings 101, 102 and 103 at once; 102 answers after 2 s, talks 3 s.
    app_queue sends two DialEnd CANCEL to 101 and to 103: each stops ringing once."""
    messages = capture("10-queue-answered")
    cancels = [m for m in messages if m.get("Event") == "DialEnd" and "Channel" in m
               and m.get("DialStatus") == "CANCEL"]
    assert len(cancels) == 4

    signals = feed_all(CallTracker(), messages)

    assert summary(signals) == [*rings("101", "102", "103"), "Answered 102",
                                "StoppedRinging 101 CANCEL", "StoppedRinging 103 CANCEL",
                                ended("102")]
    assert [(s.device, s.queue) for s in signals[:3]] == [("101", "sales"), ("102", "sales"),
                                                          ("103", "sales")]
    assert signals[3] == Answered("1796587769.0", "102", "1796587769.4", BUDI, "Budi",
                                  "1796587769.1", device="102", queue="sales")
    # The inbound leg's Cdrs came after its Hangup: the talk is the queue's AgentComplete count.
    # Only 102's ring has a queue count (AgentConnect RingTime: 2 s).
    assert signals[-1] == CallEnded(
        "1796587769.0", "102", BUDI, "Budi", ("101", "102", "103"), "hangup", "1796587769.1",
        talk_seconds=3, dial_status="",
        legs=(Leg("101", "101", "cancelled", 0.0, False), Leg("102", "102", "answered", 2.0, True),
              Leg("103", "103", "cancelled", 0.0, False)),
        queue="sales", hold_seconds=2, abandoned=False, talk_by=(("102", 3),))


def test_a_caller_who_leaves_the_queue_is_abandoned_with_their_hold_time():
    """11: nobody answers; the caller hangs up after 6 s (QueueCallerAbandon HoldTime 6).
    Each member got two DialEnd CANCEL and stops ringing once; nobody owns the call."""
    signals = feed_all(CallTracker(), capture("11-queue-abandoned"))

    assert summary(signals) == [*rings("101", "102", "103"), "StoppedRinging 101 CANCEL",
                                "StoppedRinging 102 CANCEL", "StoppedRinging 103 CANCEL",
                                ended(None)]
    assert signals[-1] == CallEnded(
        "1796587779.8", None, BUDI, "Budi", ("101", "102", "103"), "hangup", "1796587779.9",
        talk_seconds=None, dial_status="",
        legs=tuple(Leg(extension, extension, "cancelled", 0.0, False)
                   for extension in ("101", "102", "103")),
        queue="sales", hold_seconds=6, abandoned=True, talk_by=())


def test_a_round_robin_member_who_does_not_answer_stops_once_and_the_next_one_owns_the_call():
    """12: queue "sales-rr" rings 101 for 3 s (AgentRingNoAnswer RingTime 3000, in ms), then
    102, who answers after 2 s; the caller waited 6 s. 101's NOANSWER is followed by a CANCEL
    for the same leg: the first wins."""
    signals = feed_all(CallTracker(), capture("12-queue-rrmemory-ringnoanswer"))

    assert summary(signals) == [*rings("101"), "StoppedRinging 101 NOANSWER", *rings("102"),
                                "Answered 102", ended("102")]
    assert signals[3].queue == "sales-rr"
    # Here the inbound leg's Cdrs came before its Hangup: the CDR bills 3 s (AgentComplete: 4).
    assert signals[-1] == CallEnded(
        "1796587789.16", "102", BUDI, "Budi", ("101", "102"), "hangup", "1796587789.17",
        talk_seconds=3, dial_status="",
        legs=(Leg("101", "101", "noanswer", 3.0, False), Leg("102", "102", "answered", 2.0, True)),
        queue="sales-rr", hold_seconds=6, abandoned=False, talk_by=(("102", 3),))


def test_without_the_agent_event_class_the_owner_is_right_but_the_queue_unknown():
    """A session logged in with Events: call,user,cdr misses app_queue's own events (class
    agent): DialEnd still says who answered, but not the queue, its hold time or abandon."""
    for name, owner in [("10-queue-answered", "102"), ("11-queue-abandoned", None),
                        ("12-queue-rrmemory-ringnoanswer", "102")]:
        kept = [m for m in capture(name) if "agent" not in (m.get("Privilege") or "")]
        end = feed_all(CallTracker(), kept)[-1]
        assert (end.owner, end.queue, end.hold_seconds, end.abandoned) == (owner, "", None,
                                                                            False), name


# --- transfers ------------------------------------------------------------------------------


def test_a_blind_transfer_hands_the_caller_from_101_to_102():
    """13: 101 answers; AMI BlindTransfer sends the caller to 102@internal; 102 rings, answers
    and talks. The caller keeps the call's Linkedid and inbound leg throughout."""
    signals = feed_all(CallTracker(), capture("13-blind-transfer"))

    assert summary(signals) == [*rings("101"), "Answered 101", *rings("102"),
                                "Transferred 101 -> 102 blind", ended("102")]
    assert signals[3] == Transferred("1796587804.22", "101", "102", "blind", "1796587808.26",
                                     "1796587804.23", BUDI, "Budi", device="102")
    end = signals[-1]
    assert end.owner == "102"
    assert end.legs == (Leg("101", "101", "answered", 0.0, True),
                        Leg("102", "102", "answered", 0.0, True))
    # The inbound leg's two Cdrs (101: 2 s, 102: 5 s) came after its Hangup: the talk is the
    # tracker's clock, which a replay at one instant reads as 0 s; the PBX counted none of it.
    assert (end.talk_by, end.talk_seconds) == ((("101", 0), ("102", 0)), None)


def test_a_blind_transfer_splits_the_talk_by_the_trackers_clock():
    """13 again, with the clock the capture's header gives: 101 rings 2 s and talks 2 s, then
    102 rings 2 s and talks 3 s until it hangs up."""
    signals = replay_with_clock(CallTracker(), capture("13-blind-transfer"), [
        (2, "DialEnd", {"DialStatus": "ANSWER"}),
        (4, "BlindTransfer", {}),
        (6, "DialEnd", {"DialStatus": "ANSWER"}),
        (9, "Hangup", {"Channel": "Local/102@phones-0000000d;2"}),
    ])
    end = signals[-1]
    assert end.legs == (Leg("101", "101", "answered", 2.0, True),
                        Leg("102", "102", "answered", 2.0, True))
    assert end.talk_by == (("101", 2), ("102", 3))


def test_an_attended_transfer_follows_the_helper_channel_to_the_seller_who_answered():
    """14: 101 answers, puts the caller on hold and calls 102 (Atxfer); 102 answers the
    consultation, 101 hangs up. The AttendedTransfer target is the helper
    Local/102@internal-00000010;1: its other half dialed 102, whose leg is the one named."""
    signals = feed_all(CallTracker(), capture("14-attended-transfer"))

    assert summary(signals) == [*rings("101"), "Answered 101", *rings("102"),
                                "AnswerIgnored 102 (owner 101)",  # the consultation, not the caller
                                "Transferred 101 -> 102 attended", ended("102")]
    assert signals[4] == Transferred("1796587818.28", "101", "102", "attended",
                                     "1796587822.34", "1796587818.29", BUDI, "Budi", device="102")
    end = signals[-1]
    assert end.legs == (Leg("101", "101", "answered", 0.0, True),
                        Leg("102", "102", "answered", 0.0, True))
    # The inbound leg's Cdr segments, both seen before its Hangup: 2 s with 101, then 8 s with
    # the helper channel (the hold during the consultation included), which is 102's.
    assert (end.talk_by, end.talk_seconds) == ((("101", 2), ("102", 8)), 10)


def test_without_the_consultation_dial_the_transfer_target_extension_names_the_seller():
    messages = [m for m in capture("14-attended-transfer")
                if not (m.get("Event") == "DialEnd"
                        and m.get("Channel") == "Local/102@internal-00000010;2")]
    transferred = [s for s in feed_all(CallTracker(), messages) if isinstance(s, Transferred)]
    assert [(s.from_extension, s.to_extension, s.dest_uniqueid) for s in transferred] == [
        ("101", "102", "1796587822.32")]  # TransferTargetExten 102, the helper's leg


# --- one seller, two devices ----------------------------------------------------------------


def test_a_seller_on_two_devices_rings_once_and_the_softphone_answers():
    """15: Dial(Local/101a@phones&Local/101b@phones) rings 101's desk phone and softphone; the
    desk phone is cancelled when the softphone (101b) answers: one pop, no missed ring."""
    signals = feed_all(CallTracker(DeviceMap(devices=TWO_DEVICES)),
                       capture("15-ring-group-two-devices-one-extension"))

    assert summary(signals) == [*rings("101"), "Answered 101", ended("101")]
    assert signals[0] == Ringing("1796587835.36", "101", BUDI, "Budi", "1796587835.40",
                                 "1796587835.37", device="101b")  # 101b rang first
    assert signals[1] == Answered("1796587835.36", "101", "1796587835.40", BUDI, "Budi",
                                  "1796587835.37", device="101b")
    assert signals[-1].dialed == ("101",)
    assert signals[-1].legs == (Leg("101", "101b", "answered", 0.0, True),)


def test_two_devices_ring_for_two_seconds_and_the_seller_talks_three():
    signals = replay_with_clock(
        CallTracker(DeviceMap(devices=TWO_DEVICES)),
        capture("15-ring-group-two-devices-one-extension"), [
            (2, "DialEnd", {"DialStatus": "CANCEL"}),
            (5, "Hangup", {"Channel": "Local/101b@phones-00000014;2"}),
        ])
    end = signals[-1]
    assert (end.legs, end.talk_by) == ((Leg("101", "101b", "answered", 2.0, True),),
                                       (("101", 3),))


def test_without_the_devices_each_one_is_a_seller_of_its_own():
    """What the CRM would say if 101a and 101b were not known as 101's."""
    signals = feed_all(CallTracker(), capture("15-ring-group-two-devices-one-extension"))
    assert summary(signals) == [*rings("101b", "101a"), "StoppedRinging 101a CANCEL",
                                "Answered 101b", ended("101b")]


def test_the_device_map_reads_a_sellers_devices():
    devices = DeviceMap(extensions={"101", "102"}, devices=TWO_DEVICES)
    assert devices("Local/101b@phones-00000014;1") == "101"
    assert devices.device("Local/101b@phones-00000014;1") == "101b"
    assert (devices("PJSIP/101a-0000000a"), devices.device("PJSIP/101a-0000000a")) == ("101",
                                                                                      "101a")
    assert (devices("PJSIP/102-0000000b"), devices.device("PJSIP/102-0000000b")) == ("102", "102")
    assert devices.device("PJSIP/trunk-0000000c") is None
    assert (devices.seller("101b"), devices.seller("102"), devices.seller("0812")) == (
        "101", "102", None)


# --- click-to-call --------------------------------------------------------------------------


def test_a_click_to_call_the_customer_does_not_answer_ends_with_noanswer():
    """16: the CRM originates Local/101@phones into [outbound] 081234567890; the seller
    answers, the customer's phone rings 10 s and Dial gives up. The seller's own leg was
    answered (the Originate's Dial, which pops nothing); the call out was not."""
    signals = feed_all(CallTracker(), capture("16-callback-outbound-noanswer"))

    assert signals == [CallEnded(
        "1796587845.42", None, "081234567890", "Budi", (), "hangup", "",
        talk_seconds=None, dial_status="NOANSWER",
        legs=(Leg("101", "101", "answered", 0.0, True),))]


# --- through the loopback AMI server and the real client ------------------------------------

EXPECTED = {
    "10-queue-answered": [*rings("101", "102", "103"), "Answered 102",
                          "StoppedRinging 101 CANCEL", "StoppedRinging 103 CANCEL", ended("102")],
    "11-queue-abandoned": [*rings("101", "102", "103"), "StoppedRinging 101 CANCEL",
                           "StoppedRinging 102 CANCEL", "StoppedRinging 103 CANCEL", ended(None)],
    "12-queue-rrmemory-ringnoanswer": [*rings("101"), "StoppedRinging 101 NOANSWER",
                                       *rings("102"), "Answered 102", ended("102")],
    "13-blind-transfer": [*rings("101"), "Answered 101", *rings("102"),
                          "Transferred 101 -> 102 blind", ended("102")],
    "14-attended-transfer": [*rings("101"), "Answered 101", *rings("102"),
                             "AnswerIgnored 102 (owner 101)", "Transferred 101 -> 102 attended",
                             ended("102")],
    "15-ring-group-two-devices-one-extension": [*rings("101"), "Answered 101", ended("101")],
    "16-callback-outbound-noanswer": ["CallEnded owner=None caller='081234567890' hangup"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_capture_gives_the_same_signals_through_server_and_client(name):
    """With Events: call,user,cdr,agent (the listener's filter) the client receives all the
    tracker needs: the same signals, queue and legs as the bytes fed directly."""
    raw = (CAPTURES / f"{name}.ami.raw").read_bytes()
    direct = feed_all(CallTracker(DeviceMap(devices=TWO_DEVICES)), capture(name))
    got = replay_through_client(raw, CallTracker(DeviceMap(devices=TWO_DEVICES)),
                                len(EXPECTED[name]), events="call,user,cdr,agent")

    assert summary(got) == summary(direct) == EXPECTED[name]
    end, direct_end = got[-1], direct[-1]
    assert (end.queue, end.hold_seconds, end.abandoned) == (
        direct_end.queue, direct_end.hold_seconds, direct_end.abandoned)
    assert [(leg.extension, leg.device, leg.outcome) for leg in end.legs] == [
        (leg.extension, leg.device, leg.outcome) for leg in direct_end.legs]
