"""Table definitions (SQLAlchemy Core). Migrations in store/migrations create them; each domain
package writes its own queries against these objects. Sealed columns hold crypto/ blobs only."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Timestamps are UNIX seconds (float) in UTC: one representation on SQLite and PostgreSQL.

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    # Tenant X25519 secret key wrapped under the passphrase (crypto.keys format).
    sa.Column("wrapped_secret", sa.LargeBinary, nullable=False),
    # Blind-index key wrapped by the operator master key (STOP is matched while locked).
    sa.Column("wrapped_lookup_key", sa.LargeBinary, nullable=False),
    sa.Column("custody", sa.String(16), nullable=False, server_default="passphrase"),
    # Only under custody 'service': the tenant secret key wrapped by the master key.
    sa.Column("service_wrapped_secret", sa.LargeBinary, nullable=True),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
)

data_keys = sa.Table(
    "data_keys", metadata,
    sa.Column("id", sa.LargeBinary(16), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The 32-byte data key sealed (crypto_box_seal) to the tenant public key.
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)
