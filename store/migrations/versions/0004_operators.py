"""Operator bot: one-time link codes and the Telegram chats linked to a tenant.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("chat_index", sa.LargeBinary(16), nullable=False),
        sa.Column("chat_wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("line_id", "chat_index", name="uq_operators_chat"),
    )
    op.create_index("ix_operators_tenant_id", "operators", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("operators")
    op.drop_table("operator_codes")
