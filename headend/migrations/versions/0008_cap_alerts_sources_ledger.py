"""CAP alerts: zones' areas, warning sources, received alerts, the emergency ledger

A zone gets an optional area (polygon and geocodes) that CAP alerts are matched against;
warning sources (API key hash or sealed HMAC secret, allowed senders); the CAP messages kept,
one per (sender, identifier); the append-only, hash-chained ledger of emergencies.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.add_column(sa.Column('area', sa.JSON(), nullable=True))

    op.create_table(
        'cap_sources',
        sa.Column('id', sa.String(length=48), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('auth', sa.String(length=16), nullable=False),
        sa.Column('key_sha256', sa.String(length=64), nullable=True),
        sa.Column('hmac_secret', sa.String(length=255), nullable=True),
        sa.Column('senders', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_sources')),
        sa.UniqueConstraint('key_sha256', name=op.f('uq_cap_sources_key_sha256')))

    op.create_table(
        'cap_alerts',
        sa.Column('id', sa.String(length=48), nullable=False),
        sa.Column('identifier', sa.String(length=255), nullable=False),
        sa.Column('sender', sa.String(length=255), nullable=False),
        sa.Column('sent', UTCDateTime(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('msg_type', sa.String(length=16), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('zones', sa.JSON(), nullable=False),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('headline', sa.Text(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('spoken_text', sa.Text(), nullable=True),
        sa.Column('broadcast_id', sa.String(length=48), nullable=True),
        sa.Column('expires', UTCDateTime(), nullable=True),
        sa.Column('xml_sha256', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('received_at', UTCDateTime(), nullable=False),
        sa.Column('confirmed_by', sa.String(length=64), nullable=True),
        sa.Column('confirmed_at', UTCDateTime(), nullable=True),
        sa.Column('ended_by', sa.String(length=64), nullable=True),
        sa.Column('ended_at', UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'],
                                name=op.f('fk_cap_alerts_broadcast_id_broadcasts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_alerts')),
        sa.UniqueConstraint('sender', 'identifier', name='uq_cap_alerts_sender_identifier'))
    with op.batch_alter_table('cap_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cap_alerts_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_cap_alerts_received_at'), ['received_at'],
                              unique=False)

    op.create_table(
        'emergency_ledger',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=True),
        sa.Column('broadcast_id', sa.String(length=48), nullable=True),
        sa.Column('cap_identifier', sa.String(length=255), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_emergency_ledger')),
        sa.UniqueConstraint('seq', name=op.f('uq_emergency_ledger_seq')))
    with op.batch_alter_table('emergency_ledger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emergency_ledger_broadcast_id'), ['broadcast_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('emergency_ledger', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_emergency_ledger_broadcast_id'))
    op.drop_table('emergency_ledger')
    with op.batch_alter_table('cap_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cap_alerts_received_at'))
        batch_op.drop_index(batch_op.f('ix_cap_alerts_state'))
    op.drop_table('cap_alerts')
    op.drop_table('cap_sources')
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.drop_column('area')
