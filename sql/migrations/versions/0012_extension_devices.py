"""A seller's extension may ring several devices: ``user_extensions.devices``, text.

A desk phone and a softphone answer for one extension: the dialplan dials both, and a channel
names the device (``PJSIP/101b-…``, ``Local/101b@phones-…``), not the extension. ``devices``
lists them, comma-separated (``101a,101b``), so the CRM reads either device as its seller.
Empty, as every row before this step: the extension is its own only device. A call keeps
the device that answered it (``calls.answered_device``) beside the extension.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_extensions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('devices', sa.Text(), nullable=True))
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answered_device', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('answered_device')
    with op.batch_alter_table('user_extensions', schema=None) as batch_op:
        batch_op.drop_column('devices')
