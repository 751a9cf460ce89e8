"""The FastAGI server, called by the Asterisk emulator over real sockets on 127.0.0.1.

The dispatchers here are plain objects: the server must work with anything that has
``handle(request)`` and ``overloaded(request)``.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest

from pbx_crm.telephony.fastagi import FastAgiServer
from pbx_crm.simulator.agi import FakeChannel, fastagi_env_block, run_fastagi
from telephony import RecordingDispatcher as Dispatcher


@contextmanager
def serving(dispatcher, host="127.0.0.1", **options):
    server = FastAgiServer((host, 0), dispatcher, **options)
    port = server.start()
    loop = threading.Thread(target=server.serve_forever, name="test-fastagi-accept")
    loop.start()
    try:
        yield server, (host, port)
    finally:
        server.shutdown(grace=5)
        loop.join(timeout=5)
        assert not loop.is_alive()


def incoming_call(address, channel, **options):
    args = [channel.extension, channel.callerid or ""]
    return run_fastagi(address, f"incoming?did={channel.extension}", args, channel, **options)


def test_a_known_caller_gets_the_dispatchers_variables_with_hostile_values_intact():
    hostile = {
        "CRM_DEAL_ID": "42",
        "CRM_CONTACT": 'Budi "Bos" Santoso',
        "CRM_COMPANY": "PT Maju (Jakarta)",
        "CRM_PATH": "C:\\crm\\x",
        "CRM_UTF8": "Budi Śantoso ✓",
        "CRM_NOTE": 'x"\nEXEC System reboot\nSET VARIABLE CRM_DEAL_ID 666',
        "CRM_LONG": "y" * 2048,
    }
    dispatcher = Dispatcher(hostile)
    channel = FakeChannel(uniqueid="1795892488.1", extension="2150001")

    with serving(dispatcher) as (server, address):
        transcript = incoming_call(address, channel)
        assert server.wait_idle(5)

    request, = dispatcher.requests
    assert (request.script, request.query) == ("incoming", {"did": "2150001"})
    assert request.args == ("2150001", "+62 812-3456-7890")
    assert request.uniqueid == "1795892488.1"
    assert transcript.agistatus == "SUCCESS"
    assert [command.split(" ", 3)[:3] for command in transcript.commands] == [
        ["SET", "VARIABLE", name] for name in hostile]  # one command per variable, nothing injected
    assert {e.response for e in transcript.exchanges} == {"200 result=1"}
    assert transcript.wire.endswith(b"HANGUP\n")  # the end-of-script notice after the half-close
    assert {name: channel.variables[name] for name in hostile} == {
        **hostile,
        "CRM_NOTE": 'x"EXEC System rebootSET VARIABLE CRM_DEAL_ID 666',
        "CRM_LONG": "y" * 1024,
    }


def test_the_caller_hangs_up_while_the_crm_looks_up_and_the_variables_still_land(caplog):
    channel = FakeChannel(uniqueid="1795892561.29")
    # The caller hangs up while the dispatcher works (scenario 07A): Asterisk sends HANGUP inline.
    variables = {"CRM_DEAL_ID": "42", "CRM_CONTACT": "Budi"}
    dispatcher = Dispatcher(variables, on_handle=lambda request: channel.hangup())
    caplog.set_level(logging.INFO, logger="pbx_crm.telephony.fastagi")

    with serving(dispatcher) as (server, address):
        transcript = incoming_call(address, channel)
        assert server.wait_idle(5)

    assert transcript.agistatus == "HANGUP"
    assert transcript.wire.count(b"HANGUP\n") == 2  # inline, then the end-of-script notice
    assert (channel.variables["CRM_DEAL_ID"], channel.variables["CRM_CONTACT"]) == ("42", "Budi")
    assert "[1795892561.29] the caller hung up during the session" in caplog.text


def test_asterisk_closing_on_hangup_mid_session_costs_no_worker(caplog):
    """AGIEXITONHANGUP=yes: Asterisk drops the session after the inline HANGUP."""
    channel = FakeChannel(uniqueid="1795892561.29")
    dispatcher = Dispatcher({"CRM_A": "1", "CRM_B": "two, words", "CRM_C": "3"})  # 2 commands

    caplog.set_level(logging.INFO, logger="pbx_crm.telephony.fastagi")
    with serving(dispatcher, workers=1) as (server, address):
        dropped = incoming_call(address, channel, hangup_after_commands=1, exit_on_hangup=True)
        assert server.wait_idle(5)
        after = FakeChannel(uniqueid="1795892600.1")
        next_call = incoming_call(address, after)  # the only worker is still alive

    assert dropped.agistatus == "HANGUP"
    assert dropped.commands == ["EXEC MSet CRM_A=1,CRM_C=3"]
    assert "Asterisk ended the session early" in caplog.text
    assert next_call.agistatus == "SUCCESS" and after.variables["CRM_C"] == "3"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_trailing_hangup_after_the_half_close_is_not_taken_for_a_hangup(caplog):
    channel = FakeChannel(uniqueid="1795892488.2", up=True)

    caplog.set_level(logging.DEBUG, logger="pbx_crm.telephony.fastagi")
    with serving(Dispatcher({"CRM_AGENT": "101"})) as (server, address):
        transcript = run_fastagi(
            address, "answered?inbound=1795892488.1", ["1795892488.1"], channel)
        assert server.wait_idle(5)

    assert transcript.wire.endswith(b"200 result=1\nHANGUP\n")
    assert transcript.agistatus == "SUCCESS"
    assert "hung up" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_the_server_refuses_to_listen_beyond_loopback_without_an_allow_list(host):
    with pytest.raises(ValueError, match="allowed_peers"):
        FastAgiServer((host, 4573), Dispatcher())


def test_an_allow_list_opens_other_addresses_and_bad_entries_are_refused():
    pbxes = frozenset({"192.0.2.10", "10.0.0.0/8"})
    assert FastAgiServer(("0.0.0.0", 4573), Dispatcher(), allowed_peers=pbxes)
    with pytest.raises(ValueError, match="allowed_peers"):
        FastAgiServer(("127.0.0.1", 4573), Dispatcher(), allowed_peers=frozenset({"pbx.example"}))
    with pytest.raises(ValueError, match="IP address"):
        FastAgiServer(("pbx.example.com", 4573), Dispatcher())


def test_a_peer_outside_the_allow_list_is_closed_without_being_heard(caplog):
    dispatcher = Dispatcher()
    stranger, known = FakeChannel(uniqueid="1.1"), FakeChannel(uniqueid="1.2")

    caplog.set_level(logging.WARNING, logger="pbx_crm.telephony.fastagi")
    with serving(dispatcher, allowed_peers=frozenset({"127.0.0.2"})) as (server, address):
        refused = incoming_call(address, stranger)  # from 127.0.0.1
        allowed = incoming_call(address, known, source_address=("127.0.0.2", 0))
        assert server.wait_idle(5)

    assert refused.commands == [] and "CRM_DEAL_ID" not in stranger.variables
    assert "connection from 127.0.0.1 refused: not in allowed_peers" in caplog.text
    assert allowed.commands == ['SET VARIABLE CRM_DEAL_ID "42"']
    assert known.variables["CRM_DEAL_ID"] == "42"
    assert [r.uniqueid for r in dispatcher.requests] == ["1.2"]


def test_a_saturated_server_answers_overloaded_at_once_instead_of_queueing():
    entered = threading.Semaphore(0)
    release = threading.Event()

    def busy(request):
        entered.release()
        assert release.wait(10)

    dispatcher = Dispatcher({"CRM_DEAL_ID": "42"}, on_handle=busy)
    channels = [FakeChannel(uniqueid=f"1795892700.{n}") for n in range(3)]

    with serving(dispatcher, workers=2) as (server, address):
        calls = [threading.Thread(target=incoming_call, args=(address, c)) for c in channels[:2]]
        for call in calls:
            call.start()
        assert entered.acquire(timeout=5) and entered.acquire(timeout=5)  # both workers busy

        started = time.monotonic()
        third = incoming_call(address, channels[2])
        waited = time.monotonic() - started

        release.set()
        for call in calls:
            call.join(timeout=5)
        assert server.wait_idle(5)

    assert third.agistatus == "SUCCESS" and channels[2].variables["CRM_STATUS"] == "UNAVAILABLE"
    assert waited < 1.0  # answered, not queued behind the busy workers
    assert [r.uniqueid for r in dispatcher.overloaded_requests] == ["1795892700.2"]
    assert [c.variables.get("CRM_DEAL_ID") for c in channels[:2]] == ["42", "42"]


def test_the_listen_backlog_is_at_least_128():
    if not shutil.which("ss"):
        pytest.skip("needs ss (iproute2) to read the backlog of a listening socket")
    with serving(Dispatcher(), backlog=16) as (_, (host, port)):
        ss = ["ss", "-ltnH", f"sport = :{port}"]
        listing = subprocess.run(ss, capture_output=True, text=True, check=True).stdout

    state, _, send_q, local, *_ = listing.split()
    assert (state, local) == ("LISTEN", f"{host}:{port}")
    assert int(send_q) >= 128  # for a listening socket, ss's Send-Q is the backlog


def test_two_hundred_concurrent_calls_all_complete():
    dispatcher = Dispatcher()
    dispatcher.handle = lambda request: {"CRM_DEAL_ID": request.uniqueid}
    channels = [FakeChannel(uniqueid=f"1795892800.{n}") for n in range(200)]
    start = threading.Barrier(len(channels))
    transcripts = {}

    def call(channel):
        start.wait()
        transcripts[channel.uniqueid] = incoming_call(channel=channel, address=address)

    with serving(dispatcher) as (server, address):
        threads = [threading.Thread(target=call, args=(channel,)) for channel in channels]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert server.wait_idle(5)

    assert sorted(t.agistatus for t in transcripts.values()) == ["SUCCESS"] * 200
    answered = [c for c in channels if c.variables.get("CRM_DEAL_ID") == c.uniqueid]
    overloaded = [c for c in channels if c.variables.get("CRM_STATUS") == "UNAVAILABLE"]
    assert len(answered) + len(overloaded) == 200 and answered


def test_a_dispatcher_that_raises_sets_nothing_and_the_call_goes_on(caplog):
    def fail(request):
        raise RuntimeError("database on fire")

    channel = FakeChannel()
    caplog.set_level(logging.ERROR, logger="pbx_crm.telephony.fastagi")
    with serving(Dispatcher(on_handle=fail)) as (server, address):
        transcript = incoming_call(address, channel)
        assert server.wait_idle(5)

    assert transcript.agistatus == "SUCCESS" and transcript.commands == []
    assert "dispatcher handle() raised" in caplog.text and "database on fire" in caplog.text


def test_a_variable_name_that_cannot_be_sent_is_skipped_and_logged(caplog):
    channel = FakeChannel()
    dispatcher = Dispatcher({"CRM OOPS": "1", "CRM_DEAL_ID": "42"})
    caplog.set_level(logging.ERROR, logger="pbx_crm.telephony.fastagi")
    with serving(dispatcher) as (_, address):
        transcript = incoming_call(address, channel)

    assert transcript.commands == ['SET VARIABLE CRM_DEAL_ID "42"']
    assert "cannot be sent" in caplog.text and "'CRM OOPS'" in caplog.text


def test_a_peer_that_is_not_asterisk_or_says_nothing_is_dropped(caplog):
    dispatcher = Dispatcher()
    caplog.set_level(logging.WARNING, logger="pbx_crm.telephony.fastagi")
    with serving(dispatcher, env_timeout=0.2) as (server, address):
        with socket.create_connection(address, timeout=5) as browser:
            browser.sendall(b"GET / HTTP/1.1\r\nHost: crm\r\n\r\n")
            assert browser.recv(100) == b""
        with socket.create_connection(address, timeout=5) as silent:
            assert silent.recv(100) == b""  # closed after env_timeout
        assert server.wait_idle(5)

    assert dispatcher.requests == []
    assert "AGI protocol error" in caplog.text
    assert "a connection from 127.0.0.1 sent no whole AGI environment within 0.2 s" \
        in caplog.text


def test_shutdown_lets_a_running_session_finish_and_then_refuses_calls():
    entered, release = threading.Event(), threading.Event()
    def busy(request):
        entered.set()
        release.wait(10)

    dispatcher = Dispatcher({"CRM_DEAL_ID": "42"}, on_handle=busy)
    server = FastAgiServer(("127.0.0.1", 0), dispatcher)
    address = ("127.0.0.1", server.start())
    threading.Thread(target=server.serve_forever).start()
    channel = FakeChannel()
    call = threading.Thread(target=incoming_call, args=(address, channel))
    call.start()
    assert entered.wait(5)

    server.stop_accepting()
    later = incoming_call(address, FakeChannel(uniqueid="2.2"))
    stopping = threading.Thread(target=server.shutdown, kwargs={"grace": 5})
    stopping.start()
    release.set()  # the running session ends within the grace time
    call.join(timeout=5)
    stopping.join(timeout=5)

    assert channel.variables["CRM_DEAL_ID"] == "42"
    assert later.agistatus == "FAILURE"  # the port is closed: the dialplan goes on (scenario 09)
    assert not stopping.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("fastagi-")]


def test_the_env_block_the_server_reads_is_the_emulators():
    """The server sees exactly what the emulator (and, per the protocol tests, Asterisk) sends."""
    dispatcher = Dispatcher()
    channel = FakeChannel(callerid=None, calleridname=None, callingpres=67)
    with serving(dispatcher) as (_, address):
        incoming_call(address, channel)

    request, = dispatcher.requests
    block = fastagi_env_block(channel, address, "incoming?did=2150001", ["2150001", ""])
    assert block == "".join(f"{k}: {v}\n" for k, v in request.env.items()).encode() + b"\n"
    assert (request.callerid, request.callingpres, request.args) == ("unknown", 67, ("2150001", ""))
