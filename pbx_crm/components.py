"""The long-running parts of pbx-crm, each started from settings and an engine.

``pbx-crm serve`` and ``pbx-crm demo`` start every component listed in
``cli.running.COMPONENTS``; ``pbx-crm fastagi``, ``ami``, ``web`` and ``robots`` start one.
Each starter returns an object with ``stop()``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from .telephony.dispatcher import HookDispatcher
from .config import ConfigError, Settings
from .errors import CrmError
from .telephony.fastagi import FastAgiServer
from .telephony.health import WatchdogFeeder, local_address, watchdog_seconds
from .telephony.spool import Spool

log = logging.getLogger(__name__)


@dataclass
class RunningFastAgi:
    server: FastAgiServer
    dispatcher: HookDispatcher
    spool: Spool
    thread: threading.Thread
    feeder: WatchdogFeeder | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address[0], self.server.port

    def stop(self) -> None:
        """Within a few seconds whatever the database does: a session lasts at most its
        budget, and what no hook recorded by then is in the spool."""
        if self.feeder is not None:
            self.feeder.stop()
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.dispatcher.close()
        self.spool.close()


# Seconds the watchdog's health session may take: the answer needs no database, so a second
# is far more than a server that answers at all takes even under a burst of calls.
HEALTH_TIMEOUT = 1.0
# Sessions at once: a session lasts at most the hook budget (500 ms) plus Asterisk's
# replies; a box taking 100 new calls a second, each with three hooks, whose every hook ran
# out its budget would hold about 150.
FASTAGI_WORKERS = 128
# Hooks on the database at once. A hook takes milliseconds, mostly of this interpreter's
# CPU: more workers than this made a burst of 100 calls slower (32 CPU-bound threads kept the
# sessions' threads from answering), not faster (bench/pbx_calls.py --burst).
DATABASE_WORKERS = 8


def start_fastagi(settings: Settings, engine, *, replay_interval: float = 2.0,
                  workers: int = FASTAGI_WORKERS,
                  db_workers: int = DATABASE_WORKERS) -> RunningFastAgi:
    """The FastAGI server with the hook dispatcher and its spool replayer."""
    address = (settings.fastagi_listen.host, settings.fastagi_listen.port)
    spool = Spool(settings.data_dir / "spool.sqlite3")
    dispatcher = HookDispatcher(engine, settings, spool, workers=db_workers)
    allowed_peers = settings.fastagi_allowed_peers
    if allowed_peers:
        # The host itself, so that `pbx-crm check` and the watchdog's health session get in.
        allowed_peers = allowed_peers | {local_address(settings.fastagi_listen)[0]}
    try:
        server = FastAgiServer(
            address, dispatcher, allowed_peers=allowed_peers, workers=workers,
            max_connections_per_peer=settings.fastagi_max_connections_per_peer)
        server.start()
    except (ValueError, OSError) as error:
        dispatcher.close()
        spool.close()
        if isinstance(error, ValueError):
            raise ConfigError("fastagi_listen %(listen)s: %(error)s",
                              listen=settings.fastagi_listen, error=error) from None
        raise CrmError("cannot listen on %(listen)s: %(error)s", listen=settings.fastagi_listen,
                       error=error.strerror or error) from None
    thread = threading.Thread(target=server.serve_forever, name="fastagi", daemon=True)
    thread.start()
    running = RunningFastAgi(server, dispatcher, spool, thread)
    # Listening before the database is checked: calls that come meanwhile are answered (and
    # spooled if need be), not refused.
    if dispatcher.database.check():
        dispatcher.replay_spooled()
    elif dispatcher.database.state == dispatcher.database.REFUSED:
        # A wrong URL, password or schema is no outage: someone has to fix it. (An outage
        # is served from the first second, and the spool replayed once it is over.)
        running.stop()
        raise CrmError(dispatcher.database.reason)
    dispatcher.start_replayer(replay_interval)
    watchdog = watchdog_seconds()
    if watchdog is not None:
        here = (local_address(settings.fastagi_listen)[0], server.port)
        running.feeder = WatchdogFeeder(here, watchdog, timeout=HEALTH_TIMEOUT).start()
        log.info("systemd watchdog: a health session every %.1f s", running.feeder.interval)
    waiting, set_aside = spool.counts()
    log.info("FastAGI listening on %s:%s (%d spooled, %d set aside)", address[0], server.port,
             waiting, set_aside)
    return running


@dataclass
class AmiOff:
    """What ``start_ami`` returns when no AMI host is configured: nothing runs."""

    def stop(self) -> None:
        pass


def start_ami(settings: Settings, engine):
    """The AMI listener (screen-pops as phones ring, who answered, calls that ended). With an
    empty ``ami_host`` it stays off (``serve`` and ``demo`` go on without it); ``pbx-crm ami``
    refuses that before calling here. Asterisk need not be up: the client keeps retrying.
    Several PBXes ([pbx:<name>] sections): one listener per box (``pbx_boxes``)."""
    from .telephony.ami_listener import AmiListener
    from .telephony.pbx_boxes import AmiListeners, several_boxes

    if not settings.pbx_boxes:
        log.warning("AMI listener off: ami_host is empty (set PBX_CRM_AMI_HOST or ami_host in "
                    "the config file to follow calls as they ring)")
        return AmiOff()
    if several_boxes(settings):
        return AmiListeners(engine, settings).start()
    listener = AmiListener(engine, settings).start()
    log.info("AMI listener connecting to %s:%s as %r", settings.ami_host, settings.ami_port,
             settings.ami_username)
    return listener


def start_robots(settings: Settings, engine):
    """The robot scheduler (stage robots and telephony triggers); see
    ``pbx_crm.robots.scheduler``."""
    from .robots.scheduler import start_robot_scheduler

    return start_robot_scheduler(settings, engine)
