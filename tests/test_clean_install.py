"""The wheel installs as shipped and serves: a new machine's first run, in CI.

The wheel is built from a clean copy of the working tree and installed with its dependencies,
under the shipped constraints.txt, into a brand-new venv that has no test packages: whatever
the product needs and forgets to declare is missing there (the test venv would hide it). From
``/``, on a data directory and loopback ports of its own, ``pbx-crm db upgrade`` migrates,
``pbx-crm demo --no-calls`` starts every component, the login page answers, a call played over
FastAGI is answered with the CRM's variables, and SIGTERM stops it all cleanly with no
traceback anywhere in its output.
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

from pbx_crm.simulator.pbx import agi_incoming, inbound_leg, variables_set
from wheels import build_wheel, clean_copy

START = 90.0  # seconds for the demo to serve, on a loaded 2-core CI machine
INSTALL = 600  # seconds for pip, from its cache or from the package index


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pins(requirements: str) -> set[tuple[str, str]]:
    """The ``name==version`` lines of a requirements text, names compared as pip does."""
    return {(re.sub(r"[-_.]+", "-", name).lower(), version)
            for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", requirements,
                                            re.MULTILINE)}


def fresh_venv(where: Path) -> Path:
    """A new venv, with nothing in it but pip; returns its bin folder."""
    venv.EnvBuilder(with_pip=True).create(where)
    return where / "bin"


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without anything pointing at the repository or its venv,
    or at pbx-crm settings; plus ``settings``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PBX_CRM_")
           and key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", **settings)
    return env


class Running:
    """A started command whose stdout and stderr lines are collected as they come. It runs in
    a process group of its own, so that whatever it started can be killed with it."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.popen = subprocess.Popen(argv, cwd="/", env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True)
        self.lines: list[str] = []
        self._arrived: queue.Queue = queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.popen.stdout, self.popen.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            self._arrived.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, condition, *, what: str, timeout: float = START):
        """Return ``condition()`` once it is true. Checked again at every line of output, and
        at least every 0.1 s; fails at the deadline, or at once if the process ends."""
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            if self.popen.poll() is not None:
                raise AssertionError(f"it exited with {self.popen.returncode} before {what}; "
                                     f"its output:\n{self.output}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; output:\n{self.output}")
            try:
                self._arrived.get(timeout=min(left, 0.1))
            except queue.Empty:
                pass
        return result

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd stops a service; its exit code once every output is read."""
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        return code

    def kill(self) -> None:
        """Kill its process group, if anything in it is left (a failed test)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()


def login_page_status(host: str, port: int) -> int | None:
    """The HTTP status of GET /login, or None while nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/login")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def test_the_wheel_installed_with_its_dependencies_migrates_serves_and_answers_a_call(
        tmp_path):
    clock = time.monotonic()
    source = clean_copy(tmp_path / "source")
    wheel = build_wheel(source, tmp_path / "wheel")
    bin_ = fresh_venv(tmp_path / "venv")
    install = subprocess.run(
        [bin_ / "pip", "install", "-q", "-c", source / "constraints.txt", wheel],
        cwd="/", env=environment(), capture_output=True, text=True, timeout=INSTALL)
    assert install.returncode == 0, install.stderr
    check = subprocess.run([bin_ / "pip", "check"], cwd="/", env=environment(),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # The lock is whole: every package the install brought is pinned, at that version.
    freeze = subprocess.run([bin_ / "pip", "freeze", "--exclude", "pbx-crm"], cwd="/",
                            env=environment(), capture_output=True, text=True, check=True)
    assert pins(freeze.stdout) - pins((source / "constraints.txt").read_text()) == set(), \
        "installed but not pinned so: run ./dev.sh lock"
    installed = time.monotonic() - clock

    web, fastagi = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    env = environment(
        PATH=f"{bin_}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(tmp_path / "home"),
        PYTHONUNBUFFERED="1", PBX_CRM_DATA_DIR=str(tmp_path / "data"),
        PBX_CRM_WEB_LISTEN="%s:%d" % web, PBX_CRM_WEB_WORKERS="1",
        PBX_CRM_FASTAGI_LISTEN="%s:%d" % fastagi, PBX_CRM_AMI_PORT=str(free_port()))
    (tmp_path / "home").mkdir()

    upgrade = subprocess.run([bin_ / "pbx-crm", "db", "upgrade"], cwd="/", env=env,
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "Traceback" not in upgrade.stdout + upgrade.stderr

    demo = Running([str(bin_ / "pbx-crm"), "demo", "--no-calls"], env)
    try:
        # Every component is started once the demo says FastAGI is; the web UI serves once
        # a gunicorn worker has booted.
        demo.wait_until(lambda: any(line.startswith("Started fastagi") for line in demo.lines),
                        what="FastAGI server started")
        demo.wait_until(lambda: login_page_status(*web) == 200, what="login page (200)")
        serving = time.monotonic() - clock

        # A caller the CRM has never seen, as the dialplan's lookup asks: the CRM looked the
        # number up and says it is new (UNAVAILABLE would be the answer without the CRM).
        stranger = inbound_leg("PJSIP/trunk-00000001", "1700000000.1", number="081399887766",
                               caller_name="WARUNG BARU")
        answer = variables_set(agi_incoming(fastagi, stranger, "2150001"))
        assert answer.get("CRM_STATUS") == "NEW", answer

        # And the installed call player, as an admin runs it against the demo.
        simulate = subprocess.run(
            [bin_ / "pbx-crm", "simulate", "--calls", "1", "--seed", "1", "--time-scale", "0"],
            cwd="/", env=env, capture_output=True, text=True, timeout=120)
        assert simulate.returncode == 0, simulate.stdout + simulate.stderr
        assert re.search(r"^\[1/1\] call from .* \[(NEW|FOUND|ANONYMOUS)\]", simulate.stdout,
                         re.MULTILINE), simulate.stdout
        assert "UNAVAILABLE 0;" in simulate.stdout, simulate.stdout
        assert "Traceback" not in simulate.stdout + simulate.stderr

        code = demo.terminate()
    finally:
        demo.kill()
    assert code == 0, demo.output
    assert "Traceback" not in demo.output, demo.output
    print(f"installed in {installed:.1f} s, serving at {serving:.1f} s, "
          f"done in {time.monotonic() - clock:.1f} s", file=sys.stderr)
