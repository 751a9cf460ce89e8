"""Engines, sessions and migrations for the one schema on SQLite and PostgreSQL.

Edges (CLI, web routes, AGI dispatcher, jobs) open a transaction with ``transaction(engine)``
and hand the session to the services, which never commit. On SQLite a writing transaction
starts with ``BEGIN IMMEDIATE``: it waits its turn for the write lock up front (the busy
timeout), instead of failing half-way when a reader tries to become a writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
POOL_SIZE = 24


def is_sqlite(engine_or_url) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str, **options) -> Engine:
    """An engine for ``url``; an SQLite file's directory is created on first use."""
    # Enough connections for the FastAGI database workers, the call writer and the replayer
    # at once: a hook waiting for a pooled connection would wait out its budget.
    options.setdefault("pool_size", POOL_SIZE)
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
    return create_engine(url, pool_pre_ping=True, **options)


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
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    bind = engine.execution_options(sqlite_begin="DEFERRED") if read_only else engine
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            if read_only:
                # Detach first: what was read stays usable after the rollback.
                session.expunge_all()
                session.rollback()
            else:
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


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def schema_dump_path(dialect: str) -> Path:
    """The readable schema dump shipped for admins, per database."""
    return Path(str(resources.files("pbx_crm.sql") / f"schema.{dialect}.sql"))
