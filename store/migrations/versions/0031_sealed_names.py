"""Issue 17 item 2: names a business types, sealed. Contact list, campaign, line and API key
names move from readable `name` columns to `name_sealed` (optout.names: a field blob under a
data key sealed to the tenant's public key, so no tenant secret is needed here: one fresh data
key per tenant seals its existing names). The readable columns are dropped. A bot's subscriber
list, found by its name "Telegram: <line name>" until now, is found by `subscribers_of` (the
line id) from now on.

Downgrade puts the `name` columns back empty: the names can only be read with the tenants'
keys, which a migration does not have.

Revision ID: 0031
Revises: 0030
"""
import logging
import time

import sqlalchemy as sa
from alembic import op

from crypto.fields import FieldSealer, new_data_key

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

TABLES = ("contact_lists", "campaigns", "lines", "api_keys")
_DATA_KEYS = sa.table("data_keys", sa.column("id", sa.LargeBinary),
                      sa.column("tenant_id", sa.String), sa.column("sealed", sa.LargeBinary),
                      sa.column("created_at", sa.Double))


def _named(table: str) -> sa.TableClause:
    return sa.table(table, sa.column("id", sa.String), sa.column("tenant_id", sa.String),
                    sa.column("name", sa.String), sa.column("name_sealed", sa.LargeBinary))


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("name_sealed", sa.LargeBinary, nullable=True))
    op.add_column("contact_lists", sa.Column("subscribers_of", sa.String(36), nullable=True))
    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE contact_lists SET subscribers_of = (SELECT l.id FROM lines l "
        "WHERE l.tenant_id = contact_lists.tenant_id AND l.channel = 'telegram' "
        "AND 'Telegram: ' || l.name = contact_lists.name ORDER BY l.created_at, l.id LIMIT 1)"))
    for tenant_id, public_key in bind.execute(sa.text("SELECT id, public_key FROM tenants")):
        _seal_tenant(bind, tenant_id, bytes(public_key))
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN name")


def _seal_tenant(bind, tenant_id: str, public_key: bytes) -> None:
    sealer = None
    for table in TABLES:
        named = _named(table)
        rows = bind.execute(sa.select(named.c.id, named.c.name).where(
            named.c.tenant_id == tenant_id)).all()
        if not rows:
            continue
        if len(public_key) != 32:  # never in a real database: not a key, nothing to seal to
            log.warning("tenant %s has no usable public key: its %s names are dropped",
                        tenant_id, table)
            continue
        if sealer is None:
            key = new_data_key(public_key)
            bind.execute(_DATA_KEYS.insert().values(
                id=key.dek_id, tenant_id=tenant_id, sealed=key.sealed, created_at=time.time()))
            sealer = FieldSealer(key.dek_id, key.dek)
        for row_id, name in rows:
            bind.execute(named.update().where(named.c.id == row_id).values(
                name_sealed=sealer.seal_field((name or "").encode("utf-8"))))


def downgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("name", sa.String(200), nullable=False,
                                       server_default=""))
    op.execute("ALTER TABLE contact_lists DROP COLUMN subscribers_of")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN name_sealed")
