"""KVKK (Law 6698) data-subject rights: what is held about a person, erasure, and the log of
requests with their 30-day deadline. The person is found by blind index, never by plaintext."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.errors import VaultLockedError
from crypto.fields import open_document, seal_document
from crypto.vault import UnlockedTenant
from optout import channels as optout_channels
from optout import suppression
from store import raw
from store.tables import (
    campaigns,
    consent_events,
    contact_lists,
    contacts,
    inbound_messages,
    lines,
    list_members,
    outbox,
    subject_requests,
    suppressions,
)

log = logging.getLogger(__name__)
ANSWER_DAYS = 30
# Evidence keys that hold the person's own data; on erasure they become digests, so the proof
# still matches the original (number or message) if it is produced again, but reveals nothing.
PERSONAL_EVIDENCE_KEYS = ("address", "statement", "name", "text")


async def holdings(conn: AsyncConnection, tenant_id: str, index: bytes) -> dict:
    """Everything held about one person as plain JSON values, sealed fields still sealed
    (base64): the server opens them while unlocked, or seals the whole to the tenant key."""
    contact = (await conn.execute(sa.select(contacts).where(
        contacts.c.tenant_id == tenant_id, contacts.c.address_index == index))).first()
    person = None
    if contact is not None and not contact.erased_at:
        # List names are sealed (optout.names); a bot's subscriber list without a name of
        # its own reads "Telegram: <line name>", so it carries the line's sealed name.
        bot = lines.alias("bot")
        lists_of = [{"name_sealed": _b64(r.name_sealed or r.bot_name),
                     "subscribers": r.name_sealed is None and r.bot_name is not None}
                    for r in await conn.execute(sa.select(
                        contact_lists.c.name_sealed, bot.c.name_sealed.label("bot_name")).join(
                        list_members, list_members.c.list_id == contact_lists.c.id).outerjoin(
                        bot, bot.c.id == contact_lists.c.subscribers_of).where(
                        list_members.c.contact_id == contact.id))]
        person = {"name_sealed": _b64(contact.name_sealed),
                  "attributes_sealed": _b64(contact.attributes_sealed),
                  "lists": lists_of, "since": _iso(contact.created_at)}
    return {
        "contact": person,
        "consents": [{"type": e.consent_type, "status": e.status, "source": e.source,
                      "occurred_at": _iso(e.occurred_at),
                      "evidence_sealed": _b64(e.evidence_sealed)}
                     for e in await _rows(conn, consent_events, tenant_id, index,
                                          consent_events.c.occurred_at)],
        "suppressions": [{"scope": s.scope, "kind": s.kind, "since": _iso(s.created_at)}
                         for s in await _rows(conn, suppressions, tenant_id, index,
                                              suppressions.c.created_at)],
        "messages": [{"campaign_sealed": _b64(m.name_sealed), "purpose": m.purpose,
                      "channel": m.channel,
                      "state": m.state, "sent_at": _iso(m.sent_at)}
                     for m in await _messages(conn, tenant_id,
                                              contact.id if contact else None)],
        "replies_received": len(await _rows(conn, inbound_messages, tenant_id, index,
                                            inbound_messages.c.received_at)),
    }


def sealed_fields(held: dict) -> list[bytes]:
    """The sealed blobs inside `holdings`, in the order `build_report` opens them."""
    blobs = [c["evidence_sealed"] for c in held["consents"]]
    if held["contact"] is not None:
        blobs += [v for v in (held["contact"]["name_sealed"],
                              held["contact"]["attributes_sealed"]) if v]
        blobs += [v["name_sealed"] for v in held["contact"]["lists"] if v["name_sealed"]]
    blobs += [m["campaign_sealed"] for m in held["messages"] if m.get("campaign_sealed")]
    return [base64.b64decode(b) for b in blobs]


def build_report(address: str, held: dict, opened: list[bytes]) -> dict:
    """The KVKK art. 11 report from `holdings` and its `sealed_fields` opened."""
    it = iter(opened)
    consents = [{k: v for k, v in c.items() if k != "evidence_sealed"}
                | {"evidence": json.loads(next(it))} for c in held["consents"]]
    person = None
    if (contact := held["contact"]) is not None:
        person = {"name": next(it).decode() if contact["name_sealed"] else "",
                  "attributes": json.loads(next(it)) if contact["attributes_sealed"] else {}}
        person |= {"lists": [_list_name(v, next(it).decode() if v["name_sealed"] else "")
                             for v in contact["lists"]], "since": contact["since"]}
    messages = [{k: v for k, v in m.items() if k != "campaign_sealed"}
                | {"campaign": next(it).decode() if m.get("campaign_sealed") else None}
                for m in held["messages"]]
    # Who else processed the data, by the channel that carried it (KVKK art. 11(1)(ç)).
    processors = optout_channels.processors()
    channels = {m["channel"] for m in held["messages"]}
    return {
        "address": address, "contact": person, "consents": consents,
        "suppressions": held["suppressions"], "messages": messages,
        "replies_received": held["replies_received"],
        "processors": sorted(processors[c] for c in channels if c in processors),
    }


def _list_name(held_list: dict, name: str) -> str:
    return f"Telegram: {name}" if held_list.get("subscribers") else name


def _b64(blob: bytes | None) -> str | None:
    return base64.b64encode(bytes(blob)).decode() if blob else None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


async def _rows(conn, table, tenant_id: str, index: bytes, order) -> list:
    q = sa.select(table).where(table.c.tenant_id == tenant_id,
                               table.c.address_index == index).order_by(order)
    return list(await conn.execute(q))


async def _messages(conn, tenant_id: str, contact_id: str | None) -> list:
    if contact_id is None:
        return []
    q = sa.select(outbox.c.state, outbox.c.reason, outbox.c.sent_at, campaigns.c.name_sealed,
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
        # When the person last wrote (the WhatsApp 24 h window) goes with their messages.
        "inbound_window": await raw.execute(
            conn, "DELETE FROM inbound_window WHERE tenant_id = ? AND address_index = ?",
            (tenant_id, index)),
    }
    await raw.execute(conn, "UPDATE suppressions SET address_sealed = NULL WHERE tenant_id = ? "
                            "AND address_index = ?", (tenant_id, index))
    return counts


def pseudonymise(evidence: dict, index: bytes) -> dict:
    """Consent/refusal proof without the person in it: personal values replaced by BLAKE2b
    digests, plus the address's blind index (keyed, so only this tenant can match it)."""
    kept = {k: v for k, v in evidence.items() if k not in PERSONAL_EVIDENCE_KEYS}
    for key in PERSONAL_EVIDENCE_KEYS:
        if key in evidence:
            value = evidence[key]
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            kept[f"{key}_blake2b"] = hashlib.blake2b(text.encode()).hexdigest()
    kept["address_index"] = index.hex()
    kept["pseudonymised"] = True
    return kept


class ErasureFinisher:
    """Completes erasure requests: the consent proof kept for the law is rewritten without the
    person's number or words. It needs the vault unlocked (the proof is sealed), so a request
    made while locked stays open — with its 30-day deadline — until the next unlock. Events
    still waiting for their İYS upload keep the number until they are uploaded."""

    def __init__(self, db, fields, directory):
        self.db, self.fields, self.directory = db, fields, directory

    async def finish_unlocked(self) -> int:
        done = 0
        for tenant_id in self.fields.keyring.unlocked_ids():
            try:  # one tenant's bad row must not hold up every other tenant's erasures
                done += await self.finish(tenant_id)
            except Exception as exc:
                log.error("finishing erasures failed", extra={"tenant_id": tenant_id,
                                                              "error": type(exc).__name__})
        return done

    async def finish(self, tenant_id: str) -> int:
        """Returns how many open erasure requests were completed."""
        async with self.db.connect() as conn:
            open_requests = list(await conn.execute(sa.select(
                subject_requests.c.id, subject_requests.c.address_index).where(
                subject_requests.c.tenant_id == tenant_id, subject_requests.c.kind == "erasure",
                subject_requests.c.completed_at.is_(None))))
            if not open_requests:
                return 0
            indexes = {bytes(r.address_index) for r in open_requests}
            events = list(await conn.execute(sa.select(
                consent_events.c.id, consent_events.c.address_index,
                consent_events.c.evidence_sealed, consent_events.c.iys_sync_state).where(
                consent_events.c.tenant_id == tenant_id,
                consent_events.c.address_index.in_(indexes))))
            profile = await self.directory.profile(conn, tenant_id)
        waiting = {bytes(e.address_index) for e in events if e.iys_sync_state == "pending"}
        todo = [e for e in events if e.iys_sync_state != "pending"]
        try:
            opened = await self.fields.open_fields(
                tenant_id, [bytes(e.evidence_sealed) for e in todo])
        except VaultLockedError:
            return 0
        sealer = await self.fields.shared_sealer(tenant_id, profile.public_key)
        rewritten = []
        for event, evidence in zip(todo, opened, strict=True):
            facts = json.loads(evidence)
            if isinstance(facts, dict) and facts.get("pseudonymised"):
                continue
            if not isinstance(facts, dict):
                facts = {"statement": facts}
            clean = pseudonymise(facts, bytes(event.address_index))
            rewritten.append((sealer.seal_field(json.dumps(clean, ensure_ascii=False).encode()),
                              event.id))
        finished = [r.id for r in open_requests if bytes(r.address_index) not in waiting]
        async with self.db.begin() as conn:
            for blob, event_id in rewritten:
                await raw.execute(conn, "UPDATE consent_events SET evidence_sealed = ? "
                                        "WHERE id = ?", (blob, event_id))
            now = time.time()
            for request_id in finished:
                await raw.execute(conn, "UPDATE subject_requests SET completed_at = ? "
                                        "WHERE id = ?", (now, request_id))
        if finished:
            log.info("erasures completed", extra={"tenant_id": tenant_id,
                                                  "requests": len(finished),
                                                  "evidence_rewritten": len(rewritten)})
        return len(finished)


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


EXPORT_FORMAT = "izinli.subject-export.v1"
SEALED_EXPORT_FORMAT = "izinli.sealed-subject-export.v1"


def sealed_export(tenant_id: str, public_key: bytes, address: str, held: dict,
                  sealed_keys: dict[bytes, bytes]) -> dict:
    """The export made while the vault is locked: the holdings and the data keys they need,
    sealed as one document to the tenant key (`izinli subject open-export` opens it)."""
    inner = {"format": EXPORT_FORMAT, "address": address, "held": held,
             "data_keys": {k.hex(): base64.b64encode(v).decode()
                           for k, v in sealed_keys.items()}}
    document = json.dumps(inner, ensure_ascii=False).encode()
    return {"format": SEALED_EXPORT_FORMAT, "tenant_id": tenant_id,
            "sealed": base64.b64encode(seal_document(public_key, document)).decode()}


def open_sealed_export(export: dict, secret_key: bytes) -> dict:
    """The report inside a sealed export. Raises ValueError or CryptoError when it is not one."""
    if not isinstance(export, dict) or export.get("format") != SEALED_EXPORT_FORMAT:
        raise ValueError("not a sealed izinli subject export")
    tenant = UnlockedTenant(secret_key)
    inner = json.loads(open_document(tenant.public_key, secret_key,
                                     base64.b64decode(export["sealed"])))
    tenant.add_sealed_deks({bytes.fromhex(k): base64.b64decode(v)
                            for k, v in inner["data_keys"].items()})
    held = inner["held"]
    return build_report(inner["address"], held, tenant.open_fields(sealed_fields(held)))
