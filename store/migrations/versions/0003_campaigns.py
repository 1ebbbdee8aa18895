"""Campaigns and the outbox; list columns (template placeholders); quiet hours settings.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contact_lists") as batch:
        batch.add_column(sa.Column("columns", sa.JSON, nullable=True))
    with op.batch_alter_table("lines") as batch:
        batch.add_column(sa.Column("options", sa.JSON, nullable=True))
    with op.batch_alter_table("tenant_settings") as batch:
        batch.add_column(sa.Column("quiet_hours", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("quiet_start_hour", sa.Integer, nullable=False,
                                   server_default="9"))
        batch.add_column(sa.Column("quiet_end_hour", sa.Integer, nullable=False,
                                   server_default="21"))
        batch.add_column(sa.Column("has_merchant_contacts", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id"), nullable=False),
        sa.Column("list_id", sa.String(36), sa.ForeignKey("contact_lists.id"), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("template_sealed", sa.LargeBinary, nullable=False),
        # WhatsApp approved template: {"name", "language", "parameters": ["{{name}}", …]}.
        sa.Column("channel_template", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(200), nullable=True),
        # Set when the owner resumes after a spam-guard pause: the opt-out rule has had its say.
        sa.Column("guard_acknowledged", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("send_at", sa.Double, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double, nullable=True),
        sa.Column("finished_at", sa.Double, nullable=True),
    )
    op.create_index("ix_campaigns_tenant_id", "campaigns", ["tenant_id"])
    op.create_index("ix_campaigns_line_state", "campaigns", ["line_id", "state"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("campaign_id", sa.String(36),
                  sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("contact_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("sent_at", sa.Double, nullable=True),
        sa.UniqueConstraint("campaign_id", "contact_id", name="uq_outbox_campaign_contact"),
    )
    op.create_index("ix_outbox_claim", "outbox", ["campaign_id", "state", "id"])
    op.create_index("ix_outbox_contact_sent", "outbox", ["tenant_id", "contact_id", "sent_at"])
    op.create_index("ix_outbox_campaign_sent", "outbox", ["campaign_id", "sent_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("campaigns")
    with op.batch_alter_table("tenant_settings") as batch:
        for column in ("has_merchant_contacts", "quiet_end_hour", "quiet_start_hour",
                       "quiet_hours"):
            batch.drop_column(column)
    with op.batch_alter_table("contact_lists") as batch:
        batch.drop_column("columns")
    with op.batch_alter_table("lines") as batch:
        batch.drop_column("options")
