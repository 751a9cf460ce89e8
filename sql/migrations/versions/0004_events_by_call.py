"""Events by call: the pops of one call are looked up by its linkedid on every ring and answer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 23:45:00
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_call', ['linkedid', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_call')
