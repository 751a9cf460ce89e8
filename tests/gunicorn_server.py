"""`pbx-crm web` as production runs it (gunicorn, gevent workers) in a process of its own, for
the tests that need what only the real server does: its listen backlog, its keep-alive
connections, its forwarded-address setting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def pbx_crm_web(engine, data_dir, *, workers: int = 2, env: dict | None = None):
    """The web UI on a free loopback port, on ``engine``'s database; yields its port."""
    port = free_port()
    environment = {**os.environ, "PBX_CRM_DATABASE_URL": engine.url.render_as_string(False),
                   "PBX_CRM_DATA_DIR": str(data_dir), **(env or {})}
    log = Path(data_dir) / f"web-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pbx_crm", "web", "--listen", f"127.0.0.1:{port}",
             "--workers", str(workers)], env=environment, stdout=output,
            stderr=subprocess.STDOUT)
    try:
        _wait_for_socket(process, port, log)
        yield port
    finally:
        process.terminate()
        process.wait(20)


def _wait_for_socket(process, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pbx-crm web exited with {process.returncode}:\n"
                                 f"{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            try:
                process.wait(0.05)  # wakes early if the server dies
            except subprocess.TimeoutExpired:
                pass
    raise AssertionError("pbx-crm web did not listen in time")
