"""telemetry history: raw heartbeat samples, hourly aggregates, the roll-up's mark

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Name and type of each figure, as in headend/models.py (written out: a migration is frozen).
FIGURES = (("rssi", sa.SmallInteger), ("mains", sa.SmallInteger), ("dc", sa.SmallInteger),
           ("amp", sa.SmallInteger), ("af", sa.SmallInteger), ("temp", sa.SmallInteger),
           ("heap", sa.Integer), ("up", sa.Integer), ("off", sa.BigInteger),
           ("err", sa.Integer), ("lost", sa.Integer))


def _device_column():
    return sa.Column('device_id', sa.String(length=48), nullable=False)


def _device_key(table):
    return sa.ForeignKeyConstraint(['device_id'], ['receivers.id'],
                                   name='fk_%s_device_id_receivers' % table, ondelete='CASCADE')


def upgrade():
    op.create_table(
        'telemetry_samples',
        _device_column(),
        sa.Column('t', sa.BigInteger(), nullable=False),
        *[sa.Column(name, kind(), nullable=True) for name, kind in FIGURES],
        _device_key('telemetry_samples'),
        sa.PrimaryKeyConstraint('device_id', 't', name='pk_telemetry_samples'),
        sqlite_with_rowid=False,
    )
    hourly = []
    for name, kind in FIGURES:
        hourly += [sa.Column(name + '_min', kind(), nullable=True),
                   sa.Column(name + '_avg', sa.Float(), nullable=True),
                   sa.Column(name + '_max', kind(), nullable=True)]
    op.create_table(
        'telemetry_hourly',
        _device_column(),
        sa.Column('hour', sa.BigInteger(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        *hourly,
        _device_key('telemetry_hourly'),
        sa.PrimaryKeyConstraint('device_id', 'hour', name='pk_telemetry_hourly'),
        sqlite_with_rowid=False,
    )
    op.create_table(
        'telemetry_rollup',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('done_until', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_telemetry_rollup'),
    )


def downgrade():
    op.drop_table('telemetry_rollup')
    op.drop_table('telemetry_hourly')
    op.drop_table('telemetry_samples')
