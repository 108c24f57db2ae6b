"""delivery reasons with details, heartbeat contradictions, head-end runs

Deliveries and play-log rows get a reason code and the receiver's own detail beside it
(headend/services/deliveries.py REASONS); a delivery gets the time heartbeats started to
contradict its "playing"; the head-end records its runs so a broadcast that aired while it
was down is told apart from one nobody reported. Old "fetch: <detail>" reasons become the
code "fetch-failed" with that detail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'headend_runs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=False),
        sa.Column('alive_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_headend_runs')))
    with op.batch_alter_table('headend_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_headend_runs_alive_at'), ['alive_at'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason_detail', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('contradicted_at', UTCDateTime(), nullable=True))
        batch_op.create_index('ix_deliveries_state', ['state'], unique=False)

    with op.batch_alter_table('playlog', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('reason_detail', sa.String(length=120), nullable=True))

    op.execute("UPDATE deliveries SET reason_detail = substr(reason, 8), reason = 'fetch-failed'"
               " WHERE reason LIKE 'fetch: %'")
    # Proof-of-play rows ended by the receiver: their outcome is their reason.
    op.execute("UPDATE playlog SET reason = CASE outcome WHEN 'played' THEN 'finished'"
               " ELSE outcome END WHERE outcome IS NOT NULL")


def downgrade():
    op.execute("UPDATE deliveries SET reason = substr('fetch: ' || coalesce(reason_detail, ''),"
               " 1, 64) WHERE reason = 'fetch-failed'")
    with op.batch_alter_table('playlog', schema=None) as batch_op:
        batch_op.drop_column('reason_detail')
        batch_op.drop_column('reason')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_state')
        batch_op.drop_column('contradicted_at')
        batch_op.drop_column('reason_detail')

    with op.batch_alter_table('headend_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_headend_runs_alive_at'))

    op.drop_table('headend_runs')
