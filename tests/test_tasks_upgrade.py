"""Upgrading to one callback task per deal (migration 0010), on SQLite and PostgreSQL.

Before it, every missed call added a task of its own: a customer who rang four times while
nobody answered left four "Call back" tasks. The upgrade makes them one task that counts the
four calls, and does not remind anyone of tasks that were already due before it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from postgres_databases import new_postgres_database
from sqlalchemy import text
from sqlmodel import select

from pbx_crm import db
from pbx_crm.db import transaction
from pbx_crm.models import Notification, Task

T0 = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_engine(request, tmp_path):
    """A database at migration 0009, before the Tasks module."""
    if request.param == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
        db.upgrade(engine, "0009")
        yield engine
        engine.dispose()
        return
    with new_postgres_database("pbx_crm_test_tasks_upgrade") as engine:
        db.upgrade(engine, "0009")
        yield engine


def stamp(engine, moment: datetime):
    return moment.replace(tzinfo=None) if engine.dialect.name == "sqlite" else moment


def test_four_open_callback_tasks_of_one_deal_become_one_that_counts_four_calls(old_engine):
    at = lambda minutes: stamp(old_engine, T0 + timedelta(minutes=minutes))  # noqa: E731
    with old_engine.begin() as connection:
        run = lambda sql, **values: connection.execute(text(sql), values)  # noqa: E731
        run("INSERT INTO pipelines (id, name, position, is_default, creates_deals_from_calls,"
            " currency, created_at) VALUES (1, 'Sales', 0, true, true, 'IDR', :t)", t=at(0))
        run("INSERT INTO stages (id, pipeline_id, name, position, kind, is_unsorted) "
            "VALUES (1, 1, 'Unsorted', 0, 'open', true)")
        for deal_id in (1, 2):
            run("INSERT INTO deals (id, pipeline_id, stage_id, title, currency, source, "
                "created_at, updated_at, stage_entered_at, last_activity_at, version) "
                "VALUES (:id, 1, 1, 'Call', 'IDR', 'call', :t, :t, :t, :t, 1)",
                id=deal_id, t=at(0))
        for n in range(1, 6):
            deal_id = 1 if n <= 4 else 2
            run("INSERT INTO calls (id, uniqueid, linkedid, direction, caller_raw, "
                "caller_e164, ringing_at, ended_at, disposition, deal_id) VALUES (:id, :u, :u,"
                " 'inbound', '0812', :e164, :t, :t, 'missed', :deal)",
                id=n, u=f"1700.{n}", e164=f"+6281200000{deal_id}", t=at(10 * n), deal=deal_id)
            run("INSERT INTO tasks (deal_id, title, kind, due_at, call_id, created_at) "
                "VALUES (:deal, :title, 'callback', :due, :call, :t)",
                deal=deal_id, title=f"Call back +6281200000{deal_id} (missed call)",
                due=at(10 * n + 15), call=n, t=at(10 * n))
        run("INSERT INTO users (id, login, name, password_hash, role, created_at) "
            "VALUES (1, 'ana', 'Ana', 'x', 'seller', :t)", t=at(0))
        run("INSERT INTO notifications (user_id, kind, body, deal_id, created_at) "
            "VALUES (1, 'robot', 'Deal #1 waits', 1, :t)", t=at(1))
        # A manual task due long after the upgrade.
        run("INSERT INTO tasks (deal_id, title, kind, due_at, created_at) "
            "VALUES (2, 'Send the offer', 'manual', :due, :t)",
            due=stamp(old_engine, datetime.now(UTC) + timedelta(days=30)), t=at(0))

    db.upgrade(old_engine)

    with transaction(old_engine, read_only=True) as session:
        first, fifth, offer = session.exec(select(Task).order_by(Task.id)).all()
        notice, = session.exec(select(Notification)).all()
    assert (first.deal_id, first.missed_calls, first.call_id, first.phone) == (
        1, 4, 4, "+62812000001")
    assert first.due_at == T0 + timedelta(minutes=25)  # the first call's, the soonest
    assert first.last_missed_at == T0 + timedelta(minutes=40)
    assert first.title == "Call back +62812000001 (4 missed calls)"
    assert (fifth.deal_id, fifth.missed_calls, fifth.phone) == (2, 1, "+62812000002")
    # Due long ago: not reminded now. The offer falls due later: its reminder is still to come.
    assert first.reminded_at is not None and fifth.reminded_at is not None
    assert offer.reminded_at is None and offer.missed_calls is None
    # The notifications table gained a column (SQLite copies it): what it held is kept.
    assert (notice.body, notice.deal_id, notice.task_id) == ("Deal #1 waits", 1, None)
