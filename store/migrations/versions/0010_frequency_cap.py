"""Per-tenant frequency cap for commercial messages (was fixed at 3 per 7 days).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_settings") as batch:
        batch.add_column(sa.Column("frequency_cap", sa.Integer, nullable=False,
                                   server_default="3"))
        batch.add_column(sa.Column("frequency_window_days", sa.Integer, nullable=False,
                                   server_default="7"))


def downgrade() -> None:
    with op.batch_alter_table("tenant_settings") as batch:
        batch.drop_column("frequency_window_days")
        batch.drop_column("frequency_cap")
