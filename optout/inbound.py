"""Applies what a recipient wrote back: STOP revokes consent and suppresses the address, START
re-grants (the person's own act, so it lifts their refusal), HELP informs. The change is
committed by the caller's transaction BEFORE any reply is sent, so no send can start after a
STOP without seeing it. Every change is dated by the event's own time and follows
optout.order: a late, older event changes nothing."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.fields import FieldSealer
from optout import ledger, order, refusals, suppression
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
    # When the person sent it, as the provider reports it (None: unknown, use received_at).
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    intent: Intent | None
    duplicate: bool
    reply: str | None
    # A STOP or START older than the person's last applied event: stored, not applied.
    stale: bool = False


async def handle(conn: AsyncConnection, profile: TenantProfile, address_index: bytes,
                 sealer: FieldSealer, msg: InboundText) -> Outcome:
    """Records the message and applies its intent inside the caller's transaction."""
    intent = classify(msg.text, profile.brand_names)
    if not await _store(conn, address_index, sealer, msg, intent):
        return Outcome(intent, duplicate=True, reply=None)
    at = order.event_second(msg.sent_at, msg.received_at)
    applied = True
    if intent is Intent.STOP:
        applied = await apply_stop(conn, profile, address_index, sealer, msg.channel,
                                   msg.address, source=f"inbound:{msg.channel}",
                                   evidence_text=msg.text, at=at)
    elif intent is Intent.START:
        applied = await apply_grant(conn, profile, address_index, sealer, msg.channel,
                                    msg.address, f"inbound:{msg.channel}", msg.text, at)
    if intent is None:
        return Outcome(None, duplicate=False, reply=None)
    if not applied:  # confirming a superseded STOP or START would tell the person the wrong state
        return Outcome(intent, duplicate=False, reply=None, stale=True)
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
                     kind: str = "opted_out", at: int | None = None) -> bool:
    """Revokes the channel's consent and suppresses the address for it (also used for a
    provider's opt-out signal and a blocked bot, with kind "blocked"), dated `at` (the
    event's whole second; now when None). False when newer events superseded it all."""
    consent_type = consent_type_for(channel)
    at = int(time.time()) if at is None else at
    revoke = await order.claim(conn, profile.id, address_index, consent_type, order.CONSENT,
                               at, stops=True)
    # A block is also a stop, but only a newer unblock lifts it (see optout.order).
    block = kind == "blocked" and await order.claim(
        conn, profile.id, address_index, consent_type, order.BLOCK, at, stops=True)
    if revoke:
        await ledger.record(conn, profile.id, [ConsentEvent(
            address_index=address_index, consent_type=consent_type, status=ledger.REVOKED,
            source=source, recipient_type=ledger.INDIVIDUAL, occurred_at=float(at),
            evidence_sealed=_evidence(sealer, statement=evidence_text, address=address,
                                      channel=channel, at=at))],
            iys_enabled=profile.iys_enabled)
    if block or (revoke and kind != "blocked"):
        await suppression.suppress(conn, profile.id, address_index, consent_type, kind,
                                   source, sealer.seal_field(address.encode()))
    return revoke or block


async def apply_unblock(conn, tenant_id: str, address_index: bytes, channel: str,
                        at: int | None = None) -> bool:
    """The person unblocked the bot: only the block is lifted (that is not consent), and only
    when no newer block was applied."""
    consent_type = consent_type_for(channel)
    at = int(time.time()) if at is None else at
    if not await order.claim(conn, tenant_id, address_index, consent_type, order.BLOCK, at,
                             stops=False):
        return False
    await suppression.lift(conn, tenant_id, address_index, consent_type, kinds=("blocked",))
    return True


async def apply_grant(conn, profile: TenantProfile, address_index: bytes, sealer: FieldSealer,
                      channel: str, address: str, source: str, statement: str,
                      at: int, extra: dict | None = None) -> bool:
    """The person said yes on the channel itself (START, a consent button, WhatsApp resume)
    at second `at`: a granted consent with what they did as evidence (and `extra` facts, such
    as the invite link they came by), which lifts their refusal (optout.refusals). False
    (nothing changes) when a stop of the same second or a newer event was already applied."""
    return await refusals.grant_by_person(conn, profile.id, ConsentEvent(
        address_index=address_index, consent_type=consent_type_for(channel),
        status=ledger.GRANTED, source=source, recipient_type=ledger.INDIVIDUAL,
        occurred_at=float(at), evidence_sealed=_evidence(
            sealer, **(extra or {}), statement=statement, address=address, channel=channel,
            at=at)),
        profile.iys_enabled) is not None
