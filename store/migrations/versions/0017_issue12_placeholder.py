"""Reserved: send-path faults, outcomes (issue 12 item 6a). Placeholder in the chain; its owner replaces the body (and renames the file).

Revision ID: 0017
Revises: 0016
"""

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
