"""a broadcast's volume

The volume a broadcast's play commands carry: a programme's own (``programmes.volume``, held
within its zones' limits when it is saved), so a receiver that gets the play plays it as loud
as one that had it in its schedule window. Null: each receiver's default volume.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volume', sa.Integer(), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, never a copy of the table: on SQLite, dropping the old
    # broadcasts table would cascade into every delivery of it.
    with op.batch_alter_table('broadcasts', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('volume')
