"""Robots: rule watermarks, the trigger reader's cursor, users' e-mail, and their indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 23:05:00
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

MISSED_INBOUND = "direction = 'inbound' AND disposition IN ('missed', 'abandoned')"


def upgrade() -> None:
    op.create_table('robot_cursors',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('position', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_robot_cursors'))
    )
    with op.batch_alter_table('robot_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checked_until', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))

    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.create_index('ix_deals_stage_entered', ['stage_id', 'stage_entered_at'], unique=False)
        batch_op.create_index('ix_deals_stage_activity', ['stage_id', 'last_activity_at'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_missed_ended', ['ended_at'], unique=False, sqlite_where=sa.text(MISSED_INBOUND), postgresql_where=sa.text(MISSED_INBOUND))

    for table in ('timeline_entries', 'notifications'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_robot_run', ['robot_run_id'], unique=False, sqlite_where=sa.text('robot_run_id IS NOT NULL'), postgresql_where=sa.text('robot_run_id IS NOT NULL'))

    with op.batch_alter_table('robot_runs', schema=None) as batch_op:
        batch_op.create_index('ix_robot_runs_snoozed', ['rule_id', 'snooze_until'], unique=False, sqlite_where=sa.text('snooze_until IS NOT NULL'), postgresql_where=sa.text('snooze_until IS NOT NULL'))


def downgrade() -> None:
    for table in ('notifications', 'timeline_entries'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_robot_run', sqlite_where=sa.text('robot_run_id IS NOT NULL'), postgresql_where=sa.text('robot_run_id IS NOT NULL'))

    with op.batch_alter_table('robot_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_robot_runs_snoozed', sqlite_where=sa.text('snooze_until IS NOT NULL'), postgresql_where=sa.text('snooze_until IS NOT NULL'))

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_missed_ended', sqlite_where=sa.text(MISSED_INBOUND), postgresql_where=sa.text(MISSED_INBOUND))

    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.drop_index('ix_deals_stage_activity')
        batch_op.drop_index('ix_deals_stage_entered')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email')

    with op.batch_alter_table('robot_rules', schema=None) as batch_op:
        batch_op.drop_column('checked_until')

    op.drop_table('robot_cursors')
