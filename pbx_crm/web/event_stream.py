"""Delivering the event outbox to the browsers of one web process (screen-pops).

One ``EventHub`` per web worker process: a background reader wakes when events may have been
written (PostgreSQL: a ``LISTEN`` on ``events.NOTIFY_CHANNEL``; SQLite: a short poll of the
outbox), reads what is new once per wake-up, and hands each event to the connected
subscribers whose user may receive it (``funnel.can_receive_event``). The web route
(``webui.routes_stream``) turns a ``Subscription`` into a Server-Sent Events stream.

Each subscription is tied to the browser session it was opened with. The same read that takes a
batch of events asks which of its receivers' sessions are still open (one query per batch,
``web_sessions.still_open``), after the events in the same transaction: an event committed
after a sign-out, a deactivation or a password change finds the session gone, and instead of
the event the stream gets its end (``Subscription.signed_out``).

Ids are the stream positions browsers resume from, so the hub releases events strictly in id
order and never past a hole: on PostgreSQL ids come from a sequence, and a transaction that
commits late can publish an id lower than one already read. An id missing below the highest
one read is waited for (its commit sends a NOTIFY) up to ``gap_grace`` seconds, then taken as
rolled back. Everything up to ``released`` is therefore final, and a browser that resumes
after id N gets the events from N to ``released`` from the table and the rest live: none lost,
none twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from ..funnel import events
from ..people import sign_in as web_sessions
from ..db import (POSTGRES_CONNECT_TIMEOUT_S, POSTGRES_NETWORK_ARGS, database_away,
                  transaction)
from ..rules.funnel import Actor, can_read_deal, can_receive_event
from ..models import Contact, Deal, Event, Stage, Task, User

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # SQLite: how often the outbox is read (half of it is the mean wait)
SAFETY_INTERVAL = 5.0  # PostgreSQL: a read now and then even without a NOTIFY
GAP_GRACE = 2.0  # how long a missing id is waited for before it counts as rolled back
READ_BATCH = 1000
QUEUE_LIMIT = 2000  # a browser this far behind is dropped; it resumes from its last id
RESUME_LIMIT = 2000  # at most this many missed events are replayed to a resuming browser


def psycopg_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.Error, OSError)


@dataclass(frozen=True)
class Delivery:
    """One event as the stream sends it: the pop card's data, shaped once per event."""

    id: int
    kind: str
    target_user_id: int | None
    data: dict
    # The deal the event is about, for the read check of each receiver (funnel rules).
    deal_owner_id: int | None = None
    deal_in_unsorted: bool = False

    def data_for(self, actor: Actor) -> dict:
        """The data ``actor`` may see: a deal's title and contact only when ``actor`` may
        open that deal; the caller's number and name always (their phone rang)."""
        if self.data.get("deal_id") is None or can_read_deal(
                actor, owner_id=self.deal_owner_id, in_unsorted=self.deal_in_unsorted):
            return self.data
        hidden = dict(self.data)
        hidden.update(deal_id=None, deal_title=None, contact_name=None, deal_hidden=True)
        return hidden


# The stream event of a task fallen due (``pbx_crm.robots.task_reminders``).
TASK_DUE = "task_due"


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def shape(session: Session, rows: list[Event]) -> list[Delivery]:
    """The pop data of ``rows``: the payload written by the telephony side, plus what the card
    shows that the payload only names by id (deal title, contact, who answered; a reminded
    task's kind, number and missed calls), read in a few queries for the whole batch."""
    deal_ids = {row.deal_id or (row.payload or {}).get("deal_id") for row in rows} - {None}
    deals = {}
    if deal_ids:
        query = (select(Deal.id, Deal.title, Deal.owner_id, Stage.is_unsorted, Contact.name)
                 .join(Stage, Stage.id == Deal.stage_id)
                 .outerjoin(Contact, Contact.id == Deal.contact_id)
                 .where(Deal.id.in_(deal_ids)))
        deals = {row[0]: row for row in session.exec(query)}
    # A task reminder's task as it is now: what the browser needs to name it in its reader's
    # language (a callback task by its number and missed calls, as the pages name it).
    task_ids = {(row.payload or {}).get("task_id") for row in rows
                if row.kind == TASK_DUE} - {None}
    tasks = {row[0]: row for row in session.exec(
        select(Task.id, Task.kind, Task.phone, Task.missed_calls)
        .where(Task.id.in_(task_ids)))} if task_ids else {}
    user_ids = {(row.payload or {}).get("user_id") for row in rows} - {None}
    names = dict(session.exec(select(User.id, User.name).where(User.id.in_(user_ids))).all()
                 ) if user_ids else {}
    shaped = []
    for row in rows:
        payload = dict(row.payload or {})
        deal_id = row.deal_id or payload.get("deal_id")
        deal = deals.get(deal_id)
        data = dict(payload, id=row.id, kind=row.kind, created_at=_iso(row.created_at),
                    linkedid=row.linkedid or payload.get("linkedid"),
                    deal_id=deal[0] if deal else None,
                    deal_title=deal[1] if deal else None,
                    contact_name=deal[4] if deal else None)
        if payload.get("user_id") is not None:
            data["answered_by"] = names.get(payload["user_id"])
        task = tasks.get(payload.get("task_id")) if row.kind == TASK_DUE else None
        if task is not None:
            data.update(task_kind=task[1], phone=task[2], missed_calls=task[3])
        shaped.append(Delivery(id=row.id, kind=row.kind, target_user_id=row.target_user_id,
                               data=data, deal_owner_id=deal[2] if deal else None,
                               deal_in_unsorted=bool(deal[3]) if deal else False))
    return shaped


@dataclass(eq=False)
class Subscription:
    """One browser's stream: what it missed (read from the table), then what the hub hands
    it. ``get`` returns the next delivery, or None after ``timeout`` (time for a heartbeat)."""

    actor: Actor
    web_session_id: int  # the sign-in it streams for: it ends with it
    after: int  # the hub's position when it subscribed: later events come live
    hub: EventHub
    _missed: deque = field(default_factory=deque)
    _queue: queue.Queue = field(default_factory=queue.Queue)
    dropped: bool = False
    signed_out: bool = False  # its session ended: nothing more goes out

    def get(self, timeout: float) -> Delivery | None:
        # What it missed first: ids stay in order, so the browser's last id is a true cursor.
        if self.signed_out:
            return None
        if self._missed:
            return self._missed.popleft()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _sign_out(self) -> None:
        self.signed_out = True
        self._queue.put(None)  # wakes the stream at once; ``get`` then returns None

    def _put(self, delivery: Delivery) -> None:
        if self._queue.qsize() >= QUEUE_LIMIT:
            # A browser that stopped reading: end its stream rather than grow without bound.
            self.dropped = True
            return
        self._queue.put(delivery)

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EventHub:
    """The outbox reader and fan-out of one web process; started by the first subscriber."""

    def __init__(self, engine, *, poll_interval: float = POLL_INTERVAL,
                 gap_grace: float = GAP_GRACE, safety_interval: float = SAFETY_INTERVAL):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.poll_interval = poll_interval
        self.gap_grace = gap_grace
        self.safety_interval = safety_interval
        self.released = 0  # every id up to here was delivered or given up
        self._pending: dict[int, Event] = {}  # read, but above a missing id
        self._gaps: dict[int, float] = {}  # missing id -> when it counts as rolled back
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._reader = None
        self._listen = None  # the psycopg connection that LISTENs

    # --- subscribers --------------------------------------------------------------------

    def subscribe(self, actor: Actor, web_session_id: int, *,
                  after: int | None = None) -> Subscription:
        """A stream for ``actor`` signed in with ``web_session_id``: with ``after`` (the
        browser's Last-Event-ID) it first gets the events it missed after that id, then every
        new one it may receive while the session lasts."""
        self._start()
        with self._lock:
            subscription = Subscription(actor=actor, web_session_id=web_session_id,
                                        after=self.released, hub=self)
            self._subscribers.add(subscription)
        if after is not None and after < subscription.after:
            try:
                with transaction(self.engine, read_only=True) as session:
                    subscription._missed.extend(
                        self._read_missed(session, actor, after, subscription.after))
            except BaseException:
                self.unsubscribe(subscription)
                raise
        return subscription

    def _read_missed(self, session: Session, actor: Actor, after: int,
                     upto: int) -> list[Delivery]:
        rows: list[Event] = []
        cursor = after
        while len(rows) < RESUME_LIMIT:
            batch = [row for row in events.events_after(session, actor, cursor, limit=500)
                     if row.id <= upto]
            rows.extend(batch)
            if len(batch) < 500:
                break
            cursor = batch[-1].id
        # Up to the hub's position at subscription; the live ones come after: no overlap.
        return shape(session, rows[-RESUME_LIMIT:])

    def position(self) -> int:
        """Where a stream connecting now starts: a page shows this so its stream resumes from
        it and misses nothing written in between."""
        if self._reader is not None:
            return self.released
        with transaction(self.engine, read_only=True) as session:
            return events.latest_event_id(session)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    # --- the reader ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._reader is not None or self._stopping.is_set():
                return
            if self.postgres:
                # Listen before reading where to start: an event committed in between wakes
                # the reader, which reads from ``released``.
                self._listen = self._connect_listener()
            with transaction(self.engine, read_only=True) as session:
                self.released = events.latest_event_id(session)
            # A greenlet under gevent's monkey-patching (psycopg then waits cooperatively),
            # a thread otherwise.
            self._reader = threading.Thread(target=self._run, name="event-hub", daemon=True)
            self._reader.start()

    def _connect_listener(self):
        import psycopg

        # What the engine's own connections get: every host of a multi-host URL (with its
        # target_session_attrs, so a fail-over finds the new primary), the rest of the URL's
        # query, and make_engine's connect timeout and keepalives (a LISTEN on a dead path
        # fails within seconds instead of waiting for ever).
        _, params = self.engine.dialect.create_connect_args(self.engine.url)
        params = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S, **POSTGRES_NETWORK_ARGS,
                  **params}
        listen = psycopg.connect(**params, autocommit=True)
        listen.execute(f"LISTEN {events.NOTIFY_CHANNEL}")
        return listen

    def _run(self) -> None:
        away = False  # the database did not answer the last read: said once, not each second
        while not self._stopping.is_set():
            try:
                self._wait()
                if self._stopping.is_set():
                    break
                self.read_once()
                if away:
                    away = False
                    log.info("event stream: the database answers again; pops go out")
            except Exception as error:
                if not database_away(self.engine, error) and not isinstance(
                        error, psycopg_errors()):
                    log.exception("event stream: reading the outbox failed; retrying")
                elif not away:
                    away = True
                    log.warning("event stream: the database does not answer (%s); retrying "
                                "every second", str(error).strip().splitlines()[0])
                self._drop_listener()
                self._stopping.wait(1.0)

    def _wait(self) -> None:
        timeout = self.poll_interval if self._gaps else self.safety_interval
        if not self.postgres:
            self._stopping.wait(self.poll_interval)
            return
        if self._listen is None:
            self._listen = self._connect_listener()
        # One wake-up takes every notification that came in; one read serves them all.
        for _ in self._listen.notifies(timeout=timeout, stop_after=1):
            pass

    def _drop_listener(self) -> None:
        listen, self._listen = self._listen, None
        if listen is not None:
            try:
                listen.close()
            except psycopg_errors() as error:
                log.debug("event stream: closing the listener: %s", error)

    def read_once(self) -> int:
        """Read what is new and deliver what can be released; returns how many were."""
        delivered = 0
        while True:
            state = (self.released, dict(self._pending), dict(self._gaps))
            try:
                with transaction(self.engine, read_only=True) as session:
                    rows = list(session.exec(select(Event).where(Event.id > self.released)
                                             .order_by(Event.id).limit(READ_BATCH)))
                    ready = self._release(rows, time.monotonic())
                    deliveries = shape(session, ready) if ready else []
                    receivers = self._receivers(deliveries)
                    # Read after the events: a session that ended before they were written
                    # is seen gone here.
                    still_open = web_sessions.still_open(
                        session, {s.web_session_id for s in receivers})
            except BaseException:
                # Nothing went out: the next read starts from the same place.
                self.released, self._pending, self._gaps = state
                raise
            self._fan_out(receivers, still_open)
            delivered += len(deliveries)
            if len(rows) < READ_BATCH:
                return delivered

    def _release(self, rows: list[Event], now: float) -> list[Event]:
        """The rows that can go out now, in id order, never past a missing id that may still
        commit; ``released`` moves past them."""
        for row in rows:
            if row.id > self.released:
                self._pending.setdefault(row.id, row)
                self._gaps.pop(row.id, None)
        if not self._pending:
            return []
        highest = max(self._pending)
        for missing in range(self.released + 1, highest):
            if missing not in self._pending and missing not in self._gaps:
                self._gaps[missing] = now + self.gap_grace
        ready = []
        while self.released < highest:
            following = self.released + 1
            if following in self._pending:
                ready.append(self._pending.pop(following))
            elif self._gaps.get(following, now) <= now:
                self._gaps.pop(following, None)
                log.debug("event stream: id %d never committed; going past it", following)
            else:
                break
            self.released = following
        return ready

    def _receivers(self, deliveries: list[Delivery]) -> dict[Subscription, list[Delivery]]:
        """Who gets which of ``deliveries``, each list in id order."""
        if not deliveries:
            return {}
        with self._lock:
            subscribers = list(self._subscribers)
        receivers: dict[Subscription, list[Delivery]] = {}
        for delivery in deliveries:
            for subscription in subscribers:
                # One that subscribed after this was released read it from the table.
                if delivery.id > subscription.after and can_receive_event(
                        subscription.actor, delivery.target_user_id):
                    receivers.setdefault(subscription, []).append(delivery)
        return receivers

    def _fan_out(self, receivers: dict[Subscription, list[Delivery]],
                 still_open: set[int]) -> None:
        for subscription, deliveries in receivers.items():
            if subscription.web_session_id not in still_open:
                subscription._sign_out()
                continue
            for delivery in deliveries:
                subscription._put(delivery)

    def close(self) -> None:
        """Stop the reader (the web process is stopping)."""
        with self._lock:  # a reader being started is started by the time this is had
            self._stopping.set()
            reader = self._reader
        if reader is not None and self.postgres:
            # Wake the LISTEN at once instead of at its timeout.
            try:
                with self.engine.begin() as connection:
                    connection.execute(text("SELECT pg_notify(:channel, '')"),
                                       {"channel": events.NOTIFY_CHANNEL})
            except SQLAlchemyError as error:  # the reader then stops at its timeout
                log.debug("event stream: waking the reader: %s", error)
        if reader is not None:
            reader.join(10)
        self._drop_listener()
