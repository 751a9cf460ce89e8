"""The process-AGI relay ``agi/pbx-crm.agi``, run as Asterisk runs it: a child process started
through its shebang, the environment block on stdin, commands on stdout, SIGHUP on hang-up."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from pbx_crm.telephony.agi_protocol import read_request
from pbx_crm.telephony.fastagi import FastAgiServer, relay_script_path
from pbx_crm.simulator.agi import FakeChannel, fastagi_env_block, run_process_agi
from telephony import RecordingDispatcher as Dispatcher

RELAY = relay_script_path()
BUDGET = 2.0  # the relay's hard cap on one run
# "/usr/bin/env python3" finds this interpreter first, as it finds /usr/bin/python3 on a PBX.
PATH = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def fastagi():
    """Start a FastAGI server for a dispatcher; yields a function returning the relay's env."""
    servers = []

    def start(dispatcher):
        server = FastAgiServer(("127.0.0.1", 0), dispatcher)
        port = server.start()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return {"PATH": PATH, "PBX_CRM_FASTAGI": f"127.0.0.1:{port}"}

    yield start
    for server in servers:
        server.shutdown(grace=5)


def relay(hook, args, channel, env, **options):
    return run_process_agi(RELAY, hook, args, channel, env=env, **options)


def test_the_relay_ships_in_the_package_as_an_executable_script():
    assert RELAY.name == "pbx-crm.agi" and RELAY.parent.name == "agi"
    assert os.access(RELAY, os.X_OK)
    assert RELAY.read_text().startswith("#!/usr/bin/env python3\n")


def test_a_relayed_call_reaches_the_hook_as_a_fastagi_request_and_its_variables_land(fastagi):
    hostile = {
        "CRM_DEAL_ID": "42",
        "CRM_CONTACT": 'Budi "Bos" Santoso',
        "CRM_COMPANY": "PT Maju (Jakarta)",
        "CRM_NOTE": 'x"\nEXEC System reboot',
    }
    dispatcher = Dispatcher(hostile)
    env = fastagi(dispatcher)
    channel = FakeChannel(uniqueid="1795892526.17", extension="2150201")

    transcript = relay("incoming", ["2150201", "+62 812-3456-7890"], channel, env)

    assert (transcript.returncode, transcript.agistatus, transcript.stderr) == (0, "SUCCESS", "")
    assert [c.split(" ", 3)[2] for c in transcript.commands] == list(hostile)
    stored = {name: channel.variables[name] for name in hostile}
    assert stored == {**hostile, "CRM_NOTE": 'x"EXEC System reboot'}
    request, = dispatcher.requests
    assert (request.script, request.args, request.query, request.network) == (
        "incoming", ("2150201", "+62 812-3456-7890"), {}, True)
    assert request.env["agi_request"] == f"agi://{env['PBX_CRM_FASTAGI']}/incoming"
    # Apart from the URL, the hook sees what a direct agi:// call would have given it.
    host, port = env["PBX_CRM_FASTAGI"].split(":")
    args = ["2150201", "+62 812-3456-7890"]
    direct = fastagi_env_block(channel, (host, int(port)), "incoming", args)
    assert request.env == read_request(io.BytesIO(direct)).env


def test_with_the_server_down_the_relay_sets_unavailable_and_exits_at_once():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = FakeChannel()

    started = time.monotonic()
    transcript = relay("incoming", ["2150001", "+62 812-3456-7890"], channel,
                       {"PATH": PATH, "PBX_CRM_FASTAGI": f"127.0.0.1:{port}"})
    elapsed = time.monotonic() - started

    assert transcript.commands == ['SET VARIABLE CRM_STATUS "UNAVAILABLE"']
    assert channel.variables["CRM_STATUS"] == "UNAVAILABLE"
    assert (transcript.returncode, transcript.agistatus) == (0, "SUCCESS")
    assert elapsed < 1.0
    assert "cannot reach the FastAGI server" in transcript.stderr


def test_a_server_that_never_answers_costs_the_call_at_most_the_budget():
    with socket.create_server(("127.0.0.1", 0)) as stuck:  # accepts in the kernel, never replies
        channel = FakeChannel()
        started = time.monotonic()
        transcript = relay("incoming", ["2150001"], channel,
                           {"PATH": PATH, "PBX_CRM_FASTAGI": f"127.0.0.1:{stuck.getsockname()[1]}"})
        elapsed = time.monotonic() - started

    assert channel.variables["CRM_STATUS"] == "UNAVAILABLE" and transcript.returncode == 0
    assert 1.0 < elapsed < BUDGET + 0.3  # + the interpreter's start


def test_the_caller_hangs_up_mid_call_and_the_relay_still_delivers_the_variables(fastagi):
    channel = FakeChannel(uniqueid="1795892570.31")
    # The caller hangs up while the hook works: Asterisk sends the relay SIGHUP (scenario 07B).
    variables = {"CRM_DEAL_ID": "42", "CRM_CONTACT": "Budi"}
    env = fastagi(Dispatcher(variables, on_handle=lambda request: channel.hangup()))

    transcript = relay("incoming", ["2150302", "+62 812-3456-7890"], channel, env)

    assert transcript.hangup_notified and transcript.agistatus == "HANGUP"
    assert b"HANGUP" not in transcript.wire  # process AGI gets a signal, no HANGUP line
    assert transcript.returncode == 0  # not killed by the SIGHUP
    assert (channel.variables["CRM_DEAL_ID"], channel.variables["CRM_CONTACT"]) == ("42", "Budi")


def test_a_call_without_a_hook_name_fails_open(fastagi):
    env = fastagi(Dispatcher({"CRM_DEAL_ID": "42"}))
    channel = FakeChannel()

    transcript = run_process_agi(RELAY, "", [], channel, env=env)

    assert channel.variables["CRM_STATUS"] == "UNAVAILABLE" and transcript.returncode == 0
    assert "hook name" in transcript.stderr


def imported_modules(stderr: str) -> set[str]:
    """Module names in ``-X importtime`` output (the header line names no module)."""
    lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
    return {line.split("|")[-1].strip() for line in lines} - {"package"}


def test_the_relay_imports_only_standard_library_c_modules_beyond_a_bare_start(fastagi):
    env = fastagi(Dispatcher({"CRM_DEAL_ID": "42"}))
    bare = subprocess.run(
        ["/usr/bin/env", "python3", "-X", "importtime", "-c", "pass"],
        env={**os.environ, "PATH": PATH}, capture_output=True, text=True, check=True,
    )
    channel = FakeChannel()

    transcript = relay("incoming", ["2150001"], channel, {**env, "PYTHONPROFILEIMPORTTIME": "1"})

    assert channel.variables["CRM_DEAL_ID"] == "42"  # a full session ran
    extra = imported_modules(transcript.stderr) - imported_modules(bare.stderr)
    assert extra == {"_socket", "select"}
    assert extra <= sys.stdlib_module_names
