"""the periodic test's runs and results

A run of the periodic test (kiểm tra định kỳ: by the weekly schedule, ``slot`` unique so each
scheduled time runs once, or by hand) and each receiver's answer: waiting, passed, failed with
the receiver's reason, or no answer (offline when it was sent).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'selftest_runs',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=True),
        sa.Column('slot', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_selftest_runs')),
        sa.UniqueConstraint('slot', name=op.f('uq_selftest_runs_slot')))
    with op.batch_alter_table('selftest_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_selftest_runs_started_at'), ['started_at'],
                              unique=False)
    op.create_table(
        'selftest_results',
        sa.Column('run_id', sa.String(length=32), nullable=False),
        sa.Column('device_id', sa.String(length=48), nullable=False),
        sa.Column('command_id', sa.String(length=64), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('answered_at', UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['selftest_runs.id'], ondelete='CASCADE',
                                name=op.f('fk_selftest_results_run_id_selftest_runs')),
        sa.ForeignKeyConstraint(['device_id'], ['receivers.id'], ondelete='CASCADE',
                                name=op.f('fk_selftest_results_device_id_receivers')),
        sa.PrimaryKeyConstraint('run_id', 'device_id', name=op.f('pk_selftest_results')))
    with op.batch_alter_table('selftest_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_selftest_results_device_id'), ['device_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_selftest_results_command_id'), ['command_id'],
                              unique=False)


def downgrade():
    op.drop_table('selftest_results')
    op.drop_table('selftest_runs')
