"""live sessions kept across a restart

Live and relay sessions (headend/live/), so a head-end that restarts ends a microphone session
(its socket is gone) with a signed stop and resumes a relay still inside its window; the list
of recent sessions survives it too.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'live_sessions',
        sa.Column('id', sa.String(length=48), nullable=False),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('receivers', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('bid', sa.String(length=48), nullable=False),
        sa.Column('sent', sa.JSON(), nullable=False),
        sa.Column('jitter_ms', sa.Integer(), nullable=False),
        sa.Column('fallbacks', sa.Integer(), nullable=False),
        sa.Column('resumes', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('ended_at', UTCDateTime(), nullable=True),
        sa.Column('until', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_live_sessions')))
    with op.batch_alter_table('live_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_live_sessions_state'), ['state'], unique=False)


def downgrade():
    with op.batch_alter_table('live_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_live_sessions_state'))
    op.drop_table('live_sessions')
