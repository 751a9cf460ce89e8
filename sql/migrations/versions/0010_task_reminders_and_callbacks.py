"""Tasks: one open callback task per deal, and a reminder once per task.

A callback task now stands for every call of its deal missed while it is open: ``phone``
(the number to call back), ``missed_calls`` and ``last_missed_at``; a unique index on the open
callback task of a deal (``uq_tasks_open_callback``) lets the call path add or update it in
one statement, and keeps it one even when two hangups of the same customer are recorded at
once. ``reminded_at`` marks the task whose owner was told it fell due; ``ix_tasks_to_remind``
holds the open tasks not reminded yet, what the reminder pass reads. A notification names the
task it reminds of (``notifications.task_id``), so the page says it in the reader's language.

The existing rows are brought along: each callback task gets its number from its call; a
deal's several open callback tasks (one per missed call, before this step) become one, the
oldest (its due time, the soonest, stays), counting them all, the others deleted. Open tasks
already due are marked reminded: the upgrade does not send a burst of reminders for old tasks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 09:00:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

OPEN_CALLBACK = "kind = 'callback' AND done_at IS NULL"
TO_REMIND = "done_at IS NULL AND reminded_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('missed_calls', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('last_missed_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('reminded_at', sa.DateTime(timezone=True),
                                      nullable=True))

    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE tasks SET missed_calls = 1, last_missed_at = created_at, phone = "
        "(SELECT substr(coalesce(calls.caller_e164, calls.caller_raw), 1, 32) FROM calls "
        " WHERE calls.id = tasks.call_id) WHERE kind = 'callback'"))
    _merge_open_callbacks(bind)
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as UTCDateTime keeps it
    bind.execute(sa.text("UPDATE tasks SET reminded_at = :now WHERE done_at IS NULL "
                         "AND due_at IS NOT NULL AND due_at <= :now"), {"now": now})

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('uq_tasks_open_callback', ['deal_id'], unique=True,
                              sqlite_where=sa.text(OPEN_CALLBACK),
                              postgresql_where=sa.text(OPEN_CALLBACK))
        batch_op.create_index('ix_tasks_to_remind', ['due_at'],
                              sqlite_where=sa.text(TO_REMIND),
                              postgresql_where=sa.text(TO_REMIND))

    if bind.dialect.name == "sqlite":
        _notifications_with_task_sqlite()
    else:
        op.add_column('notifications', sa.Column('task_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_notifications_task_id_tasks'), 'notifications', 'tasks',
                              ['task_id'], ['id'], ondelete='CASCADE')
        op.create_index('ix_notifications_task', 'notifications', ['task_id'],
                        postgresql_where=sa.text('task_id IS NOT NULL'))


# SQLite adds a column with a named foreign key only by copying the table. Batch mode would
# write the constraints in an order of its own each run (the dump in sql/ would flicker), so
# the copy is spelled out, as SQLite's documentation describes it.
NOTIFICATIONS_SQLITE = """CREATE TABLE notifications (
	id INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	kind VARCHAR(32) NOT NULL,
	body TEXT NOT NULL,
	deal_id INTEGER,
	robot_run_id INTEGER,
	created_at DATETIME NOT NULL,
	read_at DATETIME,
	task_id INTEGER,
	CONSTRAINT pk_notifications PRIMARY KEY (id),
	CONSTRAINT fk_notifications_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE CASCADE,
	CONSTRAINT fk_notifications_robot_run_id_robot_runs FOREIGN KEY(robot_run_id) REFERENCES robot_runs (id) ON DELETE SET NULL,
	CONSTRAINT fk_notifications_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
	CONSTRAINT fk_notifications_task_id_tasks FOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE
)"""
NOTIFICATION_COLUMNS = "id, user_id, kind, body, deal_id, robot_run_id, created_at, read_at"


def _notifications_with_task_sqlite() -> None:
    op.execute("ALTER TABLE notifications RENAME TO notifications_old")
    for index in ("ix_notifications_deal_id", "ix_notifications_robot_run",
                  "ix_notifications_user_unread"):
        op.execute(f"DROP INDEX {index}")
    op.execute(NOTIFICATIONS_SQLITE)
    op.execute(f"INSERT INTO notifications ({NOTIFICATION_COLUMNS}) "
               f"SELECT {NOTIFICATION_COLUMNS} FROM notifications_old")
    op.execute("DROP TABLE notifications_old")
    op.execute("CREATE INDEX ix_notifications_deal_id ON notifications (deal_id)")
    op.execute("CREATE INDEX ix_notifications_robot_run ON notifications (robot_run_id) "
               "WHERE robot_run_id IS NOT NULL")
    op.execute("CREATE INDEX ix_notifications_user_unread ON notifications (user_id, read_at)")
    op.execute("CREATE INDEX ix_notifications_task ON notifications (task_id) "
               "WHERE task_id IS NOT NULL")


def _merge_open_callbacks(bind) -> None:
    rows = bind.execute(sa.text(
        f"SELECT id, deal_id, call_id, created_at, phone FROM tasks WHERE {OPEN_CALLBACK} "
        "AND deal_id IN (SELECT deal_id FROM tasks WHERE " + OPEN_CALLBACK
        + " GROUP BY deal_id HAVING count(*) > 1) ORDER BY deal_id, id")).all()
    by_deal: dict[int, list] = {}
    for row in rows:
        by_deal.setdefault(row.deal_id, []).append(row)
    for kept, *others in by_deal.values():
        latest = others[-1]
        count = 1 + len(others)
        title = f"Call back {kept.phone or latest.phone or ''} ({count} missed calls)"
        bind.execute(sa.text(
            "UPDATE tasks SET missed_calls = :count, last_missed_at = :last, "
            "call_id = :call_id, title = :title WHERE id = :id"),
            {"count": count, "last": latest.created_at, "call_id": latest.call_id,
             "title": " ".join(title.split())[:200], "id": kept.id})
        bind.execute(sa.text("DELETE FROM tasks WHERE id IN ("
                             + ", ".join(str(int(other.id)) for other in others) + ")"))


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_task', sqlite_where=sa.text('task_id IS NOT NULL'),
                            postgresql_where=sa.text('task_id IS NOT NULL'))
        batch_op.drop_constraint(batch_op.f('fk_notifications_task_id_tasks'),
                                 type_='foreignkey')
        batch_op.drop_column('task_id')

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_to_remind', sqlite_where=sa.text(TO_REMIND),
                            postgresql_where=sa.text(TO_REMIND))
        batch_op.drop_index('uq_tasks_open_callback', sqlite_where=sa.text(OPEN_CALLBACK),
                            postgresql_where=sa.text(OPEN_CALLBACK))
        batch_op.drop_column('reminded_at')
        batch_op.drop_column('last_missed_at')
        batch_op.drop_column('missed_calls')
        batch_op.drop_column('phone')
