"""early-morning volume

``zones.early_volume_limit``: the loudest a zone's receivers play in the site's early-morning
hours (``early_hours_start``-``early_hours_end``); null: no lower limit then. Sent with each
receiver's window (the ``schedule``'s ``early``) and enforced by the receiver.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.add_column(sa.Column('early_volume_limit', sa.Integer(), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, never a copy of the table (receivers refer to zones).
    with op.batch_alter_table('zones', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('early_volume_limit')
