"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import headend.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', headend.models.UTCDateTime(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('device_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=48), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('t', headend.models.UTCDateTime(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('received_at', headend.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_events')),
    sa.UniqueConstraint('device_id', 'seq', name=op.f('uq_device_events_device_id'))
    )
    op.create_table('media_items',
    sa.Column('id', sa.String(length=48), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('filename', sa.String(length=300), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('source_sha256', sa.String(length=64), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', headend.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media_items'))
    )
    with op.batch_alter_table('media_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_media_items_source_sha256'), ['source_sha256'], unique=False)

    op.create_table('playlog',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=48), nullable=False),
    sa.Column('broadcast_id', sa.String(length=48), nullable=True),
    sa.Column('item', sa.String(length=48), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('scheduled_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('started_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('ended_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('played_ms', sa.BigInteger(), nullable=True),
    sa.Column('skip_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_playlog')),
    sa.UniqueConstraint('device_id', 'seq', name=op.f('uq_playlog_device_id'))
    )
    with op.batch_alter_table('playlog', schema=None) as batch_op:
        batch_op.create_index('ix_playlog_broadcast', ['broadcast_id'], unique=False)
        batch_op.create_index('ix_playlog_started', ['started_at'], unique=False)

    op.create_table('sites',
    sa.Column('id', sa.String(length=48), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', headend.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', headend.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('broadcasts',
    sa.Column('id', sa.String(length=48), nullable=False),
    sa.Column('media_id', sa.String(length=48), nullable=False),
    sa.Column('targets', sa.JSON(), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('start_at', headend.models.UTCDateTime(), nullable=False),
    sa.Column('valid_until', headend.models.UTCDateTime(), nullable=False),
    sa.Column('play_at_ms', sa.BigInteger(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', headend.models.UTCDateTime(), nullable=False),
    sa.Column('cancelled_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('cancelled_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['media_id'], ['media_items.id'], name=op.f('fk_broadcasts_media_id_media_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcasts'))
    )
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broadcasts_media_id'), ['media_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_broadcasts_start_at'), ['start_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_broadcasts_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_broadcasts_valid_until'), ['valid_until'], unique=False)

    op.create_table('renditions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('media_id', sa.String(length=48), nullable=False),
    sa.Column('codec', sa.String(length=16), nullable=False),
    sa.Column('ext', sa.String(length=8), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('rate', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['media_id'], ['media_items.id'], name=op.f('fk_renditions_media_id_media_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_renditions')),
    sa.UniqueConstraint('media_id', 'codec', name=op.f('uq_renditions_media_id'))
    )
    with op.batch_alter_table('renditions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_renditions_sha256'), ['sha256'], unique=False)

    op.create_table('zones',
    sa.Column('id', sa.String(length=48), nullable=False),
    sa.Column('site_id', sa.String(length=48), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', headend.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_zones_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_zones'))
    )
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zones_site_id'), ['site_id'], unique=False)

    op.create_table('receivers',
    sa.Column('id', sa.String(length=48), nullable=False),
    sa.Column('site_id', sa.String(length=48), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('zone_id', sa.String(length=48), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('codec', sa.String(length=16), nullable=False),
    sa.Column('firmware', sa.String(length=64), nullable=True),
    sa.Column('capabilities', sa.JSON(), nullable=True),
    sa.Column('link', sa.String(length=16), nullable=True),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('offline_reason', sa.String(length=32), nullable=True),
    sa.Column('last_seen', headend.models.UTCDateTime(), nullable=True),
    sa.Column('online_since', headend.models.UTCDateTime(), nullable=True),
    sa.Column('session_boot', sa.BigInteger(), nullable=True),
    sa.Column('session_conn', sa.BigInteger(), nullable=True),
    sa.Column('telemetry', sa.JSON(), nullable=True),
    sa.Column('device_key', sa.String(length=128), nullable=False),
    sa.Column('mqtt_user', sa.String(length=64), nullable=False),
    sa.Column('mqtt_password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', headend.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_receivers_site_id_sites')),
    sa.ForeignKeyConstraint(['zone_id'], ['zones.id'], name=op.f('fk_receivers_zone_id_zones')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_receivers'))
    )
    with op.batch_alter_table('receivers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_receivers_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_receivers_zone_id'), ['zone_id'], unique=False)

    op.create_table('command_counters',
    sa.Column('device_id', sa.String(length=48), nullable=False),
    sa.Column('last_ctr', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['receivers.id'], name=op.f('fk_command_counters_device_id_receivers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_command_counters'))
    )
    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('broadcast_id', sa.String(length=48), nullable=False),
    sa.Column('device_id', sa.String(length=48), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('command_id', sa.String(length=64), nullable=True),
    sa.Column('sent_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('acked_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('fetched_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('started_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('ended_at', headend.models.UTCDateTime(), nullable=True),
    sa.Column('stop_pending', sa.Boolean(), nullable=False),
    sa.Column('updated_at', headend.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_deliveries_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['device_id'], ['receivers.id'], name=op.f('fk_deliveries_device_id_receivers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('broadcast_id', 'device_id', name=op.f('uq_deliveries_broadcast_id'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_broadcast_id'), ['broadcast_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_command_id'), ['command_id'], unique=False)
        batch_op.create_index('ix_deliveries_device_state', ['device_id', 'state'], unique=False)

    op.create_table('device_media',
    sa.Column('device_id', sa.String(length=48), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('fetched_at', headend.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['receivers.id'], name=op.f('fk_device_media_device_id_receivers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('device_id', 'sha256', name=op.f('pk_device_media'))
    )


def downgrade():
    op.drop_table('device_media')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_device_state')
        batch_op.drop_index(batch_op.f('ix_deliveries_command_id'))
        batch_op.drop_index(batch_op.f('ix_deliveries_broadcast_id'))

    op.drop_table('deliveries')
    op.drop_table('command_counters')
    with op.batch_alter_table('receivers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_receivers_zone_id'))
        batch_op.drop_index(batch_op.f('ix_receivers_site_id'))

    op.drop_table('receivers')
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_zones_site_id'))

    op.drop_table('zones')
    with op.batch_alter_table('renditions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_renditions_sha256'))

    op.drop_table('renditions')
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broadcasts_valid_until'))
        batch_op.drop_index(batch_op.f('ix_broadcasts_state'))
        batch_op.drop_index(batch_op.f('ix_broadcasts_start_at'))
        batch_op.drop_index(batch_op.f('ix_broadcasts_media_id'))

    op.drop_table('broadcasts')
    op.drop_table('users')
    op.drop_table('sites')
    with op.batch_alter_table('playlog', schema=None) as batch_op:
        batch_op.drop_index('ix_playlog_started')
        batch_op.drop_index('ix_playlog_broadcast')

    op.drop_table('playlog')
    with op.batch_alter_table('media_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_media_items_source_sha256'))

    op.drop_table('media_items')
    op.drop_table('device_events')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
