"""Transactions and pooled connections: read-only work cannot write, a PostgreSQL connection
keeps the statements it prepared, and a connection the server dropped is replaced before use."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import InternalError
from sqlmodel import select

from pbx_crm import db
from pbx_crm.db import make_engine, transaction
from pbx_crm.models import Pipeline

postgres_only = pytest.mark.parametrize(
    "engine", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
sqlite_only = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def test_what_a_read_only_transaction_read_stays_usable_after_it(engine):
    with transaction(engine) as session:
        session.add(Pipeline(name="Sales", currency="IDR"))
    with transaction(engine, read_only=True) as session:
        pipeline = session.exec(select(Pipeline)).one()
    assert pipeline.name == "Sales"  # detached, not expired


@postgres_only
def test_a_write_in_a_read_only_transaction_fails_on_postgresql(engine):
    with pytest.raises(InternalError, match="read-only transaction"), \
            transaction(engine, read_only=True) as session:
        session.add(Pipeline(name="Stray", currency="IDR"))
        session.flush()
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(Pipeline).where(Pipeline.name == "Stray")).first() is None


@sqlite_only
def test_a_stray_write_in_a_read_only_transaction_is_not_kept_on_sqlite(engine):
    with transaction(engine, read_only=True) as session:
        session.add(Pipeline(name="Stray", currency="IDR"))
        session.flush()
    with transaction(engine, read_only=True) as session:
        assert session.exec(select(Pipeline)).first() is None


@postgres_only
def test_statements_stay_prepared_across_read_only_transactions(engine):
    """The driver prepares a statement run often enough on one connection; a read-only
    transaction ending with ROLLBACK would drop them all every time."""
    engine.dispose()
    statement = select(Pipeline).where(Pipeline.name == "Sales")
    for _ in range(8):
        with transaction(engine, read_only=True) as session:
            session.exec(statement).first()
    with engine.connect() as connection:
        prepared = connection.execute(
            text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE :pattern"),
            {"pattern": "%FROM pipelines%"}).scalar_one()
    assert prepared == 1


@postgres_only
def test_a_connection_the_server_dropped_while_idle_is_replaced_before_use(engine, monkeypatch):
    engine.dispose()
    with engine.connect() as connection:
        first_backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    # The connection above is back in the pool; the server drops it (as on a restart).
    server = make_engine(engine.url.render_as_string(False))
    with server.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_backend})
    server.dispose()
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # it has been idle long enough
    with transaction(engine, read_only=True) as session:
        backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert backend != first_backend
