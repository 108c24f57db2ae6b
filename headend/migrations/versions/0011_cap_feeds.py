"""CAP feeds, receivers marked for exercises, an alert's own media

CAP feeds (Atom or RSS of CAP items) the head-end polls, each bound to a warning source, with
what conditional GET needs (ETag, Last-Modified), the failures counted for the back-off; the
feed entries already handled (by entry and by CAP sender, identifier and sent), so an item
is acted on once; a receiver's ``exercise`` flag (an Exercise alert airs only there); a CAP
alert's ``media_id``: the media made for it when received (its attached audio resource, or
none: the speech engine at airing time).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from headend.models import UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'cap_feeds',
        sa.Column('id', sa.String(length=48), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('source_id', sa.String(length=48), nullable=False),
        sa.Column('interval_s', sa.Integer(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('etag', sa.String(length=255), nullable=True),
        sa.Column('last_modified', sa.String(length=64), nullable=True),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.String(length=300), nullable=True),
        sa.Column('last_polled_at', UTCDateTime(), nullable=True),
        sa.Column('last_ok_at', UTCDateTime(), nullable=True),
        sa.Column('next_poll_at', UTCDateTime(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['cap_sources.id'],
                                name=op.f('fk_cap_feeds_source_id_cap_sources')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_feeds')))
    op.create_table(
        'cap_feed_items',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('feed_id', sa.String(length=48), nullable=False),
        sa.Column('entry_key', sa.String(length=300), nullable=False),
        sa.Column('sender', sa.String(length=255), nullable=True),
        sa.Column('identifier', sa.String(length=255), nullable=True),
        sa.Column('sent', sa.String(length=40), nullable=True),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=True),
        sa.Column('seen_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['feed_id'], ['cap_feeds.id'], ondelete='CASCADE',
                                name=op.f('fk_cap_feed_items_feed_id_cap_feeds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_feed_items')),
        sa.UniqueConstraint('feed_id', 'entry_key', name='uq_cap_feed_items_feed_entry'))
    with op.batch_alter_table('cap_feed_items', schema=None) as batch_op:
        batch_op.create_index('ix_cap_feed_items_cap', ['sender', 'identifier', 'sent'],
                              unique=False)
    # ALTER TABLE ... ADD COLUMN, never a copy of the table (a copy of receivers would
    # cascade into every row that refers to a receiver).
    with op.batch_alter_table('receivers', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('exercise', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('cap_alerts', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('media_id', sa.String(length=48), nullable=True))


def downgrade():
    # DROP COLUMN, never a copy of the table (see 0010: receivers is referred to by cascades).
    with op.batch_alter_table('cap_alerts', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('media_id')
    with op.batch_alter_table('receivers', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('exercise')
    with op.batch_alter_table('cap_feed_items', schema=None) as batch_op:
        batch_op.drop_index('ix_cap_feed_items_cap')
    op.drop_table('cap_feed_items')
    op.drop_table('cap_feeds')
