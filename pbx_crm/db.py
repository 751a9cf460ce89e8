"""Engines, sessions and migrations for the one schema on SQLite and PostgreSQL.

Edges (CLI, web routes, AGI dispatcher, jobs) open a transaction with ``transaction(engine)``
and hand the session to the services, which never commit. On SQLite a writing transaction
starts with ``BEGIN IMMEDIATE``: it waits its turn for the write lock up front (the busy
timeout), instead of failing half-way when a reader tries to become a writer.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
POOL_SIZE = 56
# Seconds a new PostgreSQL connection may take: a server that drops packets (a host rebooting,
# a firewall) must not hold a start-up or a call's database worker for minutes.
POSTGRES_CONNECT_TIMEOUT_S = 5
# A pooled PostgreSQL connection idle longer than this is pinged before use.
PING_AFTER_IDLE_S = 1.0
# A dead network path, seen by the kernel: data sent and not acknowledged for 10 s, or no
# answer to keepalive probes on an idle connection for about as long, closes the connection.
POSTGRES_NETWORK_ARGS = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                         "keepalives_count": 3, "tcp_user_timeout": 10_000}
# The call path's connections: no statement or lock wait longer than this (a hook's work
# takes milliseconds; its request is spooled at the budget in any case), and a transaction
# whose client went silent (a dead network path) ends by the server, its locks with it.
CALL_PATH_OPTIONS = ("-c statement_timeout=3s -c lock_timeout=1s"
                     " -c idle_in_transaction_session_timeout=5s")


def is_sqlite(engine_or_url) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str, **options) -> Engine:
    """An engine for ``url``; an SQLite file's directory is created on first use."""
    # Enough connections for the FastAGI database workers and the replayer at once, beside
    # the other components (on SQLite they share one engine): a hook waiting for a pooled
    # connection would wait out its budget.
    options.setdefault("pool_size", POOL_SIZE)
    if options["pool_size"] is None:  # a pool that keeps nothing
        options.pop("pool_size")
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options.pop("pool_size")
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **options,
        )
        _configure_sqlite(engine)
        return engine
    connect_args = options.setdefault("connect_args", {})
    if "connect_timeout" not in make_url(url).query:
        connect_args.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
    for name, value in POSTGRES_NETWORK_ARGS.items():
        if name not in make_url(url).query:
            connect_args.setdefault(name, value)
    engine = create_engine(url, **options)
    _track_busy_connections(engine)
    _ping_idle_connections(engine)
    return engine


def call_path_engine(engine: Engine) -> Engine:
    """An engine for the hooks of calls, beside ``engine``: on PostgreSQL with connections of
    its own, whose statements and lock waits are bounded (``CALL_PATH_OPTIONS``)."""
    return _engine_beside(engine, connect_args={"options": CALL_PATH_OPTIONS})


def fresh_connection_engine(engine: Engine) -> Engine:
    """``engine`` with no pool: each use connects anew, so a check of the database is bounded
    by the connect timeout even when the pooled connections hang."""
    return _engine_beside(engine, poolclass=NullPool, pool_size=None)


def _engine_beside(engine: Engine, **options) -> Engine:
    """On PostgreSQL a new engine for the same database with ``options``; on SQLite
    ``engine`` itself (a file in this process: no network to bound)."""
    if is_sqlite(engine):
        return engine
    return make_engine(engine.url.render_as_string(hide_password=False), **options)


def _track_busy_connections(engine: Engine) -> None:
    """Keep, per engine, since when each checked-out connection is busy (for
    ``close_hung_connections``). Registered before the idle ping: a ping that hangs counts."""
    busy = engine.__dict__.setdefault("_pbx_crm_busy", {})

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        busy[id(record)] = (time.monotonic(), dbapi_connection)

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        busy.pop(id(record), None)


def close_hung_connections(engine: Engine, busy_longer_than: float) -> int:
    """Close the sockets of the PostgreSQL connections busy longer than ``busy_longer_than``
    seconds: what waits on them fails at once, and the pool drops them. A database behind a
    dead path may never answer, nor the kernel notice (a proxy holding the connection);
    statement timeouts cannot help, the statement never arrived. Returns how many."""
    busy, now, closed = engine.__dict__.get("_pbx_crm_busy", {}), time.monotonic(), 0
    for key, (since, dbapi_connection) in list(busy.items()):
        if now - since <= busy_longer_than or busy.pop(key, None) is None:
            continue
        try:
            with socket.socket(fileno=os.dup(dbapi_connection.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            closed += 1
        except (OSError, ValueError, AttributeError):
            pass  # closed meanwhile
    if closed:
        log.warning("closed %d database connection(s) busy for over %.0f s: the database "
                    "hangs or the network path to it is dead", closed, busy_longer_than)
        engine.dispose()  # the idle ones went the same way: new connections from now on
    return closed


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection with a round trip only when it has sat idle a while (the
    server may have restarted meanwhile); a busy process reuses its connections within
    milliseconds, and a ping on every checkout cost one more round trip per transaction."""
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool drops this connection and checks out a new one.
            raise exc.DisconnectionError(str(error)) from error


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # The driver's own transaction handling is switched off so that we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode:  # "": no transaction, each statement reads on its own (autocommit_reader)
            connection.exec_driver_sql(f"BEGIN {mode}")


def _with_options(engine: Engine, **options) -> Engine:
    """``engine.execution_options(**options)``, made once per engine and kept on it: the
    transactions and answers that use it run all day."""
    kept = engine.__dict__.setdefault("_pbx_crm_with_options", {})
    key = tuple(sorted(options.items()))
    if key not in kept:
        kept[key] = engine.execution_options(**options)
    return kept[key]


def _read_only_engine(engine: Engine) -> Engine:
    """``engine`` for read-only work: SQLite begins DEFERRED (a reader never waits for the
    write lock), PostgreSQL begins READ ONLY (a stray write fails instead of landing)."""
    return _with_options(engine, sqlite_begin="DEFERRED", postgresql_readonly=True)


def autocommit_reader(engine: Engine) -> Engine:
    """``engine`` for a read of a statement or two, each consistent on its own, that needs
    no transaction around them: no BEGIN and COMMIT (on PostgreSQL two more round trips).
    Only for reading."""
    if is_sqlite(engine):
        return _with_options(engine, sqlite_begin="")
    return _with_options(engine, isolation_level="AUTOCOMMIT")


def _sqlite_writers_turn(engine: Engine):
    """The lock this process's SQLite writers take turns on. SQLite lets one writer in at a
    time and makes the others poll (sleeping 1, 2, 5 ... 100 ms between tries): under a few
    hundred writes a second the sleeps, not the writes, made calls wait. Other processes
    still meet the busy timeout."""
    return engine.__dict__.setdefault("_pbx_crm_writers_turn", threading.Lock())


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    if read_only or not is_sqlite(engine):
        with _transaction(engine, read_only) as session:
            yield session
        return
    turn = _sqlite_writers_turn(engine)
    # Past the busy timeout, go on without it: SQLite's own wait then says what holds it.
    mine = turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        with _transaction(engine, read_only) as session:
            yield session
    finally:
        if mine:
            turn.release()


@contextmanager
def _transaction(engine: Engine, read_only: bool) -> Iterator[Session]:
    bind = _read_only_engine(engine) if read_only else engine
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            if read_only:
                # Detach first: what was read stays usable afterwards.
                session.expunge_all()
            if read_only and is_sqlite(engine):
                session.rollback()
            else:
                # PostgreSQL's READ ONLY transaction ends with COMMIT too (it cannot have
                # written): a ROLLBACK makes the driver drop every statement it prepared on
                # the connection, and pages and calls run the same few statements all day.
                session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "pbx_crm.sql:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default); safe to run again."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def schema_dump_path(dialect: str) -> Path:
    """The readable schema dump shipped for admins, per database."""
    return Path(str(resources.files("pbx_crm.sql") / f"schema.{dialect}.sql"))


class DatabaseAway(Exception):
    """The database does not answer (down, starting, unreachable): an outage that ends by
    itself, unlike a wrong URL, password or schema (``CrmError``: someone has to fix it)."""


# What a PostgreSQL server says while it cannot take connections for a while; any other
# refusal it answers with (a wrong password, role or database name) is a setting to fix.
_POSTGRES_PASSING_REFUSALS = (
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode", "the database system is not yet accepting",
    "too many clients", "remaining connection slots are reserved",
)


def check_database(engine: Engine) -> None:
    """Connect and compare the schema's revision with this version's.

    Raises ``DatabaseAway`` for an outage (no server at the address, no answer, a server
    starting up), ``CrmError`` for what waiting will not mend: a refused login, a missing
    database, a host name that does not resolve, a schema that is not at head."""
    from .errors import CrmError

    try:
        require_schema_at_head(engine)
    except exc.OperationalError as error:
        reason = str(error.orig or error).strip()
        first_line = reason.splitlines()[0] if reason else repr(error)
        if _is_outage(engine, reason):
            raise DatabaseAway(first_line) from None
        raise CrmError("database %(url)s: %(error)s",
                       url=engine.url.render_as_string(hide_password=True),
                       error=first_line) from None


def require_schema_at_head(engine: Engine) -> None:
    """Refuse (``CrmError``) a database whose schema is not the one this version needs."""
    from .errors import CrmError

    current, head = current_revision(engine), head_revision()
    if current is None:
        raise CrmError("the database is not migrated: run `pbx-crm db upgrade` first")
    if current != head:
        raise CrmError("the database is at revision %(current)s, not %(head)s: run `pbx-crm db "
                       "upgrade` first", current=current, head=head)


def database_away(engine: Engine, error: BaseException) -> bool:
    """Whether ``error``, raised by a statement on ``engine``, is an outage that passes by
    itself (the server down or unreachable, a connection dropped, the pool waited out, SQLite's
    write lock held past the busy timeout), not a fault to fix (a missing table, say)."""
    if isinstance(error, (exc.TimeoutError, exc.InterfaceError)):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError) and _is_outage(
        engine, str(error.orig or error).strip())


def _is_outage(engine: Engine, reason: str) -> bool:
    if is_sqlite(engine):
        return "database is locked" in reason  # held past the busy timeout by another writer
    if "FATAL:" in reason:  # the server answered: only a few of its refusals pass by themselves
        return any(refusal in reason for refusal in _POSTGRES_PASSING_REFUSALS)
    # Nothing answered at the address (refused, timed out, unreachable, dropped); a host name
    # that does not resolve is a typo far more often than an outage.
    return "resolve host" not in reason and "translate host name" not in reason
