"""Every seller's leg of a call: ``call_legs``; and a queue call's queue and hold time.

A queue rings several members, a ring group several phones, a transfer hands the caller to
another seller: one call record no longer says who was rung, for how long, and who talked. A
leg is one seller's phone rung once (``position`` in the order rung), with how it ended
(``outcome``: answered, cancelled, noanswer, busy, unknown), its ring time and that seller's
share of the talk; the AMI listener writes a call's legs when the call ends. ``calls.queue``
and ``calls.hold_seconds`` keep the queue a call waited in and how long the caller waited
(an abandoned queue call is missed with its wait). Calls recorded before this step have no
legs.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-13 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'call_legs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('extension', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('device', sa.String(length=40), server_default='', nullable=False),
        sa.Column('outcome', sa.String(length=10), nullable=False),
        sa.Column('ring_seconds', sa.Float(), nullable=True),
        sa.Column('talk_seconds', sa.Integer(), nullable=True),
        sa.CheckConstraint("outcome IN ('answered', 'cancelled', 'noanswer', 'busy', "
                           "'unknown')", name=op.f('ck_call_legs_outcome')),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id'],
                                name=op.f('fk_call_legs_call_id_calls'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_call_legs_user_id_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_call_legs')),
        sa.UniqueConstraint('call_id', 'position', name=op.f('uq_call_legs_call_id_position')),
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hold_seconds', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('hold_seconds')
        batch_op.drop_column('queue')
    op.drop_table('call_legs')
