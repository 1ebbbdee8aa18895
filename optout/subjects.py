"""KVKK (Law 6698) data-subject rights: what is held about a person, erasure, and the log of
requests with their 30-day deadline. The person is found by blind index, never by plaintext."""
from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from optout import suppression
from store import raw
from store.tables import (
    campaigns,
    consent_events,
    consent_state,
    contact_lists,
    contacts,
    inbound_messages,
    lines,
    list_members,
    outbox,
    subject_requests,
    suppressions,
)

ANSWER_DAYS = 30
# Who else processed the data, by the channel that carried it (KVKK art. 11(1)(ç)).
PROCESSORS = {"whatsapp": "Meta Platforms Ireland Ltd. (WhatsApp Business Platform)",
              "telegram": "Telegram FZ-LLC (Telegram Bot API)"}


async def holdings(conn: AsyncConnection, tenant_id: str, index: bytes) -> dict:
    """Everything held about one person, fields still sealed (the caller opens them)."""
    contact = (await conn.execute(sa.select(contacts).where(
        contacts.c.tenant_id == tenant_id, contacts.c.address_index == index))).first()
    lists_of = []
    if contact is not None:
        lists_of = [r.name for r in await conn.execute(sa.select(contact_lists.c.name).join(
            list_members, list_members.c.list_id == contact_lists.c.id).where(
            list_members.c.contact_id == contact.id))]
    return {
        "contact": contact, "lists": lists_of,
        "consents": await _rows(conn, consent_events, tenant_id, index,
                                consent_events.c.occurred_at),
        "consent_state": await _rows(conn, consent_state, tenant_id, index,
                                     consent_state.c.consent_type),
        "suppressions": await _rows(conn, suppressions, tenant_id, index,
                                    suppressions.c.created_at),
        "messages": await _messages(conn, tenant_id, contact.id if contact else None),
        "inbound": await _rows(conn, inbound_messages, tenant_id, index,
                               inbound_messages.c.received_at),
    }


async def _rows(conn, table, tenant_id: str, index: bytes, order) -> list:
    q = sa.select(table).where(table.c.tenant_id == tenant_id,
                               table.c.address_index == index).order_by(order)
    return list(await conn.execute(q))


async def _messages(conn, tenant_id: str, contact_id: str | None) -> list:
    if contact_id is None:
        return []
    q = sa.select(outbox.c.state, outbox.c.reason, outbox.c.sent_at, campaigns.c.name,
                  campaigns.c.purpose, lines.c.channel).join(
        campaigns, campaigns.c.id == outbox.c.campaign_id).join(
        lines, lines.c.id == campaigns.c.line_id).where(
        outbox.c.tenant_id == tenant_id, outbox.c.contact_id == contact_id).order_by(outbox.c.id)
    return list(await conn.execute(q))


async def erase(conn: AsyncConnection, tenant_id: str, index: bytes) -> dict[str, int]:
    """Destroys the person's contact data and messages now. Kept: the consent and refusal
    records the law requires as proof (destroyed by retention later) and a suppression that
    holds only the blind index, so the person is never messaged again."""
    await suppression.suppress(conn, tenant_id, index, suppression.EVERYTHING, "erasure",
                               "kvkk_request", None)
    counts = {
        "contacts": await raw.execute(
            conn, "UPDATE contacts SET address_sealed = ?, name_sealed = NULL, "
                  "attributes_sealed = NULL, erased_at = ? WHERE tenant_id = ? "
                  "AND address_index = ?", (b"", time.time(), tenant_id, index)),
        "inbound_messages": await raw.execute(
            conn, "DELETE FROM inbound_messages WHERE tenant_id = ? AND address_index = ?",
            (tenant_id, index)),
        "sandbox_messages": await raw.execute(
            conn, "DELETE FROM sandbox_messages WHERE tenant_id = ? AND to_index = ?",
            (tenant_id, index)),
    }
    await raw.execute(conn, "UPDATE suppressions SET address_sealed = NULL WHERE tenant_id = ? "
                            "AND address_index = ?", (tenant_id, index))
    return counts


async def correct(conn: AsyncConnection, tenant_id: str, index: bytes,
                  name_sealed: bytes | None, attributes_sealed: bytes | None) -> bool:
    return await raw.execute(
        conn, "UPDATE contacts SET name_sealed = COALESCE(?, name_sealed), "
              "attributes_sealed = COALESCE(?, attributes_sealed), updated_at = ? "
              "WHERE tenant_id = ? AND address_index = ? AND erased_at IS NULL",
        (name_sealed, attributes_sealed, time.time(), tenant_id, index)) == 1


async def record_request(conn: AsyncConnection, tenant_id: str, index: bytes, kind: str,
                         channel: str, done: bool) -> str:
    now = time.time()
    request_id = str(uuid.uuid4())
    await conn.execute(subject_requests.insert().values(
        id=request_id, tenant_id=tenant_id, address_index=index, kind=kind, channel=channel,
        received_at=now, due_at=now + ANSWER_DAYS * 86400, completed_at=now if done else None))
    return request_id


async def requests(conn: AsyncConnection, tenant_id: str) -> list:
    q = sa.select(subject_requests).where(subject_requests.c.tenant_id == tenant_id).order_by(
        subject_requests.c.received_at.desc()).limit(1000)
    return list(await conn.execute(q))
