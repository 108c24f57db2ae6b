"""a receiver's reset nonce

The nonce a receiver put in its latest birth (32 random bytes in hex, new every boot, gone once
used): the head-end signs a ``reset_floor`` command for it, the one way to bring a stuck
command-counter floor back down (docs/protocol.md, ``reset_floor``). Null until a birth with
one arrives.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('receivers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reset_nonce', sa.String(length=64), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, never a copy of the table: on SQLite, dropping the old
    # receivers table would cascade into every row that refers to a receiver.
    with op.batch_alter_table('receivers', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('reset_nonce')
