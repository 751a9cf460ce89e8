"""Report days: stage moves summed per local day for the funnel reports, and the indexes the
reports' remaining direct queries read.

The table is filled from the existing stage history in the default company time zone;
``pbx-crm report rebuild`` recounts it in another one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 23:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

DEFAULT_TIME_ZONE = 'Asia/Jakarta'


def upgrade() -> None:
    op.create_table(
        'report_day_zone',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('time_zone', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_report_day_zone')),
    )
    op.create_table(
        'report_days',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pipeline_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('from_stage_id', sa.Integer(), nullable=True),
        sa.Column('to_stage_id', sa.Integer(), nullable=False),
        sa.Column('seller_id', sa.Integer(), nullable=True),
        sa.Column('moves', sa.Integer(), server_default='0', nullable=False),
        sa.Column('stay_seconds', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('cycle_seconds', sa.BigInteger(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['from_stage_id'], ['stages.id'],
                                name=op.f('fk_report_days_from_stage_id_stages'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'],
                                name=op.f('fk_report_days_pipeline_id_pipelines'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['seller_id'], ['users.id'],
                                name=op.f('fk_report_days_seller_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['to_stage_id'], ['stages.id'],
                                name=op.f('fk_report_days_to_stage_id_stages'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_report_days')),
    )
    with op.batch_alter_table('report_days', schema=None) as batch_op:
        batch_op.create_index('ix_report_days_pipeline_day', ['pipeline_id', 'day'],
                              unique=False)
    with op.batch_alter_table('stage_history', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_history_pipeline')
        batch_op.create_index('ix_stage_history_period',
                              ['pipeline_id', 'moved_at', 'from_stage_id', 'to_stage_id',
                               'from_entered_at', 'deal_id'], unique=False)
        batch_op.create_index('ix_stage_history_to_stage', ['to_stage_id', 'moved_at', 'deal_id'],
                              unique=False)

    from pbx_crm.reporting.days_rebuild import rebuild_days

    rebuild_days(op.get_bind(), time_zone=DEFAULT_TIME_ZONE)


def downgrade() -> None:
    with op.batch_alter_table('stage_history', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_history_to_stage')
        batch_op.drop_index('ix_stage_history_period')
        batch_op.create_index('ix_stage_history_pipeline', ['pipeline_id', 'moved_at'],
                              unique=False)
    with op.batch_alter_table('report_days', schema=None) as batch_op:
        batch_op.drop_index('ix_report_days_pipeline_day')
    op.drop_table('report_days')
    op.drop_table('report_day_zone')
