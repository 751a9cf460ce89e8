"""Team rollups of the report tables: the daily moves and the time-in-stage histogram summed
over the sellers (per pipeline, local day and stage pair; per pipeline, local day, stage
left and bucket), what a whole team's report reads, the histogram with an index covering
that read.

Filled from the existing per-seller tables.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _keys(table: str) -> list:
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pipeline_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'],
                                name=op.f(f'fk_{table}_pipeline_id_pipelines'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}')),
    ]


def _sum(name: str, kind=sa.BigInteger) -> sa.Column:
    return sa.Column(name, kind(), server_default='0', nullable=False)


def upgrade() -> None:
    op.create_table(
        'report_team_days', *_keys('report_team_days'),
        sa.Column('from_stage_id', sa.Integer(), nullable=True),
        sa.Column('to_stage_id', sa.Integer(), nullable=False),
        _sum('moves', sa.Integer), _sum('stay_seconds'), _sum('amount_minor'),
        _sum('cycle_seconds'),
        sa.ForeignKeyConstraint(['from_stage_id'], ['stages.id'],
                                name=op.f('fk_report_team_days_from_stage_id_stages'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['to_stage_id'], ['stages.id'],
                                name=op.f('fk_report_team_days_to_stage_id_stages'),
                                ondelete='CASCADE'),
    )
    with op.batch_alter_table('report_team_days', schema=None) as batch_op:
        batch_op.create_index('ix_report_team_days_pipeline_day', ['pipeline_id', 'day'],
                              unique=False)
    op.create_table(
        'report_team_stay_buckets', *_keys('report_team_stay_buckets'),
        sa.Column('stage_id', sa.Integer(), nullable=False),
        sa.Column('bucket', sa.SmallInteger(), nullable=False),
        _sum('moves', sa.Integer),
        sa.ForeignKeyConstraint(['stage_id'], ['stages.id'],
                                name=op.f('fk_report_team_stay_buckets_stage_id_stages'),
                                ondelete='CASCADE'),
    )
    with op.batch_alter_table('report_team_stay_buckets', schema=None) as batch_op:
        batch_op.create_index('ix_report_team_stay_buckets_read',
                              ['pipeline_id', 'day', 'stage_id', 'bucket', 'moves'],
                              unique=False)

    from pbx_crm.reporting.days_rebuild import rebuild_team_rollups

    rebuild_team_rollups(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table('report_team_stay_buckets', schema=None) as batch_op:
        batch_op.drop_index('ix_report_team_stay_buckets_read')
    op.drop_table('report_team_stay_buckets')
    with op.batch_alter_table('report_team_days', schema=None) as batch_op:
        batch_op.drop_index('ix_report_team_days_pipeline_day')
    op.drop_table('report_team_days')
