"""Reserved: events applied in event order (issue 12 item 4). Placeholder in the chain; its owner replaces the body (and renames the file).

Revision ID: 0015
Revises: 0014
"""

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
