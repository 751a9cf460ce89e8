"""Missed calls kept for the reports: ``report_call_days.missed`` counts the inbound calls
missed or abandoned per day, stage and seller, and ``calls.called_back_at`` holds an inbound
call's call back (the deal's first later call out or answered call), with
``ix_calls_missed_ringing`` holding the missed calls by when they rang.

Calls by stage over a long period then read the daily counts alone, and the callback report
one read of the period's missed calls, instead of a look-up per missed call. Both are filled
from the existing calls: the call backs for every inbound call, the call counts recounted in
the zone ``report_days`` counts in.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-16 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

MISSED_INBOUND = "direction = 'inbound' AND disposition IN ('missed', 'abandoned')"


def upgrade() -> None:
    with op.batch_alter_table('report_call_days', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missed', sa.Integer(), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('called_back_at', sa.DateTime(timezone=True),
                                      nullable=True))

    from pbx_crm.funnel.call_backs import fill_call_backs
    from pbx_crm.reporting.days_rebuild import rebuild_call_days

    bind = op.get_bind()
    fill_call_backs(bind)
    zone = bind.execute(sa.text('SELECT time_zone FROM report_day_zone WHERE id = 1')).scalar()
    if zone is not None:  # nothing is kept before a zone is chosen
        rebuild_call_days(bind, time_zone=zone)
    op.create_index('ix_calls_missed_ringing', 'calls',
                    ['ringing_at', 'deal_id', 'called_back_at'],
                    sqlite_where=sa.text(MISSED_INBOUND), postgresql_where=sa.text(MISSED_INBOUND))


def downgrade() -> None:
    op.drop_index('ix_calls_missed_ringing', table_name='calls',
                  sqlite_where=sa.text(MISSED_INBOUND), postgresql_where=sa.text(MISSED_INBOUND))
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('called_back_at')
    with op.batch_alter_table('report_call_days', schema=None) as batch_op:
        batch_op.drop_column('missed')
