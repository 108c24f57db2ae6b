"""firmware: uploaded bundles, rollouts, each receiver's last update outcome

A firmware bundle per version (manifest hash and sizes; its files on disk), one rollout row per
receiver told to update (the command and its session then), rollouts in waves (the receivers
of each wave, the wave under way, running / paused and why / done), and the ``ota`` outcome a
receiver's latest birth reported (updated, rolled-back and why: docs/protocol.md, ``update``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'firmware_bundles',
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
        sa.Column('manifest_size', sa.Integer(), nullable=False),
        sa.Column('total_size', sa.BigInteger(), nullable=False),
        sa.Column('files', sa.Integer(), nullable=False),
        sa.Column('source_commit', sa.String(length=64), nullable=True),
        sa.Column('uploaded_by', sa.String(length=64), nullable=True),
        sa.Column('uploaded_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('version', name=op.f('pk_firmware_bundles')),
    )
    op.create_table(
        'firmware_rollouts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('device_id', sa.String(length=48), nullable=False),
        sa.Column('command_id', sa.String(length=64), nullable=False),
        sa.Column('boot_at_send', sa.BigInteger(), nullable=True),
        sa.Column('sent_at', UTCDateTime(), nullable=False),
        sa.Column('sent_by', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['version'], ['firmware_bundles.version'],
                                name=op.f('fk_firmware_rollouts_version_firmware_bundles'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['device_id'], ['receivers.id'],
                                name=op.f('fk_firmware_rollouts_device_id_receivers'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware_rollouts')),
    )
    op.create_index(op.f('ix_firmware_rollouts_version'), 'firmware_rollouts', ['version'])
    op.create_index(op.f('ix_firmware_rollouts_device_id'), 'firmware_rollouts', ['device_id'])
    op.create_table(
        'firmware_wave_plans',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('waves', sa.JSON(), nullable=False),
        sa.Column('wave', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['version'], ['firmware_bundles.version'],
                                name=op.f('fk_firmware_wave_plans_version_firmware_bundles'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_firmware_wave_plans')),
    )
    op.create_index(op.f('ix_firmware_wave_plans_version'), 'firmware_wave_plans', ['version'])
    with op.batch_alter_table('receivers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ota', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('receivers', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('ota')
    op.drop_index(op.f('ix_firmware_wave_plans_version'), table_name='firmware_wave_plans')
    op.drop_table('firmware_wave_plans')
    op.drop_index(op.f('ix_firmware_rollouts_device_id'), table_name='firmware_rollouts')
    op.drop_index(op.f('ix_firmware_rollouts_version'), table_name='firmware_rollouts')
    op.drop_table('firmware_rollouts')
    op.drop_table('firmware_bundles')
