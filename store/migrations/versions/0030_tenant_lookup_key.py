"""Issue 17 item 1: the blind-index key held by the tenant, inbound kept sealed while locked (reserved; filled in by that work).

Revision ID: 0030
Revises: 0029
"""

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
