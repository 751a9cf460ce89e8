"""A deal's calls in time order: ``ix_calls_deal_ringing`` on ``calls (deal_id, ringing_at)``.

The callback report looks, for every missed call of the period, for the deal's next call out
or answered call: with this index each is one probe, not a read of the deal's calls.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-15 09:00:00
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_calls_deal_ringing', 'calls', ['deal_id', 'ringing_at'])


def downgrade() -> None:
    op.drop_index('ix_calls_deal_ringing', table_name='calls')
