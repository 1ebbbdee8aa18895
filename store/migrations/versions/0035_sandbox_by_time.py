"""Sandbox deliveries indexed by time, not by recipient (issue 18): `(tenant_id, to_index)` put
each delivery at a random place in its index, so a round of 2,000 deliveries dirtied a page per
message (30-50 ms a round on SQLite at 30,000-150,000 stored rows, against 5-10 without it,
growing with the table) and that was a quarter of a flat-out sandbox line's time. Deliveries
arrive in time order, so `(tenant_id, at, id)` only ever grows at its end; it serves the newest
deliveries of a tenant, a line's check of what a failed commit kept (one range per batch), and a
tenant's purge. Finding one recipient's deliveries (the sandbox page's filter, an erasure) reads
the tenant's deliveries instead: the sandbox is a trial channel, kept for the retention period.

Revision ID: 0035
Revises: 0034
"""
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sandbox_messages_at", "sandbox_messages", ["tenant_id", "at", "id"])
    op.drop_index("ix_sandbox_messages_to", table_name="sandbox_messages")


def downgrade() -> None:
    op.create_index("ix_sandbox_messages_to", "sandbox_messages", ["tenant_id", "to_index"])
    op.drop_index("ix_sandbox_messages_at", table_name="sandbox_messages")
