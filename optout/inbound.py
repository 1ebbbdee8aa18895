"""Applies what a recipient wrote back: STOP revokes consent and suppresses the address, START
re-grants, HELP informs. The change is committed by the caller's transaction BEFORE any reply
is sent, so no send can start after a STOP without seeing it."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.fields import FieldSealer
from optout import ledger, suppression
from optout.keywords import Intent, classify
from optout.ledger import ConsentEvent, consent_type_for
from optout.replies import reply_for
from optout.tenants import TenantProfile
from store.engine import dialect_insert
from store.tables import inbound_messages


@dataclass(frozen=True, slots=True)
class InboundText:
    tenant_id: str
    line_id: str
    channel: str
    address: str  # normalised
    text: str
    provider_message_id: str
    received_at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    intent: Intent | None
    duplicate: bool
    reply: str | None


async def handle(conn: AsyncConnection, profile: TenantProfile, address_index: bytes,
                 sealer: FieldSealer, msg: InboundText) -> Outcome:
    """Records the message and applies its intent inside the caller's transaction."""
    intent = classify(msg.text, profile.brand_names)
    if not await _store(conn, address_index, sealer, msg, intent):
        return Outcome(intent, duplicate=True, reply=None)
    if intent is Intent.STOP:
        await apply_stop(conn, profile, address_index, sealer, msg.channel, msg.address,
                         source=f"inbound:{msg.channel}", evidence_text=msg.text)
    elif intent is Intent.START:
        await _apply_start(conn, profile, address_index, sealer, msg)
    if intent is None:
        return Outcome(None, duplicate=False, reply=None)
    return Outcome(intent, duplicate=False, reply=reply_for(
        intent, profile.sender_name, profile.sender_contact, profile.language))


async def _store(conn, address_index: bytes, sealer: FieldSealer, msg: InboundText,
                 intent: Intent | None) -> bool:
    stmt = dialect_insert(conn, inbound_messages).values(
        id=str(uuid.uuid4()), tenant_id=msg.tenant_id, line_id=msg.line_id,
        provider_message_id=msg.provider_message_id, address_index=address_index,
        address_sealed=sealer.seal_field(msg.address.encode()),
        text_sealed=sealer.seal_field(msg.text.encode()),
        intent=intent.value if intent else None, received_at=msg.received_at)
    result = await conn.execute(stmt.on_conflict_do_nothing(
        index_elements=["line_id", "provider_message_id"]))
    return result.rowcount == 1


def _evidence(sealer: FieldSealer, **facts) -> bytes:
    return sealer.seal_field(json.dumps(facts, ensure_ascii=False).encode())


async def apply_stop(conn, profile: TenantProfile, address_index: bytes, sealer: FieldSealer,
                     channel: str, address: str, source: str, evidence_text: str,
                     kind: str = "opted_out") -> None:
    """Revokes the channel's consent and suppresses the address for it (also used for a
    provider's opt-out signal and a blocked bot, with kind "blocked")."""
    consent_type = consent_type_for(channel)
    now = time.time()
    await ledger.record(conn, profile.id, [ConsentEvent(
        address_index=address_index, consent_type=consent_type, status=ledger.REVOKED,
        source=source, recipient_type=ledger.INDIVIDUAL, occurred_at=now,
        evidence_sealed=_evidence(sealer, statement=evidence_text, address=address,
                                  channel=channel, at=now))], iys_enabled=profile.iys_enabled)
    await suppression.suppress(conn, profile.id, address_index, consent_type, kind,
                               source, sealer.seal_field(address.encode()))


async def _apply_start(conn, profile: TenantProfile, address_index: bytes, sealer: FieldSealer,
                       msg: InboundText) -> None:
    await apply_grant(conn, profile, address_index, sealer, msg.channel, msg.address,
                      f"inbound:{msg.channel}", msg.text, msg.received_at)


async def apply_grant(conn, profile: TenantProfile, address_index: bytes, sealer: FieldSealer,
                      channel: str, address: str, source: str, statement: str,
                      at: float) -> None:
    """The person said yes on the channel itself (START, a consent button, WhatsApp resume):
    a granted consent with what they did as evidence; their opt-out is lifted."""
    consent_type = consent_type_for(channel)
    await ledger.record(conn, profile.id, [ConsentEvent(
        address_index=address_index, consent_type=consent_type, status=ledger.GRANTED,
        source=source, recipient_type=ledger.INDIVIDUAL, occurred_at=at,
        evidence_sealed=_evidence(sealer, statement=statement, address=address,
                                  channel=channel, at=at))],
        iys_enabled=profile.iys_enabled)
    await suppression.lift(conn, profile.id, address_index, consent_type)
