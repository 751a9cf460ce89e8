"""Is the FastAGI server really answering? For an admin, a monitor and systemd's watchdog.

Asterisk waits for a FastAGI server with no read timeout: a server that accepts connections
and never answers holds every call in the AGI step. A refused connection, though, fails open
at once (``AGISTATUS=FAILURE``, the dialplan rings the normal group). So a hung server must
die: under systemd with ``WatchdogSec=``, ``WatchdogFeeder`` pings the watchdog only while an
AGI session through the server's own accept loop and workers (``agi://.../health``) is
answered in time, and systemd kills and restarts a server that stops answering.

``ask_health`` plays Asterisk's side of that one session (the emulator's, faithful to the
recorded transcripts); ``pbx-crm check`` and the feeder both use it. The answer comes from the
dispatcher without touching the database: a database outage is not a hung server.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

HEALTH_SCRIPT = "health"


@dataclass(frozen=True)
class Health:
    """One health session: did the server answer, in how long, and what it said."""

    address: tuple[str, int]
    seconds: float
    variables: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def answered(self) -> bool:
        return self.variables.get("CRM_STATUS") == "OK"

    @property
    def database_up(self) -> bool:
        return self.variables.get("CRM_DATABASE") == "up"


def local_address(listen) -> tuple[str, int]:
    """Where a process on this host reaches the FastAGI server listening at ``listen`` (a
    ``config.Address``): a wildcard address means loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    return host, listen.port


def ask_health(address: tuple[str, int], timeout: float) -> Health:
    """Run ``AGI(agi://host:port/health)`` as Asterisk would, waiting at most ``timeout``."""
    from ..simulator.agi import FakeChannel, run_fastagi

    started = time.monotonic()
    channel = FakeChannel(name="Local/health@pbx-crm-00000000;1", uniqueid=f"health-{started:.3f}",
                          callerid=None, calleridname=None, context="pbx-crm-health")
    try:
        error = run_fastagi(address, HEALTH_SCRIPT, [], channel, read_timeout=timeout).error
    except TimeoutError:
        error = "no answer within the timeout"
    except OSError as failure:  # the server went away in the middle of the session
        error = f"the session broke off: {failure}"
    seconds = time.monotonic() - started
    variables = {name: value for name, value in channel.variables.items()
                 if name.startswith("CRM_")}
    if not error and variables.get("CRM_STATUS") != "OK":
        error = (f"answered CRM_STATUS={variables['CRM_STATUS']}"
                 if variables.get("CRM_STATUS") else "no answer within the timeout")
    return Health(address, seconds, variables, error)


# --- systemd's notification socket (sd_notify(3)): a datagram, no library needed -------------


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``, ...) to systemd; False when not run by
    systemd with a notification socket (then there is nobody to tell)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as error:
        log.warning("could not notify systemd (%s): %s", message, error)
        return False
    return True


def watchdog_seconds() -> float | None:
    """systemd's ``WatchdogSec=`` for this process, or None when no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000


class WatchdogFeeder:
    """Pings systemd's watchdog after each health session answered in time.

    Four sessions per ``WatchdogSec``: one slow answer (a burst of calls filling every worker)
    is not a hung server; a server that stops answering misses every ping and is killed."""

    def __init__(self, address: tuple[str, int], interval: float, timeout: float):
        self.address = address
        self.timeout = timeout
        self.interval = interval / 4
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="fastagi-watchdog-feeder",
                                        daemon=True)

    def start(self) -> WatchdogFeeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.timeout + 1)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            health = ask_health(self.address, self.timeout)
            if health.answered:
                notify("WATCHDOG=1")
                if self._failing:
                    log.info("FastAGI health session answered again: watchdog fed")
            elif not self._failing:
                log.warning("FastAGI health session failed (%s): systemd's watchdog is not "
                            "fed and will restart the server if this lasts", health.error)
            self._failing = not health.answered
            self._stopping.wait(self.interval)
