"""Events apply in event order (issue 12 item 4): `preference_clock` holds the last event
applied per person, consent type and family (consent | block), so a late or replayed older
WhatsApp preference, STOP/START reply or Telegram member update changes nothing;
`webhook_deliveries` remembers signed bodies and Telegram update ids already processed, so the
same delivery twice is a no-op (purged by the retention job after a week).

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "preference_clock",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("family", sa.String(8), primary_key=True),
        sa.Column("event_at", sa.BigInteger, nullable=False),
        sa.Column("stopped", sa.Boolean, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("delivery_key", sa.String(80), primary_key=True),
        sa.Column("received_at", sa.Double, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_received", "webhook_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_received", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("preference_clock")
