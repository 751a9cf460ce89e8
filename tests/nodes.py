"""pbx-crm nodes as an admin starts them, for the multi-node test.

Each node is one ``pbx-crm`` command (the venv's console script) in a process group of its
own, on a loopback address of its own (Linux routes all of 127/8 to ``lo``: 127.0.0.2,
127.0.0.3 need no set-up) with a data directory (and so a spool) of its own. ``kill()`` is
``kill -9`` of the node's whole group (gunicorn's master and its worker die together, as
on a machine that fails); ``stop()`` (``stop_all``) is systemd's SIGTERM.

``FailoverStream`` is a signed-in browser's event stream behind a proxy over the web
nodes: when its node dies it waits the stream's ``retry:``, then reconnects, to the first
node that answers, with ``Last-Event-ID``, as ``EventSource`` does.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PBX_CRM = Path(sys.executable).parent / "pbx-crm"  # the console script pip installed


def free_port(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (the nodes of a kind listen on the same one)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((hosts[0], 0))
            port = sock.getsockname()[1]
            try:
                for host in hosts[1:]:
                    with socket.socket() as other:
                        other.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no port free on all of {hosts}")


def wait_until(condition, *, timeout: float, what: str, every: float = 0.05, state=None):
    """Wait until ``condition()`` returns something true, and return it; fail at the
    deadline, saying ``state()`` (how things stand) if given."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s"
                                 + (f": {state()}" if state else ""))
        time.sleep(every)


class Node:
    """``pbx-crm <command...>`` with ``env`` (on top of this process's environment), its
    output in ``<data_dir>/<name>.log``."""

    def __init__(self, name: str, command: list[str], data_dir: Path, env: dict[str, str]):
        self.name, self.command, self.data_dir = name, command, data_dir
        self.env = {**os.environ, "PBX_CRM_DATA_DIR": str(data_dir), **env}
        self.log_path = data_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.killed_at: float | None = None

    def start(self) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PBX_CRM), *self.command], env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if not self.alive:
            raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n"
                                 f"{self.log()[-3000:]}")

    def wait_ready(self, ready, *, timeout: float = 40.0) -> None:
        """Wait until ``ready()`` says yes, failing at once (with the log) if the node exits."""

        def check():
            self.check_alive()
            try:
                return ready()
            except OSError:
                return False

        wait_until(check, timeout=timeout, what=f"{self.name} getting ready", every=0.1)

    def kill(self) -> None:
        """kill -9 of the whole node (its process group)."""
        self.killed_at = time.monotonic()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_all([self])


def stop_all(nodes, *, grace: float = 15.0) -> None:
    """SIGTERM to every node at once (as systemd stops them), then wait; what is left of a
    node's group after ``grace`` seconds is killed. (A web node waits out gunicorn's
    graceful timeout, 10 s, for an event stream whose browser has gone.)"""
    started = [node for node in nodes if node.process is not None]
    for node in started:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for node in started:
        try:
            node.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(node.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(10)


@dataclass
class Connection:
    base: str
    last_event_id: int | None
    at: float  # time.monotonic() when the stream answered
    first_message_at: float | None = None


@dataclass
class FailoverStream:
    """A browser's ``GET /events`` through a proxy over ``bases`` (the web nodes, the
    browser's own first), resumed from ``last_event_id`` (the page's stream position)."""

    bases: list[str]
    cookie: str
    last_event_id: int | None = None
    received: list[dict] = field(default_factory=list)  # id, event, data: in arrival order
    connections: list[Connection] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._http: http.client.HTTPConnection | None = None
        self._retry = 2.0
        self._thread = threading.Thread(target=self._run, name="event-stream", daemon=True)

    def start(self) -> FailoverStream:
        self._thread.start()
        return self

    def ids(self) -> list[int]:
        with self._lock:
            return [message["id"] for message in self.received]

    def close(self) -> None:
        self._stopping.set()
        connection = self._http
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader at once
            except OSError:
                pass
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            for base in self.bases:
                if self._stopping.is_set():
                    return
                try:
                    self._follow(base)
                except (OSError, http.client.HTTPException, ValueError) as error:
                    self.errors.append(f"{base}: {error!r}")
                    continue
                break  # the stream ended: reconnect after the retry, from the first node
            self._stopping.wait(self._retry)

    def _follow(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self._http = connection
        headers = {"Accept": "text/event-stream", "Cookie": self.cookie}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        try:
            connection.request("GET", "/events", headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                raise ValueError(f"the stream answered {response.status}")
            current = Connection(base, self.last_event_id, time.monotonic())
            self.connections.append(current)
            fields: dict = {}
            while True:
                line = response.readline().decode()
                if not line:
                    return  # the node closed the stream (or died)
                line = line.rstrip("\n")
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                    continue
                if "retry" in fields:
                    self._retry = int(fields["retry"]) / 1000
                if "id" in fields and "event" in fields:
                    message = {"id": int(fields["id"]), "event": fields["event"],
                               "data": json.loads(fields["data"]), "base": base,
                               "at": time.monotonic()}
                    with self._lock:
                        self.received.append(message)
                    self.last_event_id = message["id"]
                    if current.first_message_at is None:
                        current.first_message_at = message["at"]
                fields = {}
        finally:
            self._http = None
            connection.close()
