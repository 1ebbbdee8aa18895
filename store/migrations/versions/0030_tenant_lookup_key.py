"""Issue 17 item 1: the blind-index key held by the tenant, inbound kept sealed while locked.

- tenants.sealed_lookup_key: the lookup key sealed to the tenant (crypto_box_seal to its public
  key; docs/crypto.md). tenants.wrapped_lookup_key (the master-wrapped copy) becomes nullable:
  NULL for `passphrase` custody once the tenant holds its key. Existing tenants keep theirs
  until their next unlock (optout.tenants.adopt_lookup_key).
- sandbox_messages.to_index becomes nullable: a confirmation the simulated provider delivers
  while the vault is locked has no index (the number is only sealed).
- sealed_inbound: what arrived while the vault was locked (inbound texts, provider opt-outs,
  İYS refusals), sealed to the tenant, in arrival order (id), applied and deleted at the next
  unlock (optout.backlog). `dedup` is a hash of the provider's id, so a retried delivery is
  kept once.

On SQLite a NOT NULL is dropped the way SQLite documents for constraint removals (editing the
stored CREATE TABLE under writable_schema): recreating `tenants` would cascade-delete every
tenant's rows (foreign keys are on inside the migration's transaction).

Revision ID: 0030
Revises: 0029
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

_NULLABLE = (("tenants", "wrapped_lookup_key"), ("sandbox_messages", "to_index"))


def upgrade() -> None:
    op.add_column("tenants", sa.Column("sealed_lookup_key", sa.LargeBinary, nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_drop_not_null(_NULLABLE)
    else:
        for table, column in _NULLABLE:
            op.alter_column(table, column, nullable=True)
    op.create_table(
        "sealed_inbound",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("dedup", sa.LargeBinary(16), nullable=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.UniqueConstraint("tenant_id", "dedup", name="uq_sealed_inbound_dedup"),
    )
    op.create_index("ix_sealed_inbound_tenant", "sealed_inbound", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_sealed_inbound_tenant", table_name="sealed_inbound")
    op.drop_table("sealed_inbound")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("sealed_lookup_key")


def _sqlite_drop_not_null(columns) -> None:
    """SQLite's documented procedure for removing a NOT NULL (no data changes): edit the
    stored CREATE TABLE, then bump schema_version so every connection reloads it."""
    bind = op.get_bind()
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    for table, column in columns:
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                                   "name = ?", (table,)).scalar()
        edited, count = re.subn(rf"(\b{column}\b[^,\n]*?)\s+NOT NULL", r"\1", sql, count=1)
        if count != 1:
            raise RuntimeError(f"{table}.{column}: NOT NULL not found in the stored schema")
        bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND "
                             "name = ?", (edited, table))
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
