"""The local durable spool: AGI requests the database could not take in time.

When a hook runs out of its time budget or the database fails, the call goes on without the
CRM, and the request (the hook's name, its AGI environment and when it arrived) is written
here, to a small SQLite file on local disk, synchronously. A replayer runs the same hook later
with the original time, in arrival order; the hooks are idempotent, so a request that did
reach the database after all is not recorded twice. Nothing about a call is lost.

A request answered before it is recorded (``incoming``) is written here too, ``in_flight``,
and deleted once its recording commits: should the process die in between, the next start
replays it. The replay leaves such a row alone for ``IN_FLIGHT_S`` unless it is released.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_ATTEMPTS = 5
# A recording in flight this long is stuck (a hung database): its row is replayed.
IN_FLIGHT_S = 10.0


@dataclass(frozen=True)
class SpooledRequest:
    id: int
    hook: str
    call_key: str
    env: dict[str, str]
    received_at: datetime
    attempts: int
    last_error: str | None


class Spool:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # a recording in flight ended
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: what is written survives this process dying (kill -9) at any moment. A
        # request spooled for later is also synced to disk (``put``: survives a power cut);
        # a recording in flight is deleted within milliseconds, and its sync would make a
        # burst of calls queue behind the disk.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spooled ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, hook TEXT NOT NULL,"
            " call_key TEXT NOT NULL, env TEXT NOT NULL, received_at TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, faults INTEGER NOT NULL DEFAULT 0,"
            " last_error TEXT, dead INTEGER NOT NULL DEFAULT 0)")
        self._db.execute("CREATE INDEX IF NOT EXISTS spooled_call ON spooled (call_key)")
        # Asked on every call, so kept in memory: how many requests of each call wait here.
        self._waiting = Counter(dict(self._db.execute(
            "SELECT call_key, COUNT(*) FROM spooled WHERE NOT dead GROUP BY call_key")))
        # Recordings in flight in this process: row id -> (since when, call key).
        self._in_flight: dict[int, tuple[float, str]] = {}

    def put(self, hook: str, call_key: str, env: dict[str, str], received_at: datetime,
            reason: str, *, in_flight: bool = False) -> int:
        with self._lock:
            if not in_flight:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                cursor = self._db.execute(
                    "INSERT INTO spooled (hook, call_key, env, received_at, last_error)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (hook, call_key, json.dumps(env), received_at.astimezone(UTC).isoformat(),
                     reason[:2000]))
            finally:
                if not in_flight:
                    self._db.execute("PRAGMA synchronous=NORMAL")
            self._waiting[call_key] += 1
            if in_flight:
                self._in_flight[cursor.lastrowid] = (time.monotonic(), call_key)
            return cursor.lastrowid

    def release(self, request_id: int) -> None:
        """A request in flight whose recording failed: replay it like any other."""
        with self._lock:
            self._in_flight.pop(request_id, None)
            self._settled.notify_all()

    def wait_in_flight(self, call_key: str, timeout: float) -> None:
        """Wait (up to ``timeout``) while an earlier request of this call is being recorded:
        the next one is recorded after it, not spooled for its sake."""
        with self._settled:
            self._settled.wait_for(lambda: all(
                key != call_key for _, key in self._in_flight.values()), timeout)

    def holds_call(self, call_key: str) -> bool:
        """Whether an earlier request of this call waits here (later ones must queue behind)."""
        return self._waiting.get(call_key, 0) > 0

    def pending(self, limit: int = 100) -> list[SpooledRequest]:
        """What waits to be replayed, oldest first: not the calls with a recording in flight
        (their later requests go after it)."""
        with self._lock:
            stuck = time.monotonic() - IN_FLIGHT_S
            busy = {key for since, key in self._in_flight.values() if since > stuck}
            rows = self._db.execute(
                "SELECT id, hook, call_key, env, received_at, attempts, last_error"
                f" FROM spooled WHERE NOT dead AND call_key NOT IN ({','.join('?' * len(busy))})"
                " ORDER BY id LIMIT ?", (*busy, limit)).fetchall()
        return [SpooledRequest(id, hook, key, json.loads(env), datetime.fromisoformat(at),
                               attempts, error)
                for id, hook, key, env, at, attempts, error in rows]

    def _forget(self, call_key: str) -> None:
        self._waiting[call_key] -= 1
        if self._waiting[call_key] <= 0:
            del self._waiting[call_key]

    def done(self, request_id: int) -> None:
        with self._lock:
            if self._in_flight.pop(request_id, None):
                self._settled.notify_all()
            row = self._db.execute("DELETE FROM spooled WHERE id = ? AND NOT dead"
                                   " RETURNING call_key", (request_id,)).fetchone()
            if row is not None:
                self._forget(row[0])

    def failed(self, request_id: int, error: str, *, retryable: bool) -> None:
        """Count a failed replay. A request that fails MAX_ATTEMPTS times for a reason other
        than the database being away (``retryable``) is set aside: kept, listed, never
        replayed again. Waiting out an outage, however long, counts no fault."""
        fault = 0 if retryable else 1
        with self._lock:
            row = self._db.execute(
                "UPDATE spooled SET attempts = attempts + 1, faults = faults + ?,"
                " last_error = ?, dead = faults + ? >= ? WHERE id = ? AND NOT dead"
                " RETURNING call_key, dead",
                (fault, error[:2000], fault, MAX_ATTEMPTS, request_id)).fetchone()
            if row is not None and row[1]:
                self._forget(row[0])

    def counts(self) -> tuple[int, int]:
        """(waiting, set aside); the recordings in flight are not waiting."""
        with self._lock:
            waiting, dead = self._db.execute(
                "SELECT COALESCE(SUM(NOT dead), 0), COALESCE(SUM(dead), 0) FROM spooled"
            ).fetchone()
            return waiting - len(self._in_flight), dead

    def close(self) -> None:
        with self._lock:
            self._db.close()
