"""API keys carry a role (owner, admin, operator, viewer), enforced on API routes like a
dashboard user's role is on pages. Keys that exist already become admin: they could do
everything an admin can before, and nothing is taken from them but the owner-only powers.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both dialects (no batch copy): api_keys keeps its rows and index.
    op.add_column("api_keys", sa.Column("role", sa.String(16), nullable=False,
                                        server_default="admin"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("role")
