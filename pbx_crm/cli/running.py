"""The long-running parts of the product, and the commands that run them: ``pbx-crm serve``
(every built component), ``pbx-crm web`` (the web UI alone, under gunicorn).

The components (web UI, FastAGI server, AMI listener, robots) are listed in ``COMPONENTS``;
``start_components`` starts every one that is built, or the one named (``fastagi``, ``ami``,
``robots`` and ``demo`` call it too), and runs until Ctrl-C or SIGTERM. Before starting, each
of them but ``fastagi`` recounts the reports' daily tables when they count days in another
zone than the company's (``common.ensure_report_zone``), so the reports never meet days of
another zone.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ..config import Settings, parse_setting
from ..db import require_schema_at_head
from ..telephony.health import notify
from .common import SETTINGS, add_command, ensure_report_zone, open_engine, positive


@dataclass(frozen=True)
class Component:
    """A long-running part of the product. ``start(settings, engine)`` returns an object with
    ``stop()``; None means the component is not built yet."""

    name: str
    what: str
    start: Callable[[Settings, Engine], object] | None = None


def _start_fastagi(settings: Settings, engine: Engine):
    from ..components import start_fastagi

    return start_fastagi(settings, engine)


def _start_ami(settings: Settings, engine: Engine):
    from ..components import start_ami

    return start_ami(settings, engine)


def _start_robots(settings: Settings, engine: Engine):
    from ..components import start_robots

    return start_robots(settings, engine)


def _start_web(settings: Settings, engine: Engine):
    from ..web.server import start_web

    return start_web(settings, engine)


# A component that gets built replaces its line here with one that names its starter.
COMPONENTS: list[Component] = [
    Component("web", "the Kanban board in the browser", _start_web),
    Component("fastagi", "the FastAGI server Asterisk asks on every call", _start_fastagi),
    Component("ami", "the AMI listener that follows calls as they ring and end", _start_ami),
    Component("robots", "the scheduler that runs the stage robots", _start_robots),
]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C, or SIGTERM (how systemd stops a service)."""
    signal.signal(signal.SIGTERM, _interrupt)
    threading.Event().wait()


def start_components(settings: Settings, engine: Engine, out, *,
                     only: str | None = None, also: tuple[Callable[[], object], ...] = ()) -> int:
    """Start every built component (or the one named) and run until Ctrl-C; say which are
    not built yet. ``also``: starters of the caller's own parts (the demo's calls), started
    after the components and stopped before them (each returns an object with ``stop()``)."""
    chosen = [c for c in COMPONENTS if only is None or c.name == only]
    ready = [c for c in chosen if c.start is not None]
    missing = [c for c in chosen if c.start is None]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # APScheduler says "running job" and "executed successfully" at every tick; the robots log
    # what they do themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up, at each check
    if missing:
        print("Not built yet:", file=out)
        for component in missing:
            print(f"  {component.name:<8} {component.what}", file=out)
    if not ready:
        print("Nothing to serve yet.", file=out)
        return 0
    if only != "fastagi":
        # Logged (above's configuration) when it recounts. Not for the FastAGI server alone:
        # it starts, and listens at once, even while the database does not answer; it writes
        # moves in whatever zone the tables count, which a later recount counts again.
        ensure_report_zone(settings, engine)
    # From here a SIGTERM stops cleanly, even while the components are still starting.
    signal.signal(signal.SIGTERM, _interrupt)
    running = []
    try:
        for component in ready:
            running.append(component.start(settings, engine))
            print(f"Started {component.name}: {component.what}.", file=out)
        running.extend(start() for start in also)
        notify("READY=1")  # systemd's Type=notify: started, and listening
        _wait_for_interrupt()
    except KeyboardInterrupt:
        pass
    finally:
        notify("STOPPING=1")
        for handle in reversed(running):
            handle.stop()
    return 0


def cmd_serve(args, settings, engine, out) -> int:
    return start_components(settings, engine, out)


def cmd_web(args, settings, engine, out) -> int:
    """gunicorn with gevent workers in this process (see pbx_crm.web.server)."""
    from ..web.server import serve_web, workers_for

    changes = {}
    if args.listen:
        changes["web_listen"] = parse_setting("web_listen", args.listen, "--listen")
    if args.workers is not None:
        changes["web_workers"] = args.workers
    settings = settings.replace(**changes)
    engine = open_engine(settings)
    try:
        require_schema_at_head(engine)
        ensure_report_zone(settings, engine, out)  # once, here, before gunicorn's workers
    finally:
        engine.dispose()
    print(f"Web UI on http://{settings.web_listen} ({workers_for(settings)} gevent workers).",
          file=out, flush=True)
    serve_web(settings)
    return 0


def add_web(commands) -> None:
    command = add_command(
        commands, "web", cmd_web, "run the web UI (the Kanban board) alone",
        description="Serve the web UI at web_listen with gunicorn, one gevent worker process "
                    "per CPU core (or --workers). Put it behind an HTTPS reverse proxy and set "
                    "web_secure_cookies; see \"Production layout\" in the README.",
        needs=SETTINGS)
    command.add_argument("--listen", metavar="HOST:PORT",
                         help="address to listen on (default web_listen, 127.0.0.1:8080)")
    command.add_argument("--workers", type=positive(int, zero=True), metavar="N",
                         help="worker processes (default web_workers; 0: one per core)")


def add_serve(commands) -> None:
    add_command(commands, "serve", cmd_serve,
                "start every built long-running component (web UI, FastAGI, AMI, robots)")
