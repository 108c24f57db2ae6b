"""programmes: recurring, approved schedules; their occurrences; zones' volume limits

A programme (title, segments, targets, class, RRULE in the site's zone, approval state and
revision); the occurrences kept in the database (skipped, moved, aired with their broadcast);
the media built from a programme's segments, by content hash; each zone's volume limit.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'programmes',
        sa.Column('id', sa.String(length=48), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('segments', sa.JSON(), nullable=False),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('priority', sa.String(length=16), nullable=False),
        sa.Column('start_at', UTCDateTime(), nullable=False),
        sa.Column('rrule', sa.Text(), nullable=True),
        sa.Column('exdates', sa.JSON(), nullable=False),
        sa.Column('volume', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('approved_revision', sa.Integer(), nullable=True),
        sa.Column('quiet_requested_by', sa.String(length=64), nullable=True),
        sa.Column('quiet_confirmed_by', sa.String(length=64), nullable=True),
        sa.Column('review_comment', sa.Text(), nullable=True),
        sa.Column('reviewed_by', sa.String(length=64), nullable=True),
        sa.Column('reviewed_at', UTCDateTime(), nullable=True),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_programmes')))
    with op.batch_alter_table('programmes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programmes_state'), ['state'], unique=False)

    op.create_table(
        'programme_occurrences',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('programme_id', sa.String(length=48), nullable=False),
        sa.Column('slot', UTCDateTime(), nullable=False),
        sa.Column('start_at', UTCDateTime(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('broadcast_id', sa.String(length=48), nullable=True),
        sa.Column('revision', sa.Integer(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['programme_id'], ['programmes.id'], ondelete='CASCADE',
                                name=op.f('fk_programme_occurrences_programme_id_programmes')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_programme_occurrences')),
        sa.UniqueConstraint('programme_id', 'slot',
                            name='uq_programme_occurrences_programme_slot'))
    with op.batch_alter_table('programme_occurrences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programme_occurrences_programme_id'),
                              ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_programme_occurrences_start_at'), ['start_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_programme_occurrences_broadcast_id'),
                              ['broadcast_id'], unique=False)

    op.create_table(
        'programme_media',
        sa.Column('content_sha256', sa.String(length=64), nullable=False),
        sa.Column('media_id', sa.String(length=48), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['media_id'], ['media_items.id'], ondelete='CASCADE',
                                name=op.f('fk_programme_media_media_id_media_items')),
        sa.PrimaryKeyConstraint('content_sha256', name=op.f('pk_programme_media')))

    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volume_limit', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('zones', schema=None) as batch_op:
        batch_op.drop_column('volume_limit')
    op.drop_table('programme_media')
    op.drop_table('programme_occurrences')
    op.drop_table('programmes')
