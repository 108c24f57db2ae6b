"""a token epoch per user

Tokens carry the user's token_epoch; a password change or a deactivation bumps it, so older
tokens are refused. Existing users start at 0 (their older tokens carry no epoch at all and
are refused anyway: everyone logs in once after the upgrade).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_epoch', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('token_epoch')
