"""alerts: what is wrong with a receiver (raised, cleared) and the outbox of their notices

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'alerts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('device_id', sa.String(length=48), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('reason', sa.String(length=24), nullable=True),
        sa.Column('severity', sa.String(length=8), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('raised_at', sa.DateTime(), nullable=False),
        sa.Column('cleared_at', sa.DateTime(), nullable=True),
        sa.Column('noticed_at', sa.DateTime(), nullable=True),
        sa.Column('repeats', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['device_id'], ['receivers.id'],
                                name='fk_alerts_device_id_receivers', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_alerts'),
    )
    op.create_index('ix_alerts_raised', 'alerts', ['raised_at'])
    # One open alert per receiver and kind, kept by the database itself.
    op.create_index('uq_alerts_open', 'alerts', ['device_id', 'kind'], unique=True,
                    sqlite_where=sa.text('cleared_at IS NULL'),
                    postgresql_where=sa.text('cleared_at IS NULL'))
    op.create_table(
        'alert_notices',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=8), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=False),
        sa.Column('state', sa.String(length=8), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
                                name='fk_alert_notices_alert_id_alerts', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_alert_notices'),
    )
    op.create_index('ix_alert_notices_alert_id', 'alert_notices', ['alert_id'])
    op.create_index('ix_alert_notices_due', 'alert_notices', ['state', 'due_at'])


def downgrade():
    op.drop_table('alert_notices')
    op.drop_table('alerts')
