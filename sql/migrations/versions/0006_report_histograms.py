"""Report histograms and call counts: time in stage and creation-to-win time counted per day
in log-spaced duration buckets (the long periods' medians), and calls on deals per day and
stage with the deals called (the long periods' calls by stage).

Filled from the existing stage history and calls in the zone ``report_days`` counts in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _keys(table: str, *, stage: bool) -> list:
    columns = [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pipeline_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
    ]
    constraints = [
        sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'],
                                name=op.f(f'fk_{table}_pipeline_id_pipelines'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['seller_id'], ['users.id'],
                                name=op.f(f'fk_{table}_seller_id_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}')),
    ]
    if stage:
        columns.append(sa.Column('stage_id', sa.Integer(), nullable=False))
        constraints.append(sa.ForeignKeyConstraint(['stage_id'], ['stages.id'],
                                                   name=op.f(f'fk_{table}_stage_id_stages'),
                                                   ondelete='CASCADE'))
    columns.append(sa.Column('seller_id', sa.Integer(), nullable=True))
    return columns + constraints


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default='0', nullable=False)


def upgrade() -> None:
    op.create_table('report_stay_buckets', *_keys('report_stay_buckets', stage=True),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False), _counter('moves'))
    op.create_table('report_cycle_buckets', *_keys('report_cycle_buckets', stage=False),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False), _counter('wins'))
    op.create_table('report_call_days', *_keys('report_call_days', stage=True),
                    _counter('calls'), _counter('outbound'), _counter('deals_called'))
    for table in ('report_stay_buckets', 'report_cycle_buckets', 'report_call_days'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_pipeline_day', ['pipeline_id', 'day'],
                                  unique=False)

    from pbx_crm.reporting.days_rebuild import rebuild_histograms

    bind = op.get_bind()
    zone = bind.execute(sa.text('SELECT time_zone FROM report_day_zone WHERE id = 1')).scalar()
    if zone is not None:  # nothing is kept before a zone is chosen
        rebuild_histograms(bind, time_zone=zone)


def downgrade() -> None:
    for table in ('report_call_days', 'report_cycle_buckets', 'report_stay_buckets'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_pipeline_day')
        op.drop_table(table)
