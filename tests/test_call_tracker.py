"""The call state machine: which seller's phone rings, who answered, when the call is over.

First on the recorded Asterisk 22 calls (Local channels, see the captures' README), then on
PJSIP calls written by the simulator in the same shapes: ring groups, two pick-ups at once,
queues, busy phones, withheld numbers, a reconnect in the middle of a call.
"""

from __future__ import annotations

import queue

import pytest

from call_replay import CAPTURES, WAIT, capture, feed_all, replay_through_client, summary
from pbx_crm.telephony.ami_client import AmiClient
from pbx_crm.telephony.ami_protocol import parse_stream
from pbx_crm.telephony.call_tracker import (
    Answered,
    CallEnded,
    CallTracker,
    DeviceMap,
    Leg,
    Ringing,
)
from pbx_crm.simulator.ami import FakeAmiServer
from pbx_crm.simulator.ami_calls import ScenarioBuilder

BUDI = "+62 812-3456-7890"

ANSWERED_BY_101 = [f"Ringing 101 from {BUDI!r} 'Budi'", "Answered 101",
                   f"CallEnded owner=101 caller={BUDI!r} hangup"]

RECORDED = {
    "01-answered": ANSWERED_BY_101,
    "02-missed": [f"Ringing 102 from {BUDI!r} 'Budi'", "StoppedRinging 102 NOANSWER",
                  f"CallEnded owner=None caller={BUDI!r} hangup"],
    "03-caller-abandons": [f"Ringing 101 from {BUDI!r} 'Budi'", "StoppedRinging 101 CANCEL",
                           f"CallEnded owner=None caller={BUDI!r} hangup"],
    # 103 runs Busy(): it never rings, so no pop, only the outcome.
    "04-busy": ["StoppedRinging 103 BUSY unrung", f"CallEnded owner=None caller={BUDI!r} hangup"],
    "05-process-agi": ANSWERED_BY_101,
    # (A) "anonymous"/"Anonymous", presentation prohibited; (B) no caller ID at all.
    "06-anonymous": ["Ringing 101 from '' 'Anonymous'", "Answered 101",
                     "CallEnded owner=101 caller='' hangup",
                     "Ringing 101 from '' ''", "Answered 101", "CallEnded owner=101 caller='' hangup"],
    # The caller hangs up during the lookup: no Dial, no phone rings, each call still ends.
    "07-caller-hangs-up-during-agi": [f"CallEnded owner=None caller={BUDI!r} hangup"] * 2,
    # Caller ID passed in Originate's CallerID header: AMI stripped the spaces and dashes.
    "08-originate-callerid-header": ["Ringing 101 from '+6281234567890' 'Budi'", "Answered 101",
                                     "CallEnded owner=101 caller='+6281234567890' hangup"],
    "09-fastagi-unreachable": ANSWERED_BY_101,
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_each_recorded_call_gives_its_signals(name):
    tracker = CallTracker()
    signals = feed_all(tracker, capture(name))
    assert summary(signals) == RECORDED[name]
    assert tracker.open_calls == ()


def test_the_recorded_answered_call_names_its_legs_as_the_capture_does():
    """01: Linkedid is the far-end ;1 leg (.0), the inbound leg ;2 (.1) ran the AGI, and Dial's
    leg to phone 101 (.2) is the one that rang and answered."""
    signals = feed_all(CallTracker(), capture("01-answered"))
    ringing, answered, ended = signals
    assert ringing == Ringing("1795892488.0", "101", BUDI, "Budi", "1795892488.2", "1795892488.1",
                              device="101")
    assert answered == Answered("1795892488.0", "101", "1795892488.2", BUDI, "Budi", "1795892488.1",
                                device="101")
    # Its talk as the CDR bills it: the inbound leg's Cdr, whose peer is phone 101. The replay
    # runs at one instant, so the tracker's clock says the phone rang 0 s.
    assert ended == CallEnded("1795892488.0", "101", BUDI, "Budi", ("101",), "hangup",
                              "1795892488.1", talk_seconds=3, dial_status="",
                              legs=(Leg("101", "101", "answered", 0.0, True),),
                              talk_by=(("101", 3),))


def test_the_recorded_calls_give_the_same_signals_without_the_dialplan_and_agi_classes():
    """What a session logged in with Events: call,user,cdr receives is enough."""
    for name, expected in RECORDED.items():
        kept = [m for m in capture(name)
                if not m.is_event or "dialplan" not in (m.get("Privilege") or "")
                and "agi" not in (m.get("Privilege") or "")]
        assert summary(feed_all(CallTracker(), kept)) == expected, name


def test_a_ring_group_of_three_one_answers_the_others_stop_ringing():
    call = ScenarioBuilder().ring_pjsip(BUDI, "2150001", ["101", "102", "103"], answer="102",
                                        caller_name="Budi")
    tracker = CallTracker()
    signals = feed_all(tracker, parse_stream(call.data)[1])
    assert summary(signals) == [
        f"Ringing 101 from {BUDI!r} 'Budi'", f"Ringing 102 from {BUDI!r} 'Budi'",
        f"Ringing 103 from {BUDI!r} 'Budi'", "Answered 102",
        "StoppedRinging 101 CANCEL", "StoppedRinging 103 CANCEL",
        f"CallEnded owner=102 caller={BUDI!r} hangup"]
    # PJSIP: the inbound trunk leg is the first channel, so its Uniqueid is the Linkedid.
    assert {s.inbound_uniqueid for s in signals if hasattr(s, "inbound_uniqueid")} == {
        call.linkedid}
    assert signals[3].dest_uniqueid == call.legs["102"]
    assert signals[-1].dialed == ("101", "102", "103")


def test_two_phones_answering_at_once_leave_one_owner():
    call = ScenarioBuilder().ring_pjsip(BUDI, "2150001", ["101", "102", "103"], answer="103",
                                        also_answer=["101"])
    signals = feed_all(CallTracker(), parse_stream(call.data)[1])
    assert [line for line in summary(signals) if "Answer" in line] == [
        "Answered 103", "AnswerIgnored 101 (owner 103)"]
    assert signals[-1].owner == "103"


@pytest.mark.parametrize("options, outcome", [
    ({"answer": None}, ["StoppedRinging 101 NOANSWER", "StoppedRinging 102 NOANSWER"]),
    ({"answer": None, "abandon": True}, ["StoppedRinging 101 CANCEL", "StoppedRinging 102 CANCEL"]),
], ids=["nobody-answers", "caller-gives-up"])
def test_a_call_nobody_answers(options, outcome):
    call = ScenarioBuilder().ring_pjsip(BUDI, "2150001", ["101", "102"], **options)
    lines = summary(feed_all(CallTracker(), parse_stream(call.data)[1]))
    assert lines[2:] == [*outcome, f"CallEnded owner=None caller={BUDI!r} hangup"]


def test_a_busy_phone_never_rings_the_other_answers():
    call = ScenarioBuilder().ring_pjsip(BUDI, "2150001", ["101", "103"], answer="101",
                                        busy=["103"])
    assert summary(feed_all(CallTracker(), parse_stream(call.data)[1])) == [
        "StoppedRinging 103 BUSY unrung", f"Ringing 101 from {BUDI!r} ''", "Answered 101",
        f"CallEnded owner=101 caller={BUDI!r} hangup"]


def test_queue_members_ring_once_each_through_their_local_legs():
    """Local/<ext>@from-queue-...;1 is dialed, its ;2 half dials PJSIP/<ext>: two hops, one pop."""
    call = ScenarioBuilder().ring_pjsip(BUDI, "2150001", ["101", "102"], answer="101",
                                        queue=True)
    assert b"Local/101@from-queue-" in call.data
    assert summary(feed_all(CallTracker(), parse_stream(call.data)[1])) == [
        f"Ringing 101 from {BUDI!r} ''", f"Ringing 102 from {BUDI!r} ''", "Answered 101",
        "StoppedRinging 102 CANCEL", f"CallEnded owner=101 caller={BUDI!r} hangup"]


def test_a_withheld_number_rings_with_an_empty_caller_number():
    call = ScenarioBuilder().ring_pjsip("", "2150001", ["101"], answer="101")
    assert b"CallerIDNum: <unknown>" in call.data
    ringing = feed_all(CallTracker(), parse_stream(call.data)[1])[0]
    assert (ringing.caller_number, ringing.caller_name) == ("", "")


def test_resync_from_the_recorded_channel_list_then_the_call_ends():
    """01 took a CoreShowChannels mid-call: a tracker that starts from that list alone (as after
    a reconnect) emits nothing for the call in progress and ends it with the last hangup."""
    messages = capture("01-answered")
    listing = [m for m in messages if m.get("ActionID") == "csc-1" and m.is_event]
    after = messages[messages.index(listing[-1]) + 1:]
    tracker = CallTracker()
    assert tracker.resync(listing, now=0) == []
    assert tracker.open_calls == ("1795892488.0",)
    signals = feed_all(tracker, after)
    assert summary(signals) == [f"CallEnded owner=None caller={BUDI!r} hangup"]
    assert signals[0].linkedid == "1795892488.0"
    assert tracker.open_calls == ()


def test_resync_keeps_known_ringing_quiet_and_ends_calls_that_vanished():
    builder = ScenarioBuilder()
    ringing = builder.ring_pjsip(BUDI, "2150001", ["101", "102"], stop_after="ringing")
    vanished = builder.ring_pjsip(BUDI, "2150002", ["103"], stop_after="ringing")
    tracker = CallTracker()
    assert len(feed_all(tracker, parse_stream(ringing.data + vanished.data)[1])) == 3
    with FakeAmiServer() as server:
        server.replay(ringing.data)  # the server's channel list: only the first call is up
        listing = _core_show_channels(server)
    signals = tracker.resync(listing, now=1)
    assert summary(signals) == ["StoppedRinging 103 UNKNOWN",
                                f"CallEnded owner=None caller={BUDI!r} gone"]
    assert tracker.open_calls == (ringing.linkedid,)


def _core_show_channels(server: FakeAmiServer) -> list:
    client = AmiClient(*server.address, "crm", "secret", reconnect_delay=0.01).start()
    try:
        assert client.wait_connected(WAIT)
        return client.core_show_channels()
    finally:
        client.close()


def test_a_call_answered_during_a_reconnect_is_resynced_and_ends():
    """Through the real client and the fake server: 101 and 102 ring, the AMI link drops, 102
    answers while we are away, the client logs in again and resyncs, then the call hangs up."""
    signals: queue.Queue = queue.Queue()
    tracker = CallTracker()

    def on_event(message):
        for signal in tracker.feed(message):
            signals.put(signal)

    def on_connect(client):
        signals.put("connected")
        for signal in tracker.resync(client.core_show_channels()):
            signals.put(signal)

    def next_lines(count):
        return summary([signals.get(timeout=WAIT) for _ in range(count)])

    with FakeAmiServer() as server:
        call = server.scenarios.ring_pjsip(BUDI, "2150001", ["101", "102"], answer="102")
        client = AmiClient(*server.address, "crm", "secret", on_event=on_event,
                           on_connect=on_connect, reconnect_delay=0.01).start()
        try:
            assert signals.get(timeout=WAIT) == "connected"
            server.replay(call.phases["ringing"])
            assert next_lines(2) == [f"Ringing 101 from {BUDI!r} ''", f"Ringing 102 from {BUDI!r} ''"]
            login = server.hold_next("Login")  # keep the client out while the call is answered
            server.drop_clients()
            assert login.received.wait(WAIT)
            server.replay(call.phases["answer"])
            login.release()
            assert signals.get(timeout=WAIT) == "connected"
            assert next_lines(2) == ["StoppedRinging 101 UNKNOWN", "Answered 102"]
            server.replay(call.phases["end"])
            assert next_lines(1) == [f"CallEnded owner=102 caller={BUDI!r} hangup"]
            assert tracker.open_calls == ()
        finally:
            client.close()


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_replayed_capture_gives_the_same_signals_through_server_and_client(name):
    """The replay is faithful: a capture through FakeAmiServer, AmiClient (Events:
    call,user,cdr) and the tracker gives what its bytes fed directly give."""
    raw = (CAPTURES / f"{name}.ami.raw").read_bytes()
    got = replay_through_client(raw, CallTracker(), len(RECORDED[name]))
    assert summary(got) == RECORDED[name]


def test_calls_are_dropped_when_finished_or_silent_for_two_hours():
    builder = ScenarioBuilder()
    tracker = CallTracker()
    for n in range(50):
        feed_all(tracker, parse_stream(builder.ring_pjsip(BUDI, "2150001", ["101"],
                                                          answer="101").data)[1], now=n)
    assert tracker.open_calls == ()
    stuck = builder.ring_pjsip(BUDI, "2150001", ["101"], answer="101", stop_after="answer")
    feed_all(tracker, parse_stream(stuck.data)[1], now=100)
    assert tracker.open_calls == (stuck.linkedid,)
    assert tracker.expire(now=100 + 7199) == []
    assert summary(tracker.expire(now=100 + 7201)) == [
        f"CallEnded owner=101 caller={BUDI!r} expired"]
    # Its late events do not bring it back.
    assert feed_all(tracker, parse_stream(stuck.rest)[1], now=7400) == []
    assert tracker.open_calls == ()


def test_events_with_only_dest_fields_belong_to_an_originate_and_are_ignored():
    originate_dial = [m for m in capture("01-answered")
                      if m.get("Event") in ("DialBegin", "DialState", "DialEnd")
                      and "Channel" not in m]
    assert len(originate_dial) == 3
    assert feed_all(CallTracker(), originate_dial) == []


def test_device_map_reads_channel_names_and_never_guesses_from_length():
    default = DeviceMap()
    assert default("PJSIP/101-0000000a") == "101"
    assert default("SIP/alice-00000001") == "alice"
    assert default("Local/101@phones-00000001;1") == "101"
    assert default("Local/102@from-queue-0000001f;2") == "102"
    assert default("Local/2150001@from-trunk-00000000;2") is None
    assert default("DAHDI/1-1") is None
    configured = DeviceMap({"desk-101": "101", "desk-102": "102"})
    assert configured("PJSIP/desk-101-0000000a") == "101"
    assert configured("PJSIP/trunk-0000000b") is None  # the trunk is not a phone
    assert configured("PJSIP/5551234-0000000c") is None  # short number, still not ours
    sellers = DeviceMap(extensions={"101"})
    assert sellers("Local/101@from-internal-00000002;1") == "101"
    assert sellers("Local/0812345678@from-internal-00000003;1") is None  # an outside number
    tracker = CallTracker({"desk-101": "101"})
    call = ScenarioBuilder(trunk="trunk").ring_pjsip(BUDI, "2150001", ["desk-101"],
                                                     answer="desk-101")
    assert summary(feed_all(tracker, parse_stream(call.data)[1]))[:2] == [
        f"Ringing 101 from {BUDI!r} ''", "Answered 101"]
