"""Reserved: api key roles (issue 12 item 7). Placeholder in the chain; its owner replaces the body (and renames the file).

Revision ID: 0016
Revises: 0015
"""

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
