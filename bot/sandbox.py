"""The sandbox channel: simulated phones. What it "delivers" is stored durably (sealed like
everything else) so a business can try the whole pipeline without a provider."""
from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from campaigns.ports import Line, OutboundMessage, SendResult, Sent
from crypto.service import FieldCrypto
from optout.tenants import TenantDirectory
from store.engine import Database
from store.tables import sandbox_messages


@dataclass(frozen=True, slots=True)
class Delivered:
    to: str
    text: str
    at: float
    line_id: str


class SandboxChannel:
    def __init__(self, db: Database, fields: FieldCrypto, directory: TenantDirectory):
        self._db, self._fields, self._directory = db, fields, directory

    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult:
        async with self._db.connect() as conn:
            profile = await self._directory.profile(conn, line.tenant_id)
        sealer = await self._fields.shared_sealer(line.tenant_id, profile.public_key)
        async with self._db.begin() as conn:
            result = await conn.execute(sandbox_messages.insert().values(
                tenant_id=line.tenant_id, line_id=line.id,
                to_index=self._directory.index(line.tenant_id, address),
                to_sealed=sealer.seal_field(address.encode()),
                text_sealed=sealer.seal_field(message.text.encode()), at=time.time()))
        return Sent(provider_id=f"sandbox-{result.inserted_primary_key[0]}")

    async def received(self, tenant_id: str, to: str | None = None,
                       limit: int = 10_000) -> list[Delivered]:
        """What simulated phones received, oldest first; needs the vault unlocked."""
        q = sa.select(sandbox_messages).where(sandbox_messages.c.tenant_id == tenant_id)
        async with self._db.connect() as conn:
            if to is not None:
                index = (await self._directory.indexer(conn, tenant_id))(to)
                q = q.where(sandbox_messages.c.to_index == index)
            rows = list(await conn.execute(q.order_by(sandbox_messages.c.id).limit(limit)))
        blobs = [bytes(b) for r in rows for b in (r.to_sealed, r.text_sealed)]
        opened = await self._fields.open_fields(tenant_id, blobs)
        return [Delivered(to=opened[2 * i].decode(), text=opened[2 * i + 1].decode(), at=r.at,
                          line_id=r.line_id) for i, r in enumerate(rows)]
