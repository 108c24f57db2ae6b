"""programme relays

``programme_occurrences.live_id``: the live session that relayed the occurrence's relay
segment (headend/services/programme_relays.py). ``live_sessions.prio``: the class its stream
is sent in (a programme's relay keeps its programme's class; null: live).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('programme_occurrences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('live_id', sa.String(length=48), nullable=True))
    with op.batch_alter_table('live_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prio', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('live_sessions', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('prio')
    with op.batch_alter_table('programme_occurrences', schema=None,
                              recreate='never') as batch_op:
        batch_op.drop_column('live_id')
