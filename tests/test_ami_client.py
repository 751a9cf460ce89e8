"""The AMI client against the loopback AMI server, over real sockets on 127.0.0.1.

Each test is a situation the CRM meets in production: the login's event filter, two actions in
flight answered out of order, an action that never gets an answer, an Asterisk that stops
answering pings or restarts, a callback that raises or is slow, click-to-call. No sleeps: every
wait is on a queue, an event or the server's condition, with a timeout.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from pathlib import Path

import pytest

from pbx_crm.telephony.ami_client import AmiClient, AmiNotConnected, AmiTimeout
from pbx_crm.telephony.ami_protocol import AmiReader, format_action, parse_stream, split_stream

CAPTURES = Path(__file__).parent / "fixtures" / "asterisk-captures" / "ami"
WAIT = 5.0


@pytest.fixture
def make_client(server):
    clients = []

    def make(**options) -> AmiClient:
        options = {"reconnect_delay": 0.01, "connect_timeout": WAIT, "action_timeout": WAIT,
                   **options}
        client = AmiClient(*server.address, options.pop("username", "crm"),
                           options.pop("secret", "secret"), **options)
        clients.append(client.start())
        return client

    yield make
    for client in clients:
        client.close()


def recorded_events(name: str, classes: set[str] | None = None) -> list[bytes]:
    """The event blocks FakeAmiServer.replay sends, byte for byte, for a class filter."""
    _, blocks = split_stream((CAPTURES / f"{name}.ami.raw").read_bytes())
    kept = []
    for block in blocks:
        message = parse_stream(block)[1][0]
        privilege = message.get("Privilege")
        if (not message.is_event or privilege is None
                or message["Event"] in ("FullyBooted", "SuccessfulAuth")):
            continue
        if classes is None or classes & set(privilege.split(",")):
            kept.append(block)
    return kept


def test_login_sends_the_event_filter_and_only_those_classes_arrive(server, make_client):
    events: queue.Queue = queue.Queue()
    client = make_client(on_event=events.put)
    assert client.wait_connected(WAIT)
    login = server.actions[0]
    assert (login["Action"], login["Username"], login["Events"]) == ("Login", "crm",
                                                                      "call,user,cdr,agent")
    assert client.banner == "Asterisk Call Manager/11.0.0"
    assert events.get(timeout=WAIT)["Event"] == "FullyBooted"
    expected = recorded_events("01-answered", {"call", "user", "cdr", "agent"})
    assert server.replay((CAPTURES / "01-answered.ami.raw").read_bytes()) > len(expected)
    received = [events.get(timeout=WAIT) for _ in expected]
    assert [m["Event"] for m in received] == [parse_stream(b)[1][0]["Event"] for b in expected]
    assert not {m["Event"] for m in received} & {"VarSet", "Newexten", "AGIExecStart"}
    client.ping()  # answered after every replayed byte: the reader has seen them all
    assert client.events_read == len(expected) + 1  # + FullyBooted


def test_the_replay_is_byte_for_byte_what_asterisk_sent(server):
    """A bare socket logged in with Events: on gets exactly the recorded event bytes."""
    sock = socket.create_connection(server.address, WAIT)
    reader = AmiReader.from_socket(sock)
    assert reader.read_banner() == "Asterisk Call Manager/11.0.0"
    sock.sendall(format_action("Login", {"Username": "crm", "Secret": "secret", "Events": "on"},
                               "l-1"))
    assert reader.read_message()["Message"] == "Authentication accepted"
    assert reader.read_message()["Event"] == "FullyBooted"
    raw = (CAPTURES / "06-anonymous.ami.raw").read_bytes()
    expected = b"".join(recorded_events("06-anonymous"))
    server.replay(raw)
    received = b""
    while len(received) < len(expected):
        received += sock.recv(65536)
    sock.close()
    assert received == expected
    assert b"Event: VarSet" in expected and b"ActionID: login-1" not in expected


def test_a_wrong_secret_is_refused_and_retried_with_back_off(server, make_client):
    client = make_client(secret="wrong")
    assert server.wait_until(lambda: server.failed_logins >= 2, WAIT)
    assert not client.connected
    assert "Authentication failed" in client.last_error
    with pytest.raises(AmiNotConnected, match="no AMI session"):
        client.ping()


def test_two_actions_in_flight_are_paired_by_action_id_not_arrival_order(server, make_client):
    client = make_client()
    assert client.wait_connected(WAIT)
    held = server.hold_next("Ping")
    answers: queue.Queue = queue.Queue()
    pinger = threading.Thread(target=lambda: answers.put(client.ping()))
    pinger.start()
    assert held.received.wait(WAIT)
    listing = client.send_action("CoreShowChannels")  # sent second, answered first
    assert answers.empty()
    held.release()
    pinger.join(WAIT)
    pong = answers.get(timeout=WAIT)
    assert pong["Ping"] == "Pong" and pong.action_id == held.message.action_id
    assert listing["EventList"] == "start" and listing.action_id != pong.action_id
    assert listing.events == []  # no channels up


def test_an_unanswered_action_times_out_with_a_clear_error(server, make_client):
    client = make_client()
    assert client.wait_connected(WAIT)
    held = server.hold_next("Ping")
    with pytest.raises(AmiTimeout, match=r"no response to AMI action Ping \(ActionID .+\) "
                                         r"from 127\.0\.0\.1:\d+ within 0\.2 s"):
        client.ping(timeout=0.2)
    held.release()  # the late answer is dropped; the session goes on
    assert client.ping()["Ping"] == "Pong"


def test_a_server_that_stops_answering_pings_is_dropped_and_reconnected(server, make_client):
    connects: queue.Queue = queue.Queue()
    server.answer_pings = False
    client = make_client(ping_interval=0.05, ping_timeout=0.2, on_connect=connects.put)
    assert connects.get(timeout=WAIT) is client
    assert connects.get(timeout=WAIT) is client  # the keepalive gave up and logged in again
    assert server.logins >= 2
    assert any(action["Action"] == "Ping" for action in server.actions)


def test_a_dropped_session_reconnects_and_calls_on_connect_again(server, make_client):
    connects: queue.Queue = queue.Queue()
    client = make_client(on_connect=lambda c: connects.put(len(c.core_show_channels())))
    assert connects.get(timeout=WAIT) == 0
    server.ring_pjsip("+62 812-3456-7890", "2150001", ["101", "102"], stop_after="ringing")
    server.drop_clients()  # as when Asterisk restarts
    assert connects.get(timeout=WAIT) == 3  # on_connect resyncs: trunk leg and two phones
    assert client.connections == 2
    assert client.ping()["Response"] == "Success"


def test_a_callback_that_raises_does_not_stop_dispatch(server, make_client, caplog):
    seen: queue.Queue = queue.Queue()

    def on_event(message):
        if message["Event"] == "FullyBooted":
            raise RuntimeError("a bug in the CRM's handler")
        seen.put(message["Event"])

    make_client(on_event=on_event)
    assert server.wait_until(lambda: server.clients == 1, WAIT)
    with caplog.at_level(logging.ERROR, logger="pbx_crm.telephony.ami_client"):
        call = server.ring_pjsip("+62 812-3456-7890", "2150001", ["101"], answer="101")
        names = [m["Event"] for m in parse_stream(call.data)[1]]
        assert [seen.get(timeout=WAIT) for _ in names] == names
    assert "on_event(FullyBooted) callback failed; dispatch goes on" in caplog.text


def test_a_slow_callback_does_not_block_the_reader(server, make_client):
    release = threading.Event()
    dispatched: queue.Queue = queue.Queue()

    def on_event(message):
        release.wait(WAIT)  # stuck on the very first event (FullyBooted)
        dispatched.put(message)

    client = make_client(on_event=on_event)
    assert client.wait_connected(WAIT)
    replayed = server.replay((CAPTURES / "06-anonymous.ami.raw").read_bytes())
    client.ping()  # its answer follows every replayed event on the socket
    delivered = len(recorded_events("06-anonymous", {"call", "user", "cdr"}))
    assert replayed > delivered > 50
    assert client.events_read == delivered + 1
    assert client.queued_events == delivered  # read and queued, while on_event is stuck
    release.set()
    assert [dispatched.get(timeout=WAIT) for _ in range(delivered + 1)][-1]["Event"] == "Hangup"


def test_originate_is_async_and_its_outcome_is_matched_by_action_id(server, make_client):
    client = make_client()
    assert client.wait_connected(WAIT)
    result = client.originate("PJSIP/101", "0812345678", "from-internal",
                              caller_id='"Budi" <+62 812-3456-7890>',
                              variables={"CRM_DEAL_ID": 42}, channel_id="crm-42.1")
    assert result.response["Message"] == "Originate successfully queued"
    assert result.answered(WAIT)
    outcome = result.wait()
    assert (outcome["Reason"], outcome.action_id, outcome["Uniqueid"]) == (
        "4", result.action_id, "crm-42.1")
    assert outcome["CallerIDNum"] == "+6281234567890"  # as AMI rewrites it (capture 08)
    sent = server.originates[0]
    assert [(key, sent[key]) for key in ("Channel", "Exten", "Context", "Priority", "Async",
                                         "Timeout", "ChannelId")] == [
        ("Channel", "PJSIP/101"), ("Exten", "0812345678"), ("Context", "from-internal"),
        ("Priority", "1"), ("Async", "true"), ("Timeout", "30000"), ("ChannelId", "crm-42.1")]
    assert sent.get_all("Variable") == ["CRM_DEAL_ID=42"]


def test_originate_outcomes_arrive_later_each_to_its_own_action(server, make_client):
    server.originate_outcome = None  # hold the OriginateResponse events
    client = make_client()
    assert client.wait_connected(WAIT)
    first = client.originate("PJSIP/101", "0811111111", "from-internal")
    second = client.originate("PJSIP/102", "0822222222", "from-internal")
    assert not first.outcome.done() and not second.outcome.done()
    server.complete_originate(second.action_id, answered=False)
    server.complete_originate(first.action_id, answered=True)
    assert not second.answered(WAIT)
    assert (second.wait()["Response"], second.wait()["Reason"]) == ("Failure", "0")
    assert first.answered(WAIT)


def test_originate_refuses_values_that_would_inject_or_split(server, make_client):
    client = make_client()
    assert client.wait_connected(WAIT)
    with pytest.raises(ValueError, match="CallerID.*line break"):
        client.originate("PJSIP/101", "0812345678", "from-internal",
                         caller_id='"Budi"\r\nAction: Hangup')
    with pytest.raises(ValueError, match="CRM_CONTACT.*split"):
        client.originate("PJSIP/101", "0812345678", "from-internal",
                         variables={"CRM_CONTACT": "Budi, PT Maju"})
    assert server.originates == []


def test_close_logs_off_and_stops(server, make_client):
    client = make_client()
    assert client.wait_connected(WAIT)
    client.close()
    assert server.actions[-1]["Action"] == "Logoff"
    assert server.wait_until(lambda: server.clients == 0, WAIT)
    assert not client.connected
    assert not any(thread.is_alive() for thread in client._threads)


def test_nothing_listening_means_not_connected_and_retrying():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = AmiClient("127.0.0.1", port, "crm", "secret", reconnect_delay=0.01).start()
    try:
        assert not client.wait_connected(0.1)
        with pytest.raises(AmiNotConnected):
            client.send_action("Ping")
    finally:
        client.close()
