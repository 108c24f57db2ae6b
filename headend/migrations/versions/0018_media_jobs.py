"""upload jobs of the content library

An upload answers at once with a job (headend/services/media_jobs.py) converted by a bounded
worker; the job's state and progress are kept here so a page can poll it and a restart can
fail what it interrupted. A media item gains its expiry (a bulletin not aired after it).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'media_jobs',
        sa.Column('id', sa.String(length=48), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('progress', sa.Integer(), nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=True),
        sa.Column('filename', sa.String(length=300), nullable=True),
        sa.Column('title', sa.String(length=300), nullable=True),
        sa.Column('src_path', sa.Text(), nullable=True),
        sa.Column('expires_at', UTCDateTime(), nullable=True),
        sa.Column('media_id', sa.String(length=48), nullable=True),
        sa.Column('duplicate', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('message_vi', sa.Text(), nullable=True),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_media_jobs_state', 'media_jobs', ['state'])
    with op.batch_alter_table('media_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('media_items', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('expires_at')
    op.drop_index('ix_media_jobs_state', table_name='media_jobs')
    op.drop_table('media_jobs')
