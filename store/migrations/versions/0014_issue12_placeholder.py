"""Reserved: outbound provider addresses (issue 12 item 2). Placeholder in the chain; its owner replaces the body (and renames the file).

Revision ID: 0014
Revises: 0013
"""

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
