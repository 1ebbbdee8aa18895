"""Sealed key fan-out (issue 13 item 5): one unlock serves every process.

- `cluster_processes`: each running `izinli serve` with its ephemeral X25519 public key (the
  secret half never leaves its memory), a proof keyed by the master key that the row was made
  by a process holding it, and a heartbeat expiry by the database's clock.
- `vault_epochs`: per tenant, a counter bumped by every unlock, lock and custody change made
  through the cluster, and the kind of that last change. Updating the row serialises those
  changes per tenant; a process applies only what is newer than what it has seen.
- `vault_shares`: per (tenant, process), the tenant secret key sealed to that process's public
  key (crypto.shares), with the unlock's epoch and expiry. Nothing readable is stored.

Revision ID: 0020
Revises: 0019
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_processes",
        sa.Column("id", sa.String(100), primary_key=True),  # campaigns.leases.new_holder()
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("proof", sa.LargeBinary, nullable=False),  # keyed by the master key
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "vault_epochs",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
    )
    op.create_table(
        "vault_shares",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("process_id", sa.String(100), primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_index("ix_vault_shares_process_id", "vault_shares", ["process_id"])


def downgrade() -> None:
    op.drop_index("ix_vault_shares_process_id", "vault_shares")
    op.drop_table("vault_shares")
    op.drop_table("vault_epochs")
    op.drop_table("cluster_processes")
