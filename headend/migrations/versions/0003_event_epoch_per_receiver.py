"""event epoch per receiver

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('epoch', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_device_events_device_id'), type_='unique')
        batch_op.create_unique_constraint('uq_device_events_device_epoch_seq', ['device_id', 'epoch', 'seq'])

    with op.batch_alter_table('playlog', schema=None) as batch_op:
        batch_op.add_column(sa.Column('epoch', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_playlog_device_id'), type_='unique')
        batch_op.create_unique_constraint('uq_playlog_device_epoch_seq', ['device_id', 'epoch', 'seq'])

    with op.batch_alter_table('receivers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_epoch', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('receivers', schema=None) as batch_op:
        batch_op.drop_column('event_epoch')

    with op.batch_alter_table('playlog', schema=None) as batch_op:
        batch_op.drop_constraint('uq_playlog_device_epoch_seq', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_playlog_device_id'), ['device_id', 'seq'])
        batch_op.drop_column('epoch')

    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_device_events_device_epoch_seq', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_device_events_device_id'), ['device_id', 'seq'])
        batch_op.drop_column('epoch')
