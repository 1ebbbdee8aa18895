"""Two-way İYS sync. Pull: refusals people make in İYS itself (web, e-Devlet, "RET <brand>" to
3338) are fetched with a kept cursor and applied as revocations at once — noted for the
dispatcher before they commit, so no send to that person starts afterwards. Push: consents and
refusals collected here go to İYS in bulk before their 3-business-day deadline, the whole queue
in one run (optout.iys_push: one drain per tenant across processes, each record once)."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime

import sqlalchemy as sa

from crypto.master import MasterKey
from crypto.service import FieldCrypto
from optout import iys_push, ledger
from optout.deadlines import TZ, business_days_after
from optout.iys import IysClient, IysCredentials, with_backoff
from optout.iys_rules import IysConsent
from optout.ledger import ConsentEvent
from optout.outbound import drop_stored_addresses
from optout.refusals import lift_by_iys_consent
from optout.tenants import TenantDirectory
from optout.watch import RevocationWatch
from store import leases, raw
from store.engine import Database
from store.tables import tenant_settings

log = logging.getLogger(__name__)
PAGE = 1000
_COUNTS = ("sent", "failed", "unconfirmed", "requeued")
_DEFAULT_PUSH = iys_push.PushSettings()


class IysSync:
    def __init__(self, db: Database, master: MasterKey, directory: TenantDirectory,
                 fields: FieldCrypto, watch: RevocationWatch, client_factory=IysClient,
                 alerts=None, *, iys_url: str,
                 push_settings: iys_push.PushSettings = _DEFAULT_PUSH):
        self.db, self.master, self.directory = db, master, directory
        self.iys_url = iys_url  # providers.iys_url: the operator's, never a tenant's
        self.alerts = alerts  # bot.operator.OperatorDesk: tells owners about rejections
        self.fields, self.watch, self._client_factory = fields, watch, client_factory
        self.push_settings = push_settings
        self._holder = leases.new_holder()  # this process's name on "iys:<tenant>" leases
        self.backlog = None  # optout.backlog.InboundBacklog: see use_backlog

    def use_backlog(self, backlog) -> None:
        """Refusals pulled while a tenant's vault is locked wait there, sealed."""
        self.backlog = backlog
        backlog.on("iys", self._apply_kept)

    async def _apply_kept(self, a, item: dict) -> None:
        consent = IysConsent(
            recipient=item["recipient"], recipient_type=item["recipient_type"],
            type=item["type"], source=item["source"], status=item["status"],
            consent_date=datetime.fromisoformat(item["consent_date"]))
        if consent.status == "RET":
            a.watch.note(a.profile.id, a.index(consent.recipient))
        await self._apply_one(a.conn, a.profile.id, a.sealer, consent)

    async def pull_all(self) -> int:
        async with self.db.connect() as conn:
            tenants = [r[0] for r in await raw.fetch(
                conn, "SELECT tenant_id FROM tenant_settings WHERE iys_enabled "
                      "AND iys_credentials IS NOT NULL")]
        applied = 0
        # Refusals first, for every tenant: a long upload must not hold back anyone's pull.
        for tenant_id in tenants:
            try:
                applied += await self.pull(tenant_id)
            except Exception as exc:  # one tenant's İYS trouble must not stop the others
                log.error("iys pull failed", extra={"tenant_id": tenant_id,
                                                    "error": type(exc).__name__})
        for tenant_id in tenants:
            try:
                await self.push(tenant_id)
            except Exception as exc:
                log.error("iys push failed", extra={"tenant_id": tenant_id,
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
        """Uploads the tenant's pending consent events, all of them, in consecutive bulk
        requests: {"sent", "failed"} (and "unconfirmed": records whose answer is still awaited
        or was lost, settled at a later push). {} when there was nothing to do, the vault is
        locked (the phone numbers are in the sealed evidence; under `service` custody it never
        is) or another process is pushing this tenant right now."""
        if not self.fields.keyring.is_unlocked(tenant_id):
            await self._note_locked(tenant_id)
            return {}
        started = time.monotonic()
        async with leases.held(self.db, f"iys:{tenant_id}", self._holder,
                               self.push_settings.lease_seconds) as lease:
            if lease is None:
                return {}
            credentials, _ = await self._account(tenant_id)
            async with self._client(credentials) as client:
                drain = iys_push.Drain(self.db, self.fields, tenant_id, client, lease,
                                       self.push_settings)
                counts = await drain.run()
        if not +counts:
            return {}
        log.info("iys push", extra={"tenant_id": tenant_id, "stopped_by": drain.stopped_by,
                                    "seconds": round(time.monotonic() - started, 1),
                                    **{k: counts[k] for k in _COUNTS}})
        if counts["failed"] and self.alerts is not None:
            await self.alerts.campaign_event(tenant_id, None, "iys_rejected",
                                             str(counts["failed"]))
        return {"sent": counts["sent"], "failed": counts["failed"]} | (
            {"unconfirmed": counts["unconfirmed"]} if counts["unconfirmed"] else {})

    async def _note_locked(self, tenant_id: str) -> None:
        async with self.db.connect() as conn:
            waiting = await raw.fetch(conn, "SELECT count(*) FROM consent_events WHERE "
                                            "tenant_id = ? AND iys_sync_state = 'pending'",
                                      (tenant_id,))
        if waiting[0][0]:
            log.warning("iys push waits for an unlock", extra={"tenant_id": tenant_id,
                                                               "pending": waiting[0][0]})

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
        refusals = [i for i in items if i.status == "RET"]
        if not self.directory.can_index(tenant_id) and self.backlog is not None:
            # Locked, and the lookup key is the tenant's: kept sealed with the cursor moved,
            # applied (before any send) at the unlock (optout.backlog).
            async with self.db.begin() as conn:
                for item in items:
                    await self.backlog.keep(tenant_id, profile.public_key, "iys",
                                            _item_payload(item), conn=conn)
                await conn.execute(tenant_settings.update().where(
                    tenant_settings.c.tenant_id == tenant_id).values(iys_cursor=cursor))
            return len(refusals)
        sealer = await self.fields.shared_sealer(tenant_id, profile.public_key)
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
            await ledger.record(conn, tenant_id, [_pulled_event(
                item, index, ledger.REVOKED, "refused in İYS", sealer)])
        elif item.status == "ONAY":  # the person's own consent in İYS: it lifts a refusal
            await lift_by_iys_consent(conn, tenant_id, _pulled_event(
                item, index, ledger.GRANTED, "consented in İYS", sealer))
        await raw.execute(conn, "UPDATE consent_state SET iys_status = ? WHERE tenant_id = ? "
                                "AND address_index = ? AND consent_type = ?",
                          (item.status, tenant_id, index, item.type))


def _item_payload(item: IysConsent) -> dict:
    return {"recipient": item.recipient, "recipient_type": item.recipient_type,
            "type": item.type, "source": item.source, "status": item.status,
            "consent_date": item.consent_date.isoformat()}


def _pulled_event(item: IysConsent, index: bytes, status: str, statement: str,
                  sealer) -> ConsentEvent:
    evidence = {"statement": statement, "address": item.recipient, "source": item.source,
                "at": item.consent_date.isoformat()}
    return ConsentEvent(
        address_index=index, consent_type=item.type, status=status,
        source=f"IYS:{item.source}",
        recipient_type="merchant" if item.recipient_type == "TACIR" else "individual",
        occurred_at=min(item.consent_date.timestamp(), time.time()),
        evidence_sealed=sealer.seal_field(json.dumps(evidence, ensure_ascii=False).encode()))


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
