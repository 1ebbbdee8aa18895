"""Issue 17 items 4 and 6: the recovery-code wrap of the tenant key, deletion (reserved; filled in by that work).

Revision ID: 0032
Revises: 0031
"""

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
