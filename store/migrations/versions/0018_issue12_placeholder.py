"""Reserved: send-path faults, database outage (issue 12 item 6b). Placeholder in the chain; its owner replaces the body (and renames the file).

Revision ID: 0018
Revises: 0017
"""

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
