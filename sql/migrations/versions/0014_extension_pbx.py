"""An extension is a number on one Asterisk box: ``user_extensions.pbx``.

A company with two offices has two PBXes, and both may have an extension 101, each ringing a
different seller. ``pbx`` names the box as the settings do (``[pbx:jakarta]``); NULL, as every
row before this step, is the default box (``main``, the ami_* settings). An extension is unique
per box: ``(pbx, extension)``, and a partial index for the default box, whose NULLs a UNIQUE
constraint would not compare. A downgrade fails while a number repeats across boxes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-14 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_DEFAULT_BOX = "pbx IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('user_extensions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pbx', sa.String(length=32), nullable=True))
        batch_op.drop_constraint('uq_user_extensions_extension', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_user_extensions_pbx_extension'),
                                          ['pbx', 'extension'])
    op.create_index('uq_user_extensions_extension', 'user_extensions', ['extension'],
                    unique=True, sqlite_where=sa.text(_DEFAULT_BOX),
                    postgresql_where=sa.text(_DEFAULT_BOX))


def downgrade() -> None:
    op.drop_index('uq_user_extensions_extension', table_name='user_extensions',
                  sqlite_where=sa.text(_DEFAULT_BOX), postgresql_where=sa.text(_DEFAULT_BOX))
    with op.batch_alter_table('user_extensions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_user_extensions_pbx_extension'), type_='unique')
        batch_op.drop_column('pbx')
        batch_op.create_unique_constraint(batch_op.f('uq_user_extensions_extension'),
                                          ['extension'])
