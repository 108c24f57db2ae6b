"""alerts of a subject other than a receiver: dead air on a relay

``alerts.device_id`` may be NULL; ``alerts.subject`` names what the alert is about then
("live:<session id>"), with its own partial unique index: one open alert per subject and kind.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

_OPEN = sa.text('cleared_at IS NULL')


def upgrade():
    # The partial index is dropped and made again around the batch (SQLite copies the table,
    # and a reflected copy of the index could lose its WHERE).
    op.drop_index('uq_alerts_open', table_name='alerts')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.alter_column('device_id', existing_type=sa.String(length=48), nullable=True)
        batch_op.add_column(sa.Column('subject', sa.String(length=64), nullable=True))
    op.create_index('uq_alerts_open', 'alerts', ['device_id', 'kind'], unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)
    op.create_index('uq_alerts_open_subject', 'alerts', ['subject', 'kind'], unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)


def downgrade():
    # An older head-end knows only receivers' alerts.
    op.execute("DELETE FROM alerts WHERE device_id IS NULL")
    op.drop_index('uq_alerts_open_subject', table_name='alerts')
    op.drop_index('uq_alerts_open', table_name='alerts')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('subject')
        batch_op.alter_column('device_id', existing_type=sa.String(length=48), nullable=False)
    op.create_index('uq_alerts_open', 'alerts', ['device_id', 'kind'], unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)
