"""`pbx-crm web` as it runs in production: gunicorn with gevent workers, in a process of its
own, on both databases. The test waits on the server's socket, then signs in and reads the
board over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from factories import PASSWORD, make_deal, make_pipeline, make_user
from pbx_crm.db import transaction
from webtools import Client

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_socket(process, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pbx-crm web exited with {process.returncode}:\n"
                        f"{process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            try:
                process.wait(0.05)  # wakes early if the server dies
            except subprocess.TimeoutExpired:
                pass
    pytest.fail("pbx-crm web did not listen in time")


@pytest.fixture
def web_process(engine, tmp_path):
    port = free_port()
    env = {**os.environ, "PBX_CRM_DATABASE_URL": engine.url.render_as_string(False),
           "PBX_CRM_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pbx_crm", "web", "--listen", f"127.0.0.1:{port}",
         "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        wait_for_socket(process, port)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(20)


def test_pbx_crm_web_serves_the_board_with_gevent_workers(engine, web_process):
    with transaction(engine) as session:
        make_pipeline(session)
        ana = make_user(session, "ana")
        make_deal(session, ana, title="Website redesign")
    url, process = web_process
    client = Client(url)
    assert client.sign_in("ana", PASSWORD).status == 303
    # Several requests: whichever worker answers knows the session (it is in the database).
    for _ in range(4):
        board = client.get("/board")
        assert board.status == 200 and "Website redesign" in board.text
    process.terminate()
    output, _ = process.communicate(timeout=20)
    assert "Using worker: gevent" in output
    assert "Booting worker" in output
