"""Redelivered webhooks: WhatsApp retries a delivery for up to 36 h and Telegram resends an
update until it is acknowledged. A delivery already processed is remembered by its key (a
digest of the signed body, or the update id) and a second one is acknowledged and ignored.

A key is remembered only after its events were applied: if processing fails half-way, the
provider's retry must still be processed. Two copies in flight at once are both processed,
which each event's own guard makes harmless (message ids are unique, statuses only move
forward, preference events follow optout.order)."""
from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa

from store.engine import Database, dialect_insert
from store.tables import webhook_deliveries


def whatsapp_key(raw_body: bytes) -> str:
    """The key of a signed WhatsApp delivery: the same bytes are the same delivery."""
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


def telegram_key(update_id: int) -> str:
    return f"update:{update_id}"


async def seen(db: Database, line_id: str, key: str) -> bool:
    async with db.connect() as conn:
        found = await conn.execute(sa.select(sa.literal(1)).where(
            webhook_deliveries.c.line_id == line_id,
            webhook_deliveries.c.delivery_key == key))
        return found.first() is not None


async def remember(db: Database, line_id: str, key: str) -> None:
    async with db.begin() as conn:
        await conn.execute(dialect_insert(conn, webhook_deliveries).values(
            line_id=line_id, delivery_key=key, received_at=time.time()).on_conflict_do_nothing(
            index_elements=["line_id", "delivery_key"]))
