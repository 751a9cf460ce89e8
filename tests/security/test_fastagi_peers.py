"""A noisy FastAGI peer cannot hold up the calls (issue 13, hole 5).

An allowed peer is trusted, but a buggy one, or a port scanner on an allowed network, opens
connections and sends nothing, or trickles a byte now and then. Asterisk sends its whole
environment block the moment it connects, so such connections never get a worker: they are
closed when their environment is not in within a couple of seconds, one address holds a
capped number of them, and its newest connection always gets in. Meanwhile a real call
(the emulator over real sockets, against the real FastAGI component on each database) is
answered within its budget, and so is the health session the watchdog and ``pbx-crm check``
play from the host itself.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from contextlib import ExitStack, contextmanager

import pytest
from factories import make_pipeline
from telephony import Pbx, RecordingDispatcher, eventually

from pbx_crm.components import start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import transaction
from pbx_crm.telephony.fastagi import FastAgiServer
from pbx_crm.telephony.health import ask_health
from pbx_crm.simulator.agi import FakeChannel, run_fastagi

BUDGET_MS = 500
SCANNER = "127.0.0.3"  # another host on the PBX's network


@pytest.fixture
def funnel(engine):
    with transaction(engine) as session:
        make_pipeline(session)
    return engine


@pytest.fixture
def pbx(funnel, tmp_path):
    pbx = Pbx(funnel, tmp_path, budget_ms=BUDGET_MS, workers=8, db_workers=4)
    yield pbx
    pbx.stop()


@contextmanager
def connections(address, count: int, *, source: str = "127.0.0.1"):
    """``count`` TCP connections to ``address`` that send nothing, oldest first."""
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection(address, timeout=5,
                                                            source_address=(source, 0)))
               for _ in range(count)]


def closed_by_the_server(sock: socket.socket, deadline: float) -> bool:
    """Wait until ``deadline`` for the server to close ``sock``."""
    sock.settimeout(max(0.0, deadline - time.monotonic()))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def still_open(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def assert_answered_in_budget(lookup) -> None:
    assert lookup.variables.get("CRM_STATUS") == "NEW", lookup.variables  # not UNAVAILABLE
    assert lookup.seconds < BUDGET_MS / 1000


def test_a_call_is_answered_in_its_budget_while_300_idle_connections_hold_the_port(pbx):
    with connections(pbx.address, 300):
        lookup = pbx.incoming(pbx.trunk_call(), read_timeout=5)
        health = ask_health(pbx.address, 1.0)

    assert_answered_in_budget(lookup)
    assert health.answered, health.error


def test_140_peers_trickling_a_byte_each_are_dropped_and_a_call_rings_through(pbx):
    stop = threading.Event()

    def trickle(socks):
        while True:
            for sock in socks:
                try:
                    sock.send(b"a")
                except OSError:
                    pass  # dropped by the server
            if stop.wait(0.5):  # a byte every half second: no read ever waits long
                return

    with connections(pbx.address, 140) as socks:
        opened = time.monotonic()
        trickler = threading.Thread(target=trickle, args=(socks,))
        trickler.start()
        try:
            lookup = pbx.incoming(pbx.trunk_call(), read_timeout=5)
            health = ask_health(pbx.address, 1.0)
            deadline = opened + pbx.server.env_timeout + 1.0
            kept = [sock for sock in socks if not closed_by_the_server(sock, deadline)]
        finally:
            stop.set()
            trickler.join(timeout=5)

    assert_answered_in_budget(lookup)
    assert health.answered, health.error
    assert kept == []  # a trickle keeps no connection past the environment's deadline


def test_a_peer_at_its_cap_gives_way_to_its_newest_connection_and_calls_go_on(funnel,
                                                                              tmp_path):
    settings = Settings(data_dir=tmp_path, fastagi_listen=Address("127.0.0.1", 0),
                        database_url=funnel.url.render_as_string(False),
                        hook_budget_ms=BUDGET_MS, fastagi_max_connections_per_peer=20)
    running = start_fastagi(settings, funnel, replay_interval=3600, workers=8, db_workers=4)
    pbx = Pbx(funnel, tmp_path, server_address=running.address)
    try:
        with connections(pbx.address, 50, source=SCANNER) as scan:
            # The 30 oldest are closed as the newer ones come, long before their deadline.
            soon = time.monotonic() + 1.0
            assert all(closed_by_the_server(sock, soon) for sock in scan[:30])
            assert all(still_open(sock) for sock in scan[30:])

            # A call from that very address gets in, in place of its oldest idle connection.
            from_scanner = pbx.incoming(pbx.trunk_call(), read_timeout=5,
                                        source_address=(SCANNER, 0))
            assert closed_by_the_server(scan[30], time.monotonic() + 1.0)
            assert all(still_open(sock) for sock in scan[31:])
            # Other addresses are not touched by that peer's cap.
            from_asterisk = pbx.incoming(pbx.trunk_call("+62 813-2222-0002"), read_timeout=5)
            health = ask_health(pbx.address, 1.0)
    finally:
        running.stop()

    assert_answered_in_budget(from_scanner)
    assert_answered_in_budget(from_asterisk)
    assert health.answered, health.error


def test_under_overload_a_new_call_is_never_queued_behind_older_ones():
    """Past its workers every session still gets a thread of its own: the newest call is
    answered at once while an older overload answer is held up."""
    held_worker, held_overload, release = threading.Event(), threading.Event(), threading.Event()

    class Dispatcher(RecordingDispatcher):
        def overloaded(self, request):
            answer = super().overloaded(request)
            if request.uniqueid == "1795892900.1":
                held_overload.set()
                assert release.wait(10)
            return answer

    def hold(request):
        held_worker.set()
        assert release.wait(10)

    dispatcher = Dispatcher(on_handle=hold)
    server = FastAgiServer(("127.0.0.1", 0), dispatcher, workers=1, overload_sessions=8)
    address = ("127.0.0.1", server.start())
    loop = threading.Thread(target=server.serve_forever)
    loop.start()
    channels = [FakeChannel(uniqueid=f"1795892900.{n}") for n in range(5)]
    calls = [threading.Thread(target=run_fastagi, args=(address, "incoming", [], channel))
             for channel in channels]
    try:
        calls[0].start()
        assert held_worker.wait(5)  # the only worker
        calls[1].start()
        assert held_overload.wait(5)  # an overload answer held up
        for call in calls[2:]:
            call.start()
            call.join(timeout=5)  # answered while the older ones still wait
            assert not call.is_alive()
        assert [c.variables.get("CRM_STATUS") for c in channels[2:]] == ["UNAVAILABLE"] * 3
        release.set()
        for call in calls[:2]:
            call.join(timeout=5)
        assert server.wait_idle(5)
    finally:
        release.set()
        server.shutdown(grace=5)
        loop.join(timeout=5)

    assert [r.uniqueid for r in dispatcher.overloaded_requests] == [
        "1795892900.1", "1795892900.2", "1795892900.3", "1795892900.4"]
    assert channels[1].variables.get("CRM_STATUS") == "UNAVAILABLE"
