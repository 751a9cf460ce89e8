"""Serving the web UI: gunicorn with gevent workers, one process per CPU core.

Why this layout (measured on a 2-core machine): the board page is CPU-bound (rendering is
most of it), so one worker process per core uses every core; push streams (screen-pops) must
hold hundreds of browsers open at once, which an event loop does (gevent reached 500 open
streams in about 50 ms) and a thread per browser does not. gevent workers give both.

psycopg 3 cooperates with gevent when it is imported after the worker has monkey-patched the
standard library: it then waits on the patched ``select.poll`` instead of its C wait loop,
which would block the whole worker during a query. The app is therefore loaded in each
worker (no ``preload_app``), and ``_make_psycopg_cooperative`` fixes the choice up when
psycopg was imported earlier (the master checked the schema over PostgreSQL). SQLite calls
stay blocking; they are short, and a worker per core keeps the others serving.

Behind a reverse proxy, gunicorn believes its ``X-Forwarded-Proto`` only from the addresses of
``web_trusted_proxies`` (its ``forwarded_allow_ips``), the same list the app believes the
proxy's ``X-Forwarded-For`` from (``pbx_crm.web.front_door``); a body too large to read is
answered without being read, and its connection closed (the front door's gunicorn hooks).

``serve_web`` runs gunicorn in the calling process (``pbx-crm web``); ``start_web`` runs it
in a child process for ``pbx-crm serve`` / ``pbx-crm demo``, whose main thread is taken.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import socket
import sys
import time

from ..config import Settings
from ..errors import CrmError

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
# Connections a web worker keeps: its transactions are short. (The default pool is sized for
# the FastAGI server's database workers; every web worker taking as many would add up against
# PostgreSQL's max_connections.)
WEB_POOL_SIZE = 24


def _make_psycopg_cooperative() -> None:
    psycopg_waiting = sys.modules.get("psycopg.waiting")
    gevent_monkey = sys.modules.get("gevent.monkey")
    if psycopg_waiting is None or gevent_monkey is None:
        return
    if gevent_monkey.is_module_patched("select") and psycopg_waiting.wait is getattr(
            psycopg_waiting, "wait_c", None):
        psycopg_waiting.wait = psycopg_waiting.wait_poll
        log.info("psycopg: waiting through gevent's patched poll()")


def workers_for(settings: Settings) -> int:
    return settings.web_workers or os.cpu_count() or 1


def serve_web(settings: Settings) -> None:
    """Run the web UI until SIGTERM or Ctrl-C (gunicorn's master in this process)."""
    from gunicorn.app.base import BaseApplication

    from .front_door import gunicorn_hooks

    class WebApplication(BaseApplication):
        def load_config(self):
            options = {
                "bind": [str(settings.web_listen)],
                "workers": workers_for(settings),
                "worker_class": "gevent",
                "worker_connections": 1000,
                "timeout": 30,
                "graceful_timeout": 10,
                "keepalive": 5,
                "errorlog": "-",
                "loglevel": "info",
                "proc_name": "pbx-crm-web",
                # Set here, not left to gunicorn's FORWARDED_ALLOW_IPS variable: one source.
                "forwarded_allow_ips": ",".join(sorted(settings.web_trusted_proxies)),
                **gunicorn_hooks(settings.web_max_body_kb * 1024),
            }
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self):
            # In the worker, after gevent's monkey-patching.
            _make_psycopg_cooperative()
            from ..db import make_engine
            from pbx_crm.webui import create_app

            app = create_app(settings, make_engine(settings.database, pool_size=WEB_POOL_SIZE))
            keep_startup_objects_out_of_gc()
            return app

    WebApplication().run()


def keep_startup_objects_out_of_gc() -> None:
    """Move what the worker loaded at start (modules, the ORM's mappings, the app) out of
    the garbage collector's sight: they live as long as the worker, and a full collection
    walking them all took tens of milliseconds out of the request it fell in (the board's
    slowest loads)."""
    gc.collect()
    gc.freeze()


class RunningWeb:
    """The web UI in a child process; ``stop()`` ends it as systemd would (SIGTERM)."""

    def __init__(self, process, address):
        self.process, self.address = process, address

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _run_child(settings: Settings) -> None:
    _stop_with_parent()
    serve_web(settings)


def _stop_with_parent() -> None:
    """SIGTERM this process (gunicorn's master: a graceful stop) when the parent dies, even
    by SIGKILL, so no web server is left behind holding the port."""
    import signal
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def start_web(settings: Settings, engine=None) -> RunningWeb:
    """Start the web UI in a child process and wait until it accepts connections."""
    # "spawn": a fresh interpreter, not a fork of a process that already runs threads.
    process = multiprocessing.get_context("spawn").Process(
        target=_run_child, args=(settings,), name="pbx-crm-web", daemon=False)
    process.start()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.web_listen.host,
                                                      settings.web_listen.host)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise CrmError("the web UI could not start on %(listen)s (its error is in the log "
                           "above)", listen=settings.web_listen)
        try:
            with socket.create_connection((host, settings.web_listen.port), timeout=0.5):
                break
        except OSError:
            process.join(0.05)  # waits on the child, not a fixed sleep
    else:
        RunningWeb(process, settings.web_listen).stop()
        raise CrmError("the web UI did not answer on %(listen)s within %(timeout)g s",
                       listen=settings.web_listen, timeout=START_TIMEOUT)
    log.info("web UI on http://%s (%d gevent workers)", settings.web_listen,
             workers_for(settings))
    return RunningWeb(process, settings.web_listen)
