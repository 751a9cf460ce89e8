"""The FastAGI server from its first second, and the guards against a server that hangs.

A reboot where the CRM comes up before PostgreSQL: ``pbx-crm fastagi`` starts all the same,
answers every call ``UNAVAILABLE`` within the budget, spools it, and records it (once, with
its original time) when the database answers. What waiting does not mend (a wrong password,
a missing database, a schema not at head) stops it at once, with a clear error.

Asterisk has no read timeout on FastAGI, so a server that accepts and never answers holds
every call: the server feeds systemd's watchdog only while a health session through its own
accept loop and workers is answered, and ``pbx-crm check`` says the same to an admin.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from factories import make_pipeline
from postgres_databases import new_postgres_database
from sqlmodel import select
from telephony import Pbx, TcpProxy, closed_port, eventually, proxied_engine

from pbx_crm.cli.main import main
from pbx_crm.db import transaction
from pbx_crm.telephony.health import ask_health
from pbx_crm.models import Call
from pbx_crm.simulator.agi import FakeChannel, fastagi_env_block

BUDGET_MS = 500
START_TIMEOUT = 60.0  # seconds a `pbx-crm fastagi` process may take to say READY=1


@pytest.fixture
def systemd(tmp_path):
    """systemd's notification socket, as a service manager listens on it (sd_notify(3))."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(START_TIMEOUT)
    yield sock
    sock.close()


def notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """What the service told systemd, up to and including the message ``until``."""
    sock.settimeout(timeout)
    seen = []
    while until not in seen:
        seen.extend(sock.recv(4096).decode().split("\n"))
    return seen


def fastagi_process(tmp_path: Path, database_url: str, *, notify_socket: Path,
                    watchdog_usec: int | None = None) -> tuple[subprocess.Popen, tuple]:
    """`pbx-crm fastagi` as systemd starts it, with its log in a file."""
    port = closed_port()
    env = {**os.environ, "PBX_CRM_DATA_DIR": str(tmp_path / "data"),
           "PBX_CRM_DATABASE_URL": database_url, "PBX_CRM_FASTAGI_LISTEN": f"127.0.0.1:{port}",
           "PBX_CRM_HOOK_BUDGET_MS": str(BUDGET_MS), "NOTIFY_SOCKET": str(notify_socket)}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    log = open(tmp_path / "fastagi.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "pbx_crm", "fastagi"], env=env,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process, ("127.0.0.1", port)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


# An embedded SQLite database has no server that could be down or refuse a password.
POSTGRES_ONLY = pytest.mark.parametrize(
    "engine", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


# --- the database is down when the server starts -------------------------------------------


@POSTGRES_ONLY
def test_calls_while_the_database_is_down_at_start_are_answered_then_recorded_once(
        engine, tmp_path, systemd):
    with transaction(engine) as session:
        make_pipeline(session)
    database = engine.url
    proxy = TcpProxy((database.host, database.port or 5432))
    proxy.cut()  # PostgreSQL is not up yet
    process, address = fastagi_process(tmp_path, proxy.engine_url(database),
                                       notify_socket=Path(systemd.getsockname()),
                                       watchdog_usec=2_000_000)
    try:
        assert "READY=1" in notifications(systemd, "READY=1", START_TIMEOUT)
        # An outage is not a hung server: the watchdog is fed all the same.
        notifications(systemd, "WATCHDOG=1", 2.0)

        pbx = Pbx(engine, tmp_path, server_address=address)
        played = []
        for n in range(3):
            call = pbx.trunk_call(number=f"+62 813-7700-99{n:02d}", name=f"Caller {n}")
            lookup = pbx.incoming(call)
            hangup = pbx.hangup(call, "NOANSWER")
            assert lookup.variables == {"CRM_STATUS": "UNAVAILABLE"}
            assert lookup.seconds < BUDGET_MS / 1000 and hangup.seconds < BUDGET_MS / 1000
            played.append((call.uniqueid, lookup))
        with transaction(engine, read_only=True) as session:
            assert session.exec(select(Call)).all() == []
        health = ask_health(address, 2.0)
        assert health.variables["CRM_DATABASE"] == "down"
        assert health.variables["CRM_SPOOLED"] == "6"

        proxy.restore()  # PostgreSQL is up
        eventually(lambda: ask_health(address, 2.0).variables.get("CRM_SPOOLED") == "0",
                   timeout=30, what="the spool's replay")
        assert ask_health(address, 2.0).variables["CRM_DATABASE"] == "up"
    finally:
        stop(process)
        proxy.close()

    with transaction(engine, read_only=True) as session:
        recorded = {call.uniqueid: call for call in session.exec(select(Call)).all()}
    assert sorted(recorded) == sorted(uniqueid for uniqueid, _ in played)
    for uniqueid, lookup in played:
        call = recorded[uniqueid]
        assert call.disposition == "missed" and call.deal_id is not None
        # The original time, not the replay's.
        assert lookup.started - timedelta(seconds=1) <= call.ringing_at <= lookup.ended
    log = (tmp_path / "fastagi.log").read_text()
    assert log.count("database unreachable") == 1, log  # said once, not at every retry
    assert "database reachable" in log
    assert "Traceback" not in log


def test_a_database_that_hangs_at_start_costs_the_calls_no_wait(tmp_path, systemd):
    # PostgreSQL's host accepts the connection and never answers (swapping itself to death).
    with socket.create_server(("127.0.0.1", 0)) as hung:
        url = f"postgresql+psycopg://crm:secret@127.0.0.1:{hung.getsockname()[1]}/crm"
        process, address = fastagi_process(tmp_path, url,
                                           notify_socket=Path(systemd.getsockname()))
        try:
            # It answers while its first check of the database still waits.
            eventually(lambda: ask_health(address, 1.0).answered, timeout=START_TIMEOUT,
                       what="the server's first answer")
            pbx = Pbx(None, tmp_path, server_address=address)
            for n in range(3):
                lookup = pbx.incoming(pbx.trunk_call(number=f"+62 813-7700-98{n:02d}"))
                assert lookup.variables == {"CRM_STATUS": "UNAVAILABLE"}
                assert lookup.seconds < BUDGET_MS / 1000
            # Spooled before it was answered, not after a wait on the database.
            assert ask_health(address, 2.0).variables["CRM_SPOOLED"] == "3"
            assert "READY=1" in notifications(systemd, "READY=1", START_TIMEOUT)
        finally:
            stop(process)
    log = (tmp_path / "fastagi.log").read_text()
    assert "database unreachable (connection timeout expired)" in log


@POSTGRES_ONLY
@pytest.mark.parametrize("wrong", ["password", "database"])
def test_a_wrong_password_or_database_name_stops_the_server_at_once(engine, tmp_path, systemd,
                                                                     wrong):
    url = (engine.url.set(password="not-the-password") if wrong == "password"
           else engine.url.set(database="no_such_crm_database"))
    process, _ = fastagi_process(tmp_path, url.render_as_string(False),
                                 notify_socket=Path(systemd.getsockname()))
    assert process.wait(timeout=START_TIMEOUT) == 1
    log = (tmp_path / "fastagi.log").read_text()
    expected = ("password authentication failed" if wrong == "password"
                else 'database "no_such_crm_database" does not exist')
    assert expected in log.splitlines()[-1] and "pbx-crm:" in log.splitlines()[-1]
    assert "Traceback" not in log


def test_a_database_that_is_not_migrated_stops_the_server_at_once(engine, tmp_path, systemd):
    if engine.dialect.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        process, _ = fastagi_process(tmp_path, url, notify_socket=Path(systemd.getsockname()))
        code = process.wait(timeout=START_TIMEOUT)
    else:
        with new_postgres_database("pbx_crm_unmigrated") as empty:
            process, _ = fastagi_process(tmp_path, empty.url.render_as_string(False),
                                         notify_socket=Path(systemd.getsockname()))
            code = process.wait(timeout=START_TIMEOUT)
    assert code == 1
    last = (tmp_path / "fastagi.log").read_text().splitlines()[-1]
    assert last == "pbx-crm: the database is not migrated: run `pbx-crm db upgrade` first"


# --- the server stops --------------------------------------------------------------------


def test_a_stopped_server_leaves_none_of_its_threads_running(engine, tmp_path):
    """The simulator, the demo and the tests start and stop the server in one process."""
    with transaction(engine) as session:
        make_pipeline(session)
    before = set(threading.enumerate())
    pbx = Pbx(engine, tmp_path)
    call = pbx.trunk_call()
    assert pbx.incoming(call).variables["CRM_STATUS"] == "NEW"
    pbx.hangup(call, "NOANSWER")
    pbx.stop()

    eventually(lambda: set(threading.enumerate()) <= before, timeout=5,
               what="the end of the server's threads")


# --- pbx-crm check ------------------------------------------------------------------------


def check(address, capsys) -> tuple[int, str]:
    code = main(["check", "--fastagi", f"{address[0]}:{address[1]}", "--timeout", "2"])
    return code, capsys.readouterr().out


def test_check_says_ok_when_the_server_answers_and_its_database_is_up(engine, tmp_path,
                                                                      capsys):
    pbx = Pbx(engine, tmp_path, budget_ms=BUDGET_MS)
    try:
        code, said = check(pbx.address, capsys)
    finally:
        pbx.stop()
    assert code == 0
    assert said.startswith(f"OK: FastAGI server at 127.0.0.1:{pbx.address[1]} answered in ")
    assert "spool: 0 waiting, 0 set aside; database up" in said


@POSTGRES_ONLY
def test_check_warns_while_the_database_is_down(engine, tmp_path, capsys):
    proxy = TcpProxy((engine.url.host, engine.url.port or 5432))
    pbx = Pbx(proxied_engine(engine, proxy), tmp_path, budget_ms=BUDGET_MS)
    try:
        assert pbx.dispatcher.database.check()
        proxy.cut()
        assert not pbx.dispatcher.database.check()  # as the replayer checks, every round
        code, said = check(pbx.address, capsys)
    finally:
        pbx.stop()
        proxy.close()
    assert code == 1
    assert said.startswith("WARNING: FastAGI server at ")
    assert "database down for " in said and "calls go on without the CRM" in said


def test_check_is_critical_when_no_server_answers(capsys):
    nobody = ("127.0.0.1", closed_port())
    code, said = check(nobody, capsys)
    assert code == 2
    assert said.startswith(f"CRITICAL: the FastAGI server at 127.0.0.1:{nobody[1]} did not "
                           "answer (connecting to")


def test_check_is_critical_when_the_server_accepts_and_never_answers(capsys):
    with socket.create_server(("127.0.0.1", 0)) as hung:  # accepts (the kernel does), never reads
        code, said = check(hung.getsockname(), capsys)
    assert code == 2
    assert "did not answer (no answer within the timeout)" in said


# --- systemd's watchdog -----------------------------------------------------------------


@pytest.fixture
def watchdog(systemd, monkeypatch):
    """systemd's environment for a service with WatchdogSec=0.4 s (a health session every
    0.1 s)."""
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    return systemd


def pings(sock: socket.socket, within: float) -> int:
    """How many WATCHDOG=1 arrive within ``within`` seconds."""
    count, deadline = 0, time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            count += sock.recv(4096).decode().split("\n").count("WATCHDOG=1")
    except TimeoutError:
        pass
    return count


def test_the_watchdog_is_fed_only_while_the_accept_loop_answers(engine, tmp_path, watchdog):
    pbx = Pbx(engine, tmp_path, budget_ms=BUDGET_MS)
    try:
        assert notifications(watchdog, "WATCHDOG=1", 5.0)
        pbx.server.stop_accepting()  # the accept loop is gone, the process lives on
        pings(watchdog, 0.3)  # a health session already under way may still be answered
        assert pings(watchdog, 1.0) == 0
    finally:
        pbx.stop()


def test_the_watchdog_is_not_fed_while_every_worker_is_held(engine, tmp_path, watchdog):
    pbx = Pbx(engine, tmp_path, budget_ms=BUDGET_MS, workers=2)
    try:
        assert notifications(watchdog, "WATCHDOG=1", 5.0)
        # Peers send a request, then say nothing more: the workers wait for their replies (up
        # to io_timeout), until a health session gets the saturated server's answer.
        silent = []

        def every_worker_held() -> bool:
            silent.append(socket.create_connection(pbx.address))
            silent[-1].sendall(fastagi_env_block(FakeChannel(), pbx.address, "health"))
            return ask_health(pbx.address, 1.0).variables.get("CRM_STATUS") == "UNAVAILABLE"

        eventually(every_worker_held, what="every worker held by a silent peer")
        pings(watchdog, 0.3)
        assert pings(watchdog, 1.0) == 0  # health sessions got the saturated answer
        for peer in silent:
            peer.close()
        assert pings(watchdog, 1.0) > 0  # the workers answer again: fed again
    finally:
        pbx.stop()


# --- the units shipped for systemd ----------------------------------------------------------


UNITS = resources.files("pbx_crm.dialplan") / "systemd"
COMMANDS = {"pbx-crm.service": "serve", "pbx-crm-fastagi.service": "fastagi",
            "pbx-crm-web.service": "web", "pbx-crm-ami.service": "ami",
            "pbx-crm-robots.service": "robots"}


def read_unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((UNITS / name).read_text())
    return unit


def test_a_unit_is_shipped_for_serve_and_each_component():
    assert sorted(path.name for path in UNITS.iterdir()) == sorted(COMMANDS)
    for name, command in COMMANDS.items():
        service = read_unit(name)["Service"]
        assert service["ExecStart"] == f"/opt/pbx-crm/bin/pbx-crm {command}"
        assert service["Restart"] == "always" and service["Type"] == "notify"
        assert main([command, "--help"]) == 0


def test_the_processes_that_answer_calls_are_watched_by_systemd():
    for name in ("pbx-crm.service", "pbx-crm-fastagi.service"):
        assert int(read_unit(name)["Service"]["WatchdogSec"]) >= 4


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_finds_nothing_wrong_in_the_units(tmp_path):
    executable = shutil.which("pbx-crm") or str(Path(sys.executable).parent / "pbx-crm")
    for name in COMMANDS:
        text = (UNITS / name).read_text().replace("/opt/pbx-crm/bin/pbx-crm", executable)
        (tmp_path / name).write_text(text)
    verified = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(tmp_path.iterdir()))],
                              capture_output=True, text=True, timeout=60)
    problems = [line for line in (verified.stdout + verified.stderr).splitlines()
                if "pbx-crm" in line]
    assert problems == []
