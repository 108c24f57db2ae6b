"""rotation: a receiver's pending key and broker account while its credentials rotate, and
the claim code of its label once they have

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

_COLUMNS = (
    ('rekey_id', sa.String(length=32)),
    ('rekey_started_at', sa.DateTime()),
    ('rekey_sent_at', sa.DateTime()),
    ('pending_key', sa.String(length=128)),
    ('pending_password', sa.String(length=255)),
    ('pending_mqtt_user', sa.String(length=64)),
    ('pending_mqtt_password_hash', sa.String(length=255)),
    ('claim_code', sa.String(length=16)),
)


def upgrade():
    with op.batch_alter_table('receivers') as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade():
    # DROP COLUMN, never a copy of the table (see 0010: receivers is referred to by cascades,
    # and dropping the old copy would delete every delivery and play-log row).
    with op.batch_alter_table('receivers', recreate='never') as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
