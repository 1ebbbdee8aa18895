"""The WhatsApp 24 h customer-service window (issue 15 item 3).

- `inbound_window`: when each person (blind index) last wrote to each line; the dispatcher
  reads it once per batch to send free text only inside the window. Keyed (line_id,
  address_index); an index on (tenant_id, address_index) serves erasure.
- `campaigns.outside_window`: "template" sends free text inside the window and the campaign's
  approved template outside it; NULL keeps the rule of campaigns.window.

Revision ID: 0027
Revises: 0026
"""
import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_window",
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("last_inbound_at", sa.Double, nullable=False),
    )
    op.create_index("ix_inbound_window_tenant", "inbound_window",
                    ["tenant_id", "address_index"])
    op.add_column("campaigns", sa.Column("outside_window", sa.String(16), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35): rebuilding `campaigns` would cascade-delete its
    # outbox rows.
    op.drop_column("campaigns", "outside_window")
    op.drop_index("ix_inbound_window_tenant", table_name="inbound_window")
    op.drop_table("inbound_window")
