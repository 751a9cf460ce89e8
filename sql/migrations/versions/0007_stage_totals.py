"""Stage totals: the board's column counts and money per pipeline, stage and owner, kept by
the deal services instead of counted over the whole pipeline on every page load.

Filled from the existing deals.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 00:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stage_totals',
        sa.Column('pipeline_id', sa.Integer(), nullable=False),
        sa.Column('stage_id', sa.Integer(), nullable=False),
        sa.Column('owner_key', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('deals', sa.Integer(), server_default='0', nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'],
                                name=op.f('fk_stage_totals_pipeline_id_pipelines'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['stage_id'], ['stages.id'],
                                name=op.f('fk_stage_totals_stage_id_stages'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('pipeline_id', 'stage_id', 'owner_key',
                                name=op.f('pk_stage_totals')),
    )

    from pbx_crm.funnel.stage_totals import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table('stage_totals')
