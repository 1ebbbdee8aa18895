"""Provider message ids kept only as digests (issue 17): a WhatsApp id ("wamid.…") is base64
that embeds the person's number, so `outbox.provider_id` and
`inbound_messages.provider_message_id` hold `"b2:"` + BLAKE2b-128 hex of the id from now on
(crypto.blind.provider_reference; new rows are written that way). This turns the ids already
stored into their digests, in batches. Nothing reads an id back: a status finds its row by our
own reference (biz_opaque_callback_data), and a retried inbound message is recognised by the
digest as well as by the id. Downgrade cannot bring ids back and leaves the digests.

Revision ID: 0034
Revises: 0033
"""
import sqlalchemy as sa
from alembic import op

from crypto.blind import provider_reference

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

BATCH = 5000
COLUMNS = (("outbox", "id", "provider_id"), ("inbound_messages", "id", "provider_message_id"))


def upgrade() -> None:
    conn = op.get_bind()
    for table, key, column in COLUMNS:
        t = sa.table(table, sa.column(key), sa.column(column))
        pending = sa.select(t.c[key], t.c[column]).where(
            t.c[column].is_not(None), sa.not_(t.c[column].like("b2:%"))).limit(BATCH)
        while rows := conn.execute(pending).all():
            conn.execute(t.update().where(t.c[key] == sa.bindparam("k")).values(
                {column: sa.bindparam("v")}),
                [{"k": k, "v": provider_reference(v)} for k, v in rows])


def downgrade() -> None:
    pass
