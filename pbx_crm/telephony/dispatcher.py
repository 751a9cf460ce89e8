"""The one dispatcher between AGI requests and the hooks in ``pbx_crm.agi``.

Both entry points use it: the FastAGI server, and (through the relay script) process AGI. The
rule a PBX admin judges us by: a call never waits on the CRM, and nothing answered is lost.
So a request takes this one path, under one deadline counted from when Asterisk connected:

1. The session's thread queues the hook for the database workers and waits, at most until
   the deadline (the only way to bound a database that hangs instead of failing), which comes
   ``ANSWER_RESERVE_S`` before the budget runs out: time to spool and answer.
2. A worker runs the hook's ``run`` in one transaction and commits; the session answers with
   what it returned. A hook with an ``answer`` (``incoming``: the call waits for its lookup,
   not for the recording) has it read first, on a connection that never queues for the write
   lock; the request is written to the spool, ``in_flight``, the answer given, and the
   recording queued behind what calls wait for now; once it commits, the row goes.
3. A request with no answer in time, or whose hook failed, is spooled and answered
   ``CRM_STATUS=UNAVAILABLE``, so the dialplan routes the call normally.

What Asterisk was answered is thus in the database or in the durable spool before the answer
leaves. A worker the deadline left behind may still commit: the replay of its spooled request
then finds the work done (hooks are idempotent). A database that was away at its last check,
or a call whose earlier request waits in the spool, is spooled at once, in the call's order.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..config import Settings
from ..db import (DatabaseAway, autocommit_reader, call_path_engine, check_database,
                  close_hung_connections, fresh_connection_engine, transaction)
from ..errors import CrmError
from ..funnel.calls import CallNotRecorded
from ..models import utcnow
from .agi_protocol import AgiRequest
from .health import HEALTH_SCRIPT
from .spool import Spool

log = logging.getLogger(__name__)

UNAVAILABLE = {"CRM_STATUS": "UNAVAILABLE"}
A_CALL_WAITS, A_RECORDING = 0, 1  # the database workers' priorities
# Hooks queued beyond this are spooled at once: memory stays bounded while the database hangs.
QUEUE_LIMIT = 2000
ANSWER_RESERVE_S = 0.1
# A database connection busy this long is hung (the statement timeout is shorter): its socket
# is closed, so its worker comes back and the connection is never handed out again.
HUNG_AFTER_S = 5.0
# How long a spooled request waits for its call to be recorded (by another node, which may be
# down for a while with the call's lookup in its own spool) before it is dropped.
AWAIT_CALL_S = 3600


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (a ``time.monotonic()`` reading), never negative."""
    return max(0.0, deadline - time.monotonic())


@dataclass(frozen=True)
class HookContext:
    settings: Settings
    # When Asterisk asked: the replay of a spooled request keeps the original time.
    now: datetime
    replay: bool = False
    # What the hook's answer learnt, for its ``run`` not to read it again.
    memo: dict = field(default_factory=dict)


class DatabaseWatch:
    """Whether the database answers with the schema this version needs, as last checked.

    Checked at start and then before each round of the spool's replay, so the replay waits
    for a database that answers (a FastAGI server may start before its database does), and
    the health answer can say how the database is without touching it. Each change is said
    once in the log, not at every round."""

    UP, DOWN, REFUSED = "up", "down", "refused"

    def __init__(self, engine):
        self.engine = engine
        self.state = self.DOWN
        self.reason = "not checked yet"
        self.since = time.monotonic()

    @property
    def up(self) -> bool:
        return self.state == self.UP

    def check(self) -> bool:
        """Check now (one round trip); True if the database is up."""
        try:
            check_database(self.engine)
        except DatabaseAway as away:
            self._became(self.DOWN, str(away))
        except CrmError as error:
            self._became(self.REFUSED, error.message)
        else:
            self._became(self.UP, "")
        return self.up

    def _became(self, state: str, reason: str) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        if state == self.UP:
            log.info("database reachable: calls are recorded, the spool is replayed")
        elif state == self.DOWN:
            log.warning("database unreachable (%s): calls are answered UNAVAILABLE and "
                        "spooled; retrying in the background", reason)
        else:
            log.error("database refused (%s): calls are answered UNAVAILABLE and spooled "
                      "until this is fixed", reason)
        if state != self.state:
            self.since = time.monotonic()
        self.state, self.reason = state, reason


class HookDispatcher:
    def __init__(self, engine, settings: Settings, spool: Spool, *, hooks=None,
                 workers: int = 32):
        if hooks is None:
            from ..agi import HOOKS as hooks
        self._given_engine = engine
        self.engine = call_path_engine(engine)
        # Answers only read (on SQLite they must never queue for the write lock), a
        # statement or two each consistent on its own: no transaction around them.
        self._reader = autocommit_reader(self.engine)
        self.settings = settings
        self.spool = spool
        self.hooks = hooks
        self.budget = settings.hook_budget_ms / 1000
        # The database work stops this much short of the budget: the spool write and the
        # answer's round trips with Asterisk fit in what is left, even on a busy machine.
        self.work_time = self.budget - min(ANSWER_RESERVE_S, self.budget / 4)
        # Database workers: daemon threads, so that one stuck on a hung database never holds
        # up the process's exit.
        # What the calls wait for (answers, hooks the call waits on) first; then the
        # recordings that follow an answer, and the replays. In arrival order within each.
        # Recordings held on a lock never take the last two workers: a lookup arriving then
        # still gets its answer.
        self._jobs: list = []  # a heap of (priority, arrival, job)
        self._jobs_changed = threading.Condition()
        self._order = itertools.count()
        self._recordings, self._recordings_limit = 0, max(1, workers - 2)
        self._running = 0  # hooks on the database workers, answered or left behind
        self._running_changed = threading.Condition()
        self._stopping = threading.Event()
        for n in range(workers):
            threading.Thread(target=self._work, name=f"crm-hook-{n}", daemon=True).start()
        self._replay_lock = threading.Lock()
        self._replayer: threading.Thread | None = None
        self.database = DatabaseWatch(fresh_connection_engine(engine))

    # --- the call path ----------------------------------------------------------------------

    def handle(self, request: AgiRequest) -> dict[str, str]:
        received_at = utcnow()
        # Counted from when Asterisk connected: the call has waited since then.
        deadline = (request.arrived or time.monotonic()) + self.work_time
        hook = self.hooks.get(request.script)
        if hook is None:
            if request.script == HEALTH_SCRIPT:
                return self.health()
            log.error("the dialplan asked for an unknown hook %r (known: %s)", request.script,
                      ", ".join(sorted(self.hooks)))
            return dict(UNAVAILABLE)
        key = hook.call_key(request)
        if not self.database.up:
            # Away at its last check (or not checked yet, at start): no answer would come
            # back within the budget.
            return self._spool(hook, key, request, received_at, "database "
                               f"{self.database.state}: {self.database.reason}")
        self.spool.wait_in_flight(key, _left(deadline))
        if self.spool.holds_call(key):
            return self._spool(hook, key, request, received_at, "earlier request spooled")
        answer = Future()
        context = HookContext(settings=self.settings, now=received_at)
        if not self._submit(A_CALL_WAITS, hook, request, context, answer=answer):
            return self._spool(hook, key, request, received_at, "database work queue full")
        try:
            return answer.result(timeout=_left(deadline))
        except TimeoutError:
            answer.cancel()  # not started yet: it never will be
            return self._spool(hook, key, request, received_at,
                               f"over the {self.settings.hook_budget_ms} ms budget")
        except Exception as error:  # noqa: BLE001 - whatever failed, the call goes on
            log.warning("hook %s failed for %s: %r", hook.name, request.uniqueid, error)
            return self._spool(hook, key, request, received_at, repr(error))

    def _submit(self, priority: int, hook, request: AgiRequest, context: HookContext, *,
                answer: Future | None = None, recorded: Future | None = None,
                in_flight: int | None = None) -> bool:
        """Queue a hook for the database workers; False if the queue is full."""
        with self._jobs_changed:
            if len(self._jobs) >= QUEUE_LIMIT:
                return False
            with self._running_changed:
                self._running += 1
            heapq.heappush(self._jobs, (priority, next(self._order),
                                        (hook, request, context, answer, recorded, in_flight)))
            self._jobs_changed.notify()
        return True

    def _work(self) -> None:
        """A database worker: what a call waits for first, then the recordings. It ends
        once the dispatcher is closed (a recording still queued then is in the spool)."""
        while True:
            with self._jobs_changed:
                self._jobs_changed.wait_for(lambda: self._stopping.is_set() or self._jobs and (
                    self._jobs[0][0] == A_CALL_WAITS
                    or self._recordings < self._recordings_limit))
                if self._stopping.is_set():
                    return
                priority, _, job = heapq.heappop(self._jobs)
                recording = priority == A_RECORDING
                self._recordings += recording
            try:
                self._run(*job)
            finally:
                with self._jobs_changed:
                    self._recordings -= recording
                    if recording and self._jobs and self._jobs[0][0] == A_RECORDING:
                        self._jobs_changed.notify()  # one held back by the limit may start
                with self._running_changed:
                    self._running -= 1
                    self._running_changed.notify_all()

    def _run(self, hook, request: AgiRequest, context: HookContext, answer: Future | None,
             recorded: Future | None, in_flight: int | None) -> None:
        if answer is not None and not answer.set_running_or_notify_cancel():
            return  # past its deadline before it started: the request is in the spool
        try:
            if answer is not None and hook.answer is not None:
                with self._reader.connect() as connection:
                    variables = hook.answer(connection, request, context)
                # On disk before it is given: should this process die before the commit,
                # the next start records it.
                in_flight = self.spool.put(hook.name, hook.call_key(request), request.env,
                                           context.now, "being recorded", in_flight=True)
                answer.set_result(variables)
                answer = None
                if self._submit(A_RECORDING, hook, request, context, in_flight=in_flight):
                    return  # recorded after the calls waiting now have their answers
            with transaction(self.engine) as session:
                variables = hook.run(session, request, context)
            if in_flight is not None:
                self.spool.done(in_flight)
            for future, result in ((answer, variables), (recorded, None)):
                if future is not None:
                    future.set_result(result)
        except BaseException as error:  # noqa: BLE001 - told to whoever waits
            if in_flight is not None:
                log.warning("recording %s for %s failed (%r): replayed later", hook.name,
                            request.uniqueid, error)
                self.spool.release(in_flight)
            for future in (answer, recorded):
                if future is not None and not future.done():
                    future.set_exception(error)

    def overloaded(self, request: AgiRequest) -> dict[str, str]:
        hook = self.hooks.get(request.script)
        if hook is None:
            return dict(UNAVAILABLE)
        return self._spool(hook, hook.call_key(request), request, utcnow(), "server saturated")

    def _spool(self, hook, key: str, request: AgiRequest, received_at: datetime,
               reason: str) -> dict[str, str]:
        log.warning("%s for %s spooled: %s", hook.name, request.uniqueid, reason)
        try:
            self.spool.put(hook.name, key, request.env, received_at, reason)
        except Exception:  # noqa: BLE001 - even a full disk must not hold up the call
            log.exception("could not spool %s for %s", hook.name, request.uniqueid)
        return dict(UNAVAILABLE)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no hook runs on a database worker (one the deadline left behind may
        still be finishing); False if ``timeout`` ran out first."""
        with self._running_changed:
            return self._running_changed.wait_for(lambda: self._running == 0, timeout)

    def health(self) -> dict[str, str]:
        """The answer to ``agi://.../health`` (``pbx-crm check``, the systemd watchdog): the
        server answers; how the database was at its last check and what the spool holds,
        read without touching the database."""
        waiting, set_aside = self.spool.counts()
        return {"CRM_STATUS": "OK", "CRM_DATABASE": self.database.state,
                "CRM_DATABASE_REASON": self.database.reason,
                "CRM_DATABASE_SINCE": str(round(time.monotonic() - self.database.since)),
                "CRM_SPOOLED": str(waiting), "CRM_SET_ASIDE": str(set_aside)}

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
                context = HookContext(settings=self.settings, now=item.received_at,
                                      replay=True)
                recorded = Future()
                if not self._submit(A_RECORDING, hook, request, context, recorded=recorded):
                    break  # the workers have enough to do: next round
                try:
                    recorded.result(timeout=HUNG_AFTER_S)
                except CallNotRecorded:
                    # Another node answered its lookup and has not recorded it yet (or it
                    # never reached the CRM): try again next round; the call's later
                    # requests go on meanwhile (a hangup records a call it does not find).
                    if item.received_at < utcnow() - timedelta(seconds=AWAIT_CALL_S):
                        log.warning("%s for %s dropped: no call %s recorded within %d s",
                                    item.hook, request.uniqueid, item.call_key, AWAIT_CALL_S)
                        self.spool.done(item.id)
                    else:
                        self.spool.failed(item.id, "call not recorded yet", retryable=True)
                except TimeoutError:
                    # The database hangs: the next rounds close the hung connections.
                    self.spool.failed(item.id, "no answer from the database", retryable=True)
                    break
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
                    close_hung_connections(self.engine, HUNG_AFTER_S)
                    if self.database.check():
                        self.replay_spooled()
                except Exception:  # noqa: BLE001 - the replayer keeps going
                    if not self._stopping.is_set():
                        log.exception("spool replay round failed")

        self._replayer = threading.Thread(target=loop, name="crm-spool-replayer", daemon=True)
        self._replayer.start()

    def close(self) -> None:
        """Stop replaying, and end the idle database workers (a process that starts the
        server again must not keep the old ones). Hooks still on a database worker were
        spooled when their deadline passed: nothing waits on them."""
        self._stopping.set()
        with self._jobs_changed:
            self._jobs_changed.notify_all()  # the idle workers end
        if self._replayer:
            self._replayer.join(timeout=1)
        for engine in {self.engine, self.database.engine} - {self._given_engine}:
            engine.dispose()  # the idle connections; a hung one is left to the process's end
