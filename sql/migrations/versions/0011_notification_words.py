"""Notifications keep their words: ``notifications.data``, JSON, beside the English ``body``.

A robot's notice is written as an English template with named values (``"say"``, see
``pbx_crm.people.language``), so the notifications page says it in the reader's language, as
the deal page does with a timeline entry's ``data``. Rows written before keep no words and
are shown as their body says.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                           'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('data')
