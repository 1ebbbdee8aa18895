"""Reserved: audit log forgery resistance (issue 12 item 8). Placeholder in the chain; its owner replaces the body (and renames the file).

Revision ID: 0019
Revises: 0018
"""

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
