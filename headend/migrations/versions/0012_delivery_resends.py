"""a delivery's re-sends

How many times an emergency's play was sent again to a receiver that did not ack it within
``emergency_confirm_s`` (headend/services/escalation.py), shown on the emergency's page and
bounded by ``emergency_resends``. Zero for every existing row.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resends', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade():
    # ALTER TABLE ... DROP COLUMN, never a copy of the table (as 0010).
    with op.batch_alter_table('deliveries', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('resends')
