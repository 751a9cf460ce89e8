"""The one dispatcher between AGI requests and the hooks in ``agi/``.

Both entry points use it: the FastAGI server, and (through the relay script) process AGI. It
owns the database transaction of each hook, and the rule a PBX admin judges us by: a call
never waits on the CRM. Each hook gets a time budget; when the budget runs out, the database
fails, or every database worker is busy, the dispatcher answers ``CRM_STATUS=UNAVAILABLE`` at
once, so the dialplan routes the call normally, and spools the request to replay it later.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .agi_protocol import AgiRequest
from .config import Settings
from .db import transaction
from .models import utcnow
from .spool import Spool

log = logging.getLogger(__name__)

UNAVAILABLE = {"CRM_STATUS": "UNAVAILABLE"}


@dataclass(frozen=True)
class HookContext:
    settings: Settings
    # When Asterisk asked: the replay of a spooled request keeps the original time.
    now: datetime
    replay: bool = False


class HookDispatcher:
    def __init__(self, engine, settings: Settings, spool: Spool, *, hooks=None,
                 workers: int = 8):
        if hooks is None:
            from .agi import HOOKS as hooks
        self.engine = engine
        self.settings = settings
        self.spool = spool
        self.hooks = hooks
        self.budget = settings.hook_budget_ms / 1000
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="crm-hook")
        self._free_workers = threading.BoundedSemaphore(workers)
        self._running = 0  # hooks running on the database workers, spooled or not
        self._running_changed = threading.Condition()
        self._replay_lock = threading.Lock()
        self._stopping = threading.Event()
        self._replayer: threading.Thread | None = None

    # --- the call path ----------------------------------------------------------------------

    def handle(self, request: AgiRequest) -> dict[str, str]:
        received_at = utcnow()
        hook = self.hooks.get(request.script)
        if hook is None:
            log.error("the dialplan asked for an unknown hook %r (known: %s)", request.script,
                      ", ".join(sorted(self.hooks)))
            return dict(UNAVAILABLE)
        key = hook.call_key(request)
        if self.spool.holds_call(key):
            # An earlier request of this call waits in the spool: keep the call's order.
            return self._spool(hook, key, request, received_at, "earlier request spooled")
        if not self._free_workers.acquire(blocking=False):
            return self._spool(hook, key, request, received_at, "all database workers busy")
        future = self._pool.submit(self._run_and_release, hook, request, received_at)
        try:
            return future.result(timeout=self.budget)
        except FutureTimeout:
            # The hook may still finish; the replay then finds its work done (idempotent).
            return self._spool(hook, key, request, received_at,
                               f"over the {self.settings.hook_budget_ms} ms budget")
        except Exception as error:  # noqa: BLE001 - whatever failed, the call goes on
            log.warning("hook %s failed for %s: %r", hook.name, request.uniqueid, error)
            return self._spool(hook, key, request, received_at, repr(error))

    def overloaded(self, request: AgiRequest) -> dict[str, str]:
        hook = self.hooks.get(request.script)
        if hook is None:
            return dict(UNAVAILABLE)
        return self._spool(hook, hook.call_key(request), request, utcnow(), "server saturated")

    def _spool(self, hook, key: str, request: AgiRequest, received_at: datetime,
               reason: str) -> dict[str, str]:
        try:
            self.spool.put(hook.name, key, request.env, received_at, reason)
        except Exception:  # noqa: BLE001 - even a full disk must not hold up the call
            log.exception("could not spool %s for %s", hook.name, request.uniqueid)
        return dict(UNAVAILABLE)

    def _run_and_release(self, hook, request: AgiRequest, received_at: datetime):
        with self._running_changed:
            self._running += 1
        try:
            return self._run(hook, request, received_at, replay=False)
        finally:
            self._free_workers.release()
            with self._running_changed:
                self._running -= 1
                self._running_changed.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no hook runs on a database worker (one that overran its budget may
        still be finishing); False if ``timeout`` ran out first."""
        with self._running_changed:
            return self._running_changed.wait_for(lambda: self._running == 0, timeout)

    def _run(self, hook, request: AgiRequest, received_at: datetime, *, replay: bool):
        context = HookContext(settings=self.settings, now=received_at, replay=replay)
        with transaction(self.engine) as session:
            return hook.run(session, request, context)

    # --- replaying the spool ----------------------------------------------------------------

    def replay_spooled(self, limit: int = 500) -> int:
        """Replay spooled requests in arrival order; stop at the first sign the database is
        still away. Returns how many were replayed."""
        replayed = 0
        with self._replay_lock:
            for item in self.spool.pending(limit):
                if self._stopping.is_set():
                    break  # shutting down: the rest waits in the spool for the next start
                hook = self.hooks.get(item.hook)
                if hook is None:
                    self.spool.failed(item.id, f"unknown hook {item.hook}", retryable=False)
                    continue
                request = AgiRequest.from_env(item.env)
                try:
                    self._run(hook, request, item.received_at, replay=True)
                except OperationalError as error:
                    # The database is still away: try again next round, in the same order.
                    self.spool.failed(item.id, repr(error), retryable=True)
                    break
                except IntegrityError as error:
                    # Most likely the original run committing right now: next round finds its
                    # work done. A clash that stays is a fault, set aside in the end.
                    self.spool.failed(item.id, repr(error), retryable=False)
                    break
                except DBAPIError as error:
                    retryable = bool(error.connection_invalidated)
                    self.spool.failed(item.id, repr(error), retryable=retryable)
                    if retryable:
                        break
                except Exception as error:  # noqa: BLE001 - one bad request must not block
                    log.exception("replaying %s #%s failed", item.hook, item.id)
                    self.spool.failed(item.id, repr(error), retryable=False)
                else:
                    self.spool.done(item.id)
                    replayed += 1
        if replayed:
            log.info("replayed %d spooled request(s)", replayed)
        return replayed

    def start_replayer(self, interval: float = 2.0) -> None:
        def loop():
            while not self._stopping.wait(interval):
                try:
                    self.replay_spooled()
                except Exception:  # noqa: BLE001 - the replayer keeps going
                    log.exception("spool replay round failed")

        self._replayer = threading.Thread(target=loop, name="crm-spool-replayer", daemon=True)
        self._replayer.start()

    def close(self) -> None:
        self._stopping.set()
        if self._replayer:
            self._replayer.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
