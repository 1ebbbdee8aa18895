"""Telegram invitations (issue 15 item 5): a deep link t.me/<bot>?start=<token> per list and
Telegram line, whose consent tap joins the list. `token` is random and unique; at most one
invite per (tenant, list, line) is active (revoked_at NULL), by a partial unique index on
SQLite and PostgreSQL alike.

Revision ID: 0029
Revises: 0028
"""
import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "telegram_invites",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("list_id", sa.String(36),
                  sa.ForeignKey("contact_lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("bot_username", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
    )
    op.create_index("ix_telegram_invites_active", "telegram_invites",
                    ["tenant_id", "list_id", "line_id"], unique=True,
                    sqlite_where=_ACTIVE, postgresql_where=_ACTIVE)


def downgrade() -> None:
    op.drop_index("ix_telegram_invites_active", table_name="telegram_invites")
    op.drop_table("telegram_invites")
