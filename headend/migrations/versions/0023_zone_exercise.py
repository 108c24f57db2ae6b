"""zones marked for exercises

``zones.exercise``: every receiver of the zone takes CAP alerts of status Exercise (as
``receivers.exercise`` marks one receiver); null or false: only its marked receivers.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exercise', sa.Boolean(), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, never a copy of the table (receivers refer to zones).
    with op.batch_alter_table('zones', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('exercise')
