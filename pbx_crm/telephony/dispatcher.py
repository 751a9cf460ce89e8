"""The one dispatcher between AGI requests and the hooks in ``agi/``.

Both entry points use it: the FastAGI server, and (through the relay script) process AGI. It
owns the database transaction of each hook, and the rule a PBX admin judges us by: a call
never waits on the CRM. Each hook gets a time budget; when the budget runs out, the database
fails, or every database worker is busy, the dispatcher answers ``CRM_STATUS=UNAVAILABLE`` at
once, so the dialplan routes the call normally, and spools the request to replay it later.

A hook with a read-only ``answer`` (``incoming``) makes the call wait for that one read only,
made on the session's own thread (no hand-over to a database worker and back): the FastAGI
server's watchdog answers for a read past the budget (``late``), and its writes are queued
then. Its writes (``run``) go to the writer, one thread that has calls recorded in batches, one
transaction per batch, in arrival order: under ``pbx-crm fastagi`` by a recorder process of
its own, so that the recording's CPU does not hold up the next calls' answers. Later requests
of a call whose writes are still queued queue behind them, so a call's lookup, answer and
hangup are recorded in order.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .agi_protocol import AgiRequest
from ..config import Settings
from ..db import DatabaseAway, autocommit_reader, check_database, transaction
from ..errors import CrmError
from .health import HEALTH_SCRIPT
from ..models import utcnow
from .spool import Spool

log = logging.getLogger(__name__)

UNAVAILABLE = {"CRM_STATUS": "UNAVAILABLE"}
# Writes queued beyond this go straight to the spool: memory stays bounded in a flood.
WRITER_QUEUE_LIMIT = 5000
WRITER_BATCH = 200
WRITER_LOCK_TIMEOUT = text("SET LOCAL lock_timeout = '10s'")
# How long a read-only answer may wait for a free database worker (seconds).
ANSWER_WORKER_WAIT = 0.1


class _Answering:
    """An answer being read on a session's thread: whoever comes first, the answer finishing
    or the server's watchdog giving up on it (``late``), queues the request's writes."""

    __slots__ = ("hook", "key", "received_at", "_lock", "_state")

    def __init__(self, hook, key: str, received_at: datetime):
        self.hook, self.key, self.received_at = hook, key, received_at
        self._lock = threading.Lock()
        self._state = "reading"

    def finished(self) -> bool:
        """The answer is in; True if its writes are still to be queued."""
        with self._lock:
            mine, self._state = self._state == "reading", "done"
            return mine

    def overrun(self) -> bool:
        """The budget ran out first; True if its writes are still to be queued."""
        with self._lock:
            mine = self._state == "reading"
            if mine:
                self._state = "late"
            return mine


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (a ``time.monotonic()`` reading), never negative."""
    return max(0.0, deadline - time.monotonic())


@dataclass(frozen=True)
class HookContext:
    settings: Settings
    # When Asterisk asked: the replay of a spooled request keeps the original time.
    now: datetime
    replay: bool = False
    # What a hook's answer learnt, handed to its ``run`` on the writer (not kept when spooled:
    # a replay reads afresh).
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
                 workers: int = 8, recorder_process: bool = False):
        if hooks is not None and recorder_process:
            raise ValueError("the recorder process runs the registered hooks only")
        if hooks is None:
            from ..agi import HOOKS as hooks
        self.engine = engine
        # Answers only read (on SQLite they must never queue for the write lock), a
        # statement or two each consistent on its own: no transaction around them.
        self._reader = autocommit_reader(engine)
        self.settings = settings
        self.spool = spool
        self.hooks = hooks
        self.budget = settings.hook_budget_ms / 1000
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="crm-hook")
        self._free_workers = threading.BoundedSemaphore(workers)
        self._answering: dict[int, _Answering] = {}  # id(request) -> its answer being read
        self._running = 0  # hooks running on the database workers, spooled or not
        self._running_changed = threading.Condition()
        self._replay_lock = threading.Lock()
        self._stopping = threading.Event()
        self._replayer: threading.Thread | None = None
        self.database = DatabaseWatch(engine)
        self.writer = CallWriter(self, RecorderProcess(settings) if recorder_process else None)

    # --- the call path ----------------------------------------------------------------------

    def handle(self, request: AgiRequest) -> dict[str, str]:
        received_at = utcnow()
        # One budget for the whole request, whatever it waits for on the way.
        deadline = time.monotonic() + self.budget
        hook = self.hooks.get(request.script)
        if hook is None:
            if request.script == HEALTH_SCRIPT:
                return self.health()
            log.error("the dialplan asked for an unknown hook %r (known: %s)", request.script,
                      ", ".join(sorted(self.hooks)))
            return dict(UNAVAILABLE)
        key = hook.call_key(request)
        if not self.database.up:
            # Away at its last check (or not checked yet, at start): no read would come back
            # within the budget, so the request goes to the spool at once, before the answer.
            return self._spool(hook, key, request, received_at, "database "
                               f"{self.database.state}: {self.database.reason}")
        if self.spool.holds_call(key):
            # An earlier request of this call waits in the spool: keep the call's order.
            return self._spool(hook, key, request, received_at, "earlier request spooled")
        if hook.answer is not None:
            # The answer is read on this thread: the server's watchdog answers for it should
            # it overrun the budget (``late``), and then queues its writes.
            context = HookContext(settings=self.settings, now=received_at)
            answering = _Answering(hook, key, received_at)
            self._answering[id(request)] = answering
            try:
                variables = self._answer(hook, request, context, deadline)
            finally:
                del self._answering[id(request)]
            if answering.finished():
                self.writer.put(hook, key, request, received_at, memo=context.memo)
            return variables
        if not self.writer.wait_released(key, _left(deadline)):
            # An earlier request of this call is still not recorded: record this one after
            # it, and let the call go on.
            self.writer.put(hook, key, request, received_at)
            return dict(UNAVAILABLE)
        if not self._free_workers.acquire(blocking=False):
            return self._spool(hook, key, request, received_at, "all database workers busy")
        future = self._pool.submit(self._run_and_release, hook, request, received_at)
        try:
            return future.result(timeout=_left(deadline))
        except FutureTimeout:
            # The hook may still finish; the replay then finds its work done (idempotent).
            return self._spool(hook, key, request, received_at,
                               f"over the {self.settings.hook_budget_ms} ms budget")
        except Exception as error:  # noqa: BLE001 - whatever failed, the call goes on
            log.warning("hook %s failed for %s: %r", hook.name, request.uniqueid, error)
            return self._spool(hook, key, request, received_at, repr(error))

    def _answer(self, hook, request: AgiRequest, context: HookContext,
                deadline: float) -> dict[str, str]:
        """The hook's read-only answer within the budget; UNAVAILABLE when it cannot be had
        (the writes are queued all the same, and spooled if the database stays away)."""
        # A read is short: worth a brief wait for a slot in a burst, never the whole budget.
        # The slots bound the database work at once, answers and hooks alike.
        if not self._free_workers.acquire(timeout=min(_left(deadline), ANSWER_WORKER_WAIT)):
            return self._unanswered(hook, request, "all database workers busy")
        try:
            # A plain connection, not a session: the answer is a read or two.
            with self._reader.connect() as connection:
                return hook.answer(connection, request, context)
        except Exception as error:  # noqa: BLE001 - whatever failed, the call goes on
            return self._unanswered(hook, request, repr(error))
        finally:
            self._free_workers.release()

    def late(self, request: AgiRequest) -> dict[str, str]:
        """The server's answer for a request whose ``handle`` overran the budget: the call
        goes on without the CRM. An answer still reading has its writes queued now (read
        afresh when they are recorded); a hook on a database worker spools its own."""
        answering = self._answering.get(id(request))
        if answering is not None and answering.overrun():
            self.writer.put(answering.hook, answering.key, request, answering.received_at)
        hook = self.hooks.get(request.script)
        if hook is None:
            return dict(UNAVAILABLE)
        return self._unanswered(hook, request,
                                f"over the {self.settings.hook_budget_ms} ms budget")

    def _unanswered(self, hook, request: AgiRequest, reason: str) -> dict[str, str]:
        """The answer could not be had: the call goes on without the CRM (its writes are
        queued all the same)."""
        log.warning("%s for %s answered UNAVAILABLE: %s", hook.name, request.uniqueid, reason)
        return dict(UNAVAILABLE)

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
        still be finishing) and the writer has recorded what it was given; False if
        ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._running_changed:
            if not self._running_changed.wait_for(lambda: self._running == 0, timeout):
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.writer.wait_empty(left)

    def _run(self, hook, request: AgiRequest, received_at: datetime, *, replay: bool):
        context = HookContext(settings=self.settings, now=received_at, replay=replay)
        with transaction(self.engine) as session:
            return hook.run(session, request, context)

    def health(self) -> dict[str, str]:
        """The answer to ``agi://.../health`` (``pbx-crm check``, the systemd watchdog): the
        server and its workers answer; how the database was at its last check and what the
        spool holds, read without touching the database."""
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
                    if self.database.check():
                        self.replay_spooled()
                except Exception:  # noqa: BLE001 - the replayer keeps going
                    log.exception("spool replay round failed")

        self._replayer = threading.Thread(target=loop, name="crm-spool-replayer", daemon=True)
        self._replayer.start()

    def close(self) -> None:
        self.writer.close()
        self._stopping.set()
        if self._replayer:
            self._replayer.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)


class PendingWrite(NamedTuple):
    hook: str  # the hook's name in the registry
    key: str
    request: AgiRequest
    received_at: datetime
    memo: dict


class CallWriter:
    """The dispatcher's writer: hooks' writes recorded off the call's wait, in arrival order.

    One thread takes what is queued (up to ``WRITER_BATCH``) and has it recorded in one
    transaction, so a burst of calls costs one commit: by a ``BatchRecorder`` in this process,
    or by a ``RecorderProcess`` (the work, most of a call's CPU, then no longer competes with
    the next call's answer for this process's interpreter). A request whose hook fails, or the
    whole batch when the database fails, goes to the spool and is replayed like any spooled
    request. On close the queue is written (or spooled): nothing given is dropped.
    """

    def __init__(self, dispatcher: HookDispatcher, recorder=None):
        self.dispatcher = dispatcher
        self.recorder = recorder or BatchRecorder(dispatcher.engine, lambda: dispatcher.settings,
                                                  dispatcher.hooks)
        self._queue: deque = deque()
        self._held: Counter = Counter()  # call key -> requests queued or being written
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="crm-call-writer", daemon=True)
        self._thread.start()

    def put(self, hook, key: str, request: AgiRequest, received_at: datetime, *,
            memo: dict | None = None) -> None:
        with self._changed:
            if not self._closing and len(self._queue) < WRITER_QUEUE_LIMIT:
                self._queue.append(PendingWrite(hook.name, key, request, received_at,
                                                memo or {}))
                self._held[key] += 1
                self._changed.notify_all()
                return
        self.dispatcher._spool(hook, key, request, received_at, "writer queue full")

    def wait_released(self, key: str, timeout: float) -> bool:
        """Wait (up to ``timeout``) until nothing of this call waits to be recorded."""
        with self._changed:
            return self._changed.wait_for(lambda: self._held.get(key, 0) == 0, timeout)

    def wait_empty(self, timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._held, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(timeout)
        self.recorder.close()

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                batch = [self._queue.popleft()
                         for _ in range(min(WRITER_BATCH, len(self._queue)))]
            try:
                self._write(batch)
            except Exception as error:  # noqa: BLE001 - the database failed: keep them all
                log.warning("writing %d request(s) failed: %r", len(batch), error)
                for item in batch:
                    self._spool(item, repr(error))
            finally:
                with self._changed:
                    for item in batch:
                        self._held[item.key] -= 1
                        if self._held[item.key] <= 0:
                            del self._held[item.key]
                    self._changed.notify_all()

    def _spool(self, item: PendingWrite, reason: str) -> None:
        self.dispatcher._spool(self.dispatcher.hooks[item.hook], item.key, item.request,
                               item.received_at, reason)

    def _write(self, batch: list[PendingWrite]) -> None:
        """Record the batch, but not the requests of a call whose earlier request waits in
        the spool (they go after it); spool what could not be recorded, in arrival order."""
        spooled = {id(item): "earlier request spooled" for item in batch
                   if self.dispatcher.spool.holds_call(item.key)}
        ready = [item for item in batch if id(item) not in spooled]
        if ready:
            for index, reason in self.recorder.write(ready):
                spooled[id(ready[index])] = reason
        for item in batch:
            if id(item) in spooled:
                self._spool(item, spooled[id(item)])


class BatchRecorder:
    """Runs the hooks' writes of a batch in one transaction; if one request fails, each on
    its own, and only the ones that fail (and the requests of their calls after them) are
    handed back to be spooled. Raises ``OperationalError`` when the database is away."""

    def __init__(self, engine, settings: Callable[[], Settings], hooks):
        self.engine = engine
        self.settings = settings  # read at each batch: the dispatcher's settings as they are
        self.hooks = hooks

    def write(self, batch: list[PendingWrite]) -> list[tuple[int, str]]:
        """(index in ``batch``, reason) of each request not recorded."""
        try:
            self._write_together(batch)
            return []
        except OperationalError:
            raise  # the database is away: the whole batch goes to the spool
        except Exception as error:  # noqa: BLE001 - find the one at fault
            log.warning("a batch of %d failed (%r): writing one by one", len(batch), error)
        not_recorded = []
        failed_calls = set()
        for index, item in enumerate(batch):
            if item.key in failed_calls:
                not_recorded.append((index, "earlier request spooled"))
                continue
            try:
                self._write_together([item])
            except OperationalError:
                raise
            except Exception as error:  # noqa: BLE001
                log.warning("hook %s failed for %s: %r", item.hook, item.request.uniqueid,
                            error)
                not_recorded.append((index, repr(error)))
                failed_calls.add(item.key)
        return not_recorded

    def _write_together(self, batch: list[PendingWrite]) -> None:
        with transaction(self.engine) as session:
            if session.get_bind().dialect.name == "postgresql":
                # Never wait for ever behind a lock: the batch goes to the spool instead, and
                # the calls after it keep being written (SQLite's busy timeout does the same).
                session.execute(WRITER_LOCK_TIMEOUT)
            settings = self.settings()
            # Each run of one hook's requests together, where the hook can (in their order).
            for name, items in itertools.groupby(batch, key=lambda item: item.hook):
                hook = self.hooks[name]
                requests = [(item.request, HookContext(settings=settings, now=item.received_at,
                                                       memo=item.memo)) for item in items]
                if hook.run_many is not None:
                    hook.run_many(session, requests)
                    continue
                for request, context in requests:
                    hook.run(session, request, context)

    def close(self) -> None:
        pass


class RecorderProcess:
    """``BatchRecorder`` in a process of its own, with its own database connections: the
    FastAGI process hands it each batch and waits (its interpreter free meanwhile for the
    next calls' answers). If the process dies, the batch in hand is spooled (replayed later,
    and recording twice is harmless: the uniqueid decides) and a new one takes over."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no copy of this process's threads
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=_recorder_main, args=(theirs, self.settings),
                                        name="pbx-crm-recorder", daemon=True)
        self._process.start()
        theirs.close()
        if not self._pipe.poll(RECORDER_START_TIMEOUT) or self._pipe.recv() != "ready":
            self._process.kill()
            raise RuntimeError("the call recorder process did not start")
        log.info("call recorder process %d started", self._process.pid)

    def write(self, batch: list[PendingWrite]) -> list[tuple[int, str]]:
        with self._lock:
            try:
                if not self._process.is_alive():
                    self._start()
                self._pipe.send(batch)
                outcome, value = self._pipe.recv()
            except (EOFError, OSError) as error:
                log.warning("the call recorder process ended (exit code %s)",
                            self._process.exitcode)
                raise RuntimeError(f"call recorder process gone: {error!r}") from error
        if outcome == "away":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        with self._lock:
            try:
                self._pipe.send(None)
            except OSError:
                pass
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
            self._pipe.close()


# Seconds the recorder process may take to start (import, connect) before the server gives up.
RECORDER_START_TIMEOUT = 60.0


def _recorder_main(pipe, settings: Settings) -> None:
    """The recorder process: batches in, what could not be recorded out, until told to stop
    or the FastAGI process goes away."""
    import signal

    from ..agi import HOOKS
    from ..db import make_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s (recorder): %(message)s")
    recorder = BatchRecorder(make_engine(settings.database), lambda: settings, HOOKS)
    pipe.send("ready")
    while True:
        try:
            batch = pipe.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        try:
            pipe.send(("recorded", recorder.write(batch)))
        except Exception as error:  # noqa: BLE001 - the database is away: the batch is spooled
            pipe.send(("away", repr(error)))
