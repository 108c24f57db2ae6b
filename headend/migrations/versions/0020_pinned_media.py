"""pinned media

``media_items.pinned``: the site's pinned set, media kept on every receiver ahead of need and
never evicted from its cache (the alert tone, standard emergency messages). True: in the set;
False: it left the set (receivers that hold it are told to unpin it when they come back);
null: never pinned.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('media_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pinned', sa.Boolean(), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, never a copy of the table (broadcasts refer to media items).
    with op.batch_alter_table('media_items', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('pinned')
