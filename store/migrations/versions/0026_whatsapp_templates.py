"""WhatsApp message templates (issue 15 item 2): a line's business account templates as Graph
lists them, refreshed on demand and by `message_template_status_update` webhooks.

One new table, `whatsapp_templates`, keyed by (line_id, name, language); not sealed (the
business's approved marketing copy, no personal data: see store/tables.py). A WhatsApp line's
WABA id goes into `lines.options` (JSON), which needs no schema change.

Revision ID: 0026
Revises: 0025
"""
import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "whatsapp_templates",
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("language", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("waba_id", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("components", sa.JSON, nullable=False),
        sa.Column("parameter_count", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_whatsapp_templates_waba", "whatsapp_templates",
                    ["tenant_id", "waba_id"])


def downgrade() -> None:
    op.drop_index("ix_whatsapp_templates_waba", table_name="whatsapp_templates")
    op.drop_table("whatsapp_templates")
