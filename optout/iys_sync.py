"""Two-way İYS sync. Pull: refusals people make in İYS itself (web, e-Devlet, "RET <brand>" to
3338) are fetched with a kept cursor and applied as revocations at once — noted for the
dispatcher before they commit, so no send to that person starts afterwards. Push: consents and
refusals collected here go to İYS in bulk before their 3-business-day deadline."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from datetime import datetime

import sqlalchemy as sa

from crypto.errors import VaultLockedError
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from optout import ledger
from optout.deadlines import TZ, business_days_after
from optout.iys import Accepted, IysClient, IysCredentials, Rejected, with_backoff
from optout.iys_rules import IysConsent
from optout.ledger import ConsentEvent
from optout.outbound import drop_stored_addresses
from optout.tenants import TenantDirectory
from optout.watch import RevocationWatch
from store import raw
from store.engine import Database
from store.tables import consent_events, tenant_settings

log = logging.getLogger(__name__)
PAGE = 1000


class IysSync:
    def __init__(self, db: Database, master: MasterKey, directory: TenantDirectory,
                 fields: FieldCrypto, watch: RevocationWatch, client_factory=IysClient,
                 alerts=None, *, iys_url: str):
        self.db, self.master, self.directory = db, master, directory
        self.iys_url = iys_url  # providers.iys_url: the operator's, never a tenant's
        self.alerts = alerts  # bot.operator.OperatorDesk: tells owners about rejections
        self.fields, self.watch, self._client_factory = fields, watch, client_factory

    async def pull_all(self) -> int:
        async with self.db.connect() as conn:
            tenants = [r[0] for r in await raw.fetch(
                conn, "SELECT tenant_id FROM tenant_settings WHERE iys_enabled "
                      "AND iys_credentials IS NOT NULL")]
        applied = 0
        for tenant_id in tenants:
            try:
                await self.push(tenant_id)
                applied += await self.pull(tenant_id)
            except Exception as exc:  # one tenant's İYS trouble must not stop the others
                log.error("iys pull failed", extra={"tenant_id": tenant_id,
                                                    "error": type(exc).__name__})
        return applied

    async def drop_stored_addresses(self) -> int:
        """Once, at start-up: rewraps İYS accounts stored with a tenant's base_url without it
        (migration 0014 marked them; it cannot open them without the master key)."""
        t = tenant_settings
        return await drop_stored_addresses(self.db, self.master.unwrap, self.master.wrap, t,
                                           t.c.tenant_id, t.c.iys_credentials,
                                           t.c.iys_credentials_format)

    async def _account(self, tenant_id: str) -> tuple[IysCredentials, str | None]:
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(
                tenant_settings.c.iys_credentials, tenant_settings.c.iys_cursor).where(
                tenant_settings.c.tenant_id == tenant_id))).one()
        return IysCredentials.from_json(json.loads(self.master.unwrap(
            bytes(row.iys_credentials)))), row.iys_cursor

    async def at_risk(self, now: float | None = None) -> dict[str, int]:
        """Tenants with consent events still not in İYS whose 3-business-day deadline ends
        within one business day: {tenant_id: how many}."""
        now = time.time() if now is None else now
        horizon = business_days_after(datetime.fromtimestamp(now, TZ), 1).timestamp()
        async with self.db.connect() as conn:
            rows = await raw.fetch(
                conn, "SELECT e.tenant_id, count(*) FROM consent_events e JOIN tenant_settings s "
                      "ON s.tenant_id = e.tenant_id WHERE s.iys_enabled AND "
                      "e.iys_sync_state = 'pending' AND e.iys_deadline < ? GROUP BY e.tenant_id",
                (horizon,))
        return {tenant_id: n for tenant_id, n in rows}

    async def push(self, tenant_id: str) -> dict[str, int]:
        """Uploads pending consent events. The phone number is in the sealed evidence, so this
        runs while the vault is unlocked (always, under `service` custody)."""
        async with self.db.connect() as conn:
            pending = list(await conn.execute(sa.select(consent_events).where(
                consent_events.c.tenant_id == tenant_id,
                consent_events.c.iys_sync_state == "pending").order_by(
                consent_events.c.occurred_at).limit(PAGE)))
        if not pending:
            return {}
        try:
            opened = await self.fields.open_fields(
                tenant_id, [bytes(e.evidence_sealed) for e in pending])
        except VaultLockedError:
            log.warning("iys push waits for an unlock", extra={"tenant_id": tenant_id,
                                                               "pending": len(pending)})
            return {}
        records, states, accepted, errors = [], {}, [], {}
        last_second = await self._last_sent_seconds(tenant_id, pending)
        for event, evidence in zip(pending, opened, strict=True):
            record = _record_for(event, json.loads(evidence))
            if record is None:  # no İYS source code or number: the owner must fix it
                states[event.id] = "failed"
                errors[event.id] = "NO_IYS_SOURCE: the consent has no İYS source (HS_*) " \
                                   "or phone number to upload"
                continue
            record = _strictly_after(record, last_second,
                                     (bytes(event.address_index), event.consent_type))
            if record is None:
                break  # it and what follows go with the next push, in order
            records.append((event.id, record))
        credentials, _ = await self._account(tenant_id)
        if records:
            async with self._client(credentials) as client:
                request_id = await with_backoff(
                    lambda: client.add_bulk([r for _, r in records]))
                results = await with_backoff(
                    lambda: client.bulk_result(request_id, len(records)))
            for result in results:
                if isinstance(result.outcome, Accepted):
                    states[records[result.index][0]] = "sent"
                    accepted.append(records[result.index][1])
                elif isinstance(result.outcome, Rejected):
                    states[records[result.index][0]] = "failed"
                    errors[records[result.index][0]] = rejection_text(result.outcome)
        async with self.db.begin() as conn:
            for event_id, state in states.items():
                await raw.execute(conn, "UPDATE consent_events SET iys_sync_state = ?, "
                                        "iys_error = ? WHERE id = ?",
                                  (state, errors.get(event_id), event_id))
            for record in accepted:  # what İYS now holds is what the gate will check
                await raw.execute(conn, "UPDATE consent_state SET iys_status = ? "
                                        "WHERE tenant_id = ? AND address_index = ? "
                                        "AND consent_type = ?",
                                  (record.status, tenant_id,
                                   self.directory.index(tenant_id, record.recipient),
                                   record.type))
        counts = {s: list(states.values()).count(s) for s in ("sent", "failed")}
        log.info("iys push", extra={"tenant_id": tenant_id, **counts})
        if counts["failed"] and self.alerts is not None:
            await self.alerts.campaign_event(tenant_id, None, "iys_rejected",
                                             str(counts["failed"]))
        return counts

    async def _last_sent_seconds(self, tenant_id: str, pending) -> dict[tuple, int]:
        """The consent date (whole seconds) İYS last got per (address, type) of `pending`."""
        indexes = list({bytes(e.address_index) for e in pending})
        found: dict[tuple, int] = {}
        async with self.db.connect() as conn:
            for start in range(0, len(indexes), 500):
                rows = await conn.execute(sa.select(
                    consent_events.c.address_index, consent_events.c.consent_type,
                    sa.func.max(consent_events.c.occurred_at)).where(
                    consent_events.c.tenant_id == tenant_id,
                    consent_events.c.iys_sync_state == "sent",
                    consent_events.c.address_index.in_(indexes[start:start + 500])).group_by(
                    consent_events.c.address_index, consent_events.c.consent_type))
                found.update({(bytes(i), t): math.floor(at) for i, t, at in rows})
        return found

    async def pull(self, tenant_id: str) -> int:
        """Applies every change since the kept cursor; returns how many refusals applied."""
        credentials, cursor = await self._account(tenant_id)
        applied = 0
        async with self._client(credentials) as client:
            while True:
                items, next_cursor = await with_backoff(
                    lambda after=cursor: client.changes(after, PAGE))
                applied += await self._apply(tenant_id, items, next_cursor)
                if len(items) < PAGE or next_cursor == cursor:
                    return applied
                cursor = next_cursor

    def _client(self, credentials: IysCredentials) -> IysClient:
        return self._client_factory(credentials, base_url=self.iys_url)

    async def _apply(self, tenant_id: str, items: list[IysConsent], cursor: str | None) -> int:
        async with self.db.connect() as conn:
            profile = await self.directory.profile(conn, tenant_id)
        sealer = await self.fields.shared_sealer(tenant_id, profile.public_key)
        refusals = [i for i in items if i.status == "RET"]
        for item in refusals:  # before the commit: see optout.watch
            self.watch.note(tenant_id, self.directory.index(tenant_id, item.recipient))
        async with self.db.begin() as conn:
            for item in items:
                await self._apply_one(conn, tenant_id, sealer, item)
            await conn.execute(tenant_settings.update().where(
                tenant_settings.c.tenant_id == tenant_id).values(iys_cursor=cursor))
        if refusals:
            log.info("iys refusals applied", extra={"tenant_id": tenant_id,
                                                    "count": len(refusals)})
        return len(refusals)

    async def _apply_one(self, conn, tenant_id: str, sealer, item: IysConsent) -> None:
        index = self.directory.index(tenant_id, item.recipient)
        if item.status == "RET":
            evidence = {"statement": "refused in İYS", "address": item.recipient,
                        "source": item.source, "at": item.consent_date.isoformat()}
            await ledger.record(conn, tenant_id, [ConsentEvent(
                address_index=index, consent_type=item.type, status=ledger.REVOKED,
                source=f"IYS:{item.source}",
                recipient_type="merchant" if item.recipient_type == "TACIR" else "individual",
                occurred_at=min(item.consent_date.timestamp(), time.time()),
                evidence_sealed=sealer.seal_field(
                    json.dumps(evidence, ensure_ascii=False).encode()))])
        await raw.execute(conn, "UPDATE consent_state SET iys_status = ? WHERE tenant_id = ? "
                                "AND address_index = ? AND consent_type = ?",
                          (item.status, tenant_id, index, item.type))


# Where a consent came from → the İYS source code, when our own source is not already one.
_SOURCE_BY_PREFIX = {"inbound:": "HS_MESAJ", "whatsapp:": "HS_MESAJ", "telegram:": "HS_MESAJ"}


def _strictly_after(record: IysConsent, last: dict[tuple, int], key: tuple
                    ) -> IysConsent | None:
    """İYS keeps whole seconds and wants each record of a number later than the one before:
    two changes within one second (an import, then an immediate STOP) are sent one second
    apart. None when that second has not passed yet (the record waits for the next push)."""
    second = math.floor(record.consent_date.timestamp())
    previous = last.get(key)
    if previous is not None and second <= previous:
        second = previous + 1
        if second >= time.time():
            return None
        record = dataclasses.replace(record, consent_date=datetime.fromtimestamp(second, TZ))
    last[key] = second
    return record


def _record_for(event, evidence: dict) -> IysConsent | None:
    source = event.iys_source or next(
        (code for prefix, code in _SOURCE_BY_PREFIX.items() if event.source.startswith(prefix)),
        None)
    address = evidence.get("address")
    if source is None or not address:
        return None
    return IysConsent(
        recipient=address, recipient_type="TACIR" if event.recipient_type == "merchant"
        else "BIREYSEL", type=event.consent_type, source=source,
        status="ONAY" if event.status == "granted" else "RET",
        consent_date=datetime.fromtimestamp(event.occurred_at, TZ))


_LONG_NUMBER = re.compile(r"\+?\d[\d ]{6,}\d")


def rejection_text(rejected: Rejected) -> str:
    """What the owner sees: İYS's code and message with any phone number masked, since İYS
    messages may quote the recipient and this text is stored and shown in clear."""
    message = _LONG_NUMBER.sub("***", rejected.message or "")
    return f"{rejected.code}: {message}"[:300]


async def status(conn, tenant_id: str) -> dict:
    """Upload state for the owner: counts, the nearest deadline, and what İYS refused."""
    counts = dict(await raw.fetch(
        conn, "SELECT iys_sync_state, count(*) FROM consent_events WHERE tenant_id = ? "
              "GROUP BY iys_sync_state", (tenant_id,)))
    nearest = await raw.fetch(
        conn, "SELECT min(iys_deadline) FROM consent_events WHERE tenant_id = ? "
              "AND iys_sync_state = 'pending'", (tenant_id,))
    rejected = await raw.fetch(
        conn, "SELECT id, consent_type, status, occurred_at, iys_error FROM consent_events "
              "WHERE tenant_id = ? AND iys_sync_state = 'failed' ORDER BY recorded_at DESC "
              "LIMIT 200", (tenant_id,))
    return {"pending": counts.get("pending", 0), "sent": counts.get("sent", 0),
            "failed": counts.get("failed", 0), "nearest_deadline": nearest[0][0],
            "rejections": [{"event_id": r[0], "consent_type": r[1], "status": r[2],
                            "occurred_at": r[3], "error": r[4]} for r in rejected]}
