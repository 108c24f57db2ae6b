"""a command counter row for every receiver

Commands lock their receiver's counter row (SELECT ... FOR UPDATE) so two signers never share a
counter; a receiver provisioned before provisioning created that row gets it here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("INSERT INTO command_counters (device_id, last_ctr) "
               "SELECT r.id, 0 FROM receivers r WHERE NOT EXISTS "
               "(SELECT 1 FROM command_counters c WHERE c.device_id = r.id)")


def downgrade():
    pass  # the rows are harmless to an older schema
