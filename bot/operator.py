"""The operator bot: a business user links a Telegram chat to their tenant with a one-time code
from the API, then follows and steers campaigns from it (/campaigns, /status, /pause, /resume)
and receives alerts. It never asks for or accepts a passphrase."""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid

import sqlalchemy as sa

from bot.delivery import send_patiently
from campaigns import outbox, service
from campaigns.lines import line_by_id
from campaigns.ports import Line
from campaigns.service import CampaignError
from crypto.errors import VaultLockedError
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from optout.names import open_name
from optout.tenants import TenantDirectory
from store import raw
from store.engine import Database
from store.tables import campaigns, operator_codes, operators

log = logging.getLogger(__name__)
CODE_SECONDS = 600
# No 0/O or 1/I: codes are read off a screen and typed on a phone.
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
COMMANDS = ("link", "campaigns", "status", "pause", "resume", "unlock")
_ALERTS = {"completed": "✅ «{name}» tamamlandı: {sent} gönderildi, {skipped} atlandı.",
           "paused": "⏸ «{name}» otomatik duraklatıldı: {detail}. /resume {short} ile sürdürün.",
           "waiting_unlock": "🔒 «{name}» kasanın açılmasını bekliyor. Paneli veya API'yi "
                             "kullanarak kasayı açın; bu bot parola kabul etmez.",
           "line_paused": "⚠️ Gönderim hattı sağlayıcı uyarısıyla duraklatıldı: {detail}.",
           "iys_deadline": "⏰ {detail} izin kaydının İYS'ye yükleme süresi bir iş gününden az "
                           "kaldı. Yüklenebilmeleri için kasayı açın.",
           "kvkk_deadline": "⏰ {detail} KVKK başvurusunun 30 günlük yanıt süresinin dolmasına 5 "
                            "günden az kaldı. Panelde «KVKK talepleri» sayfasına bakın; silme "
                            "talepleri kasa açılınca tamamlanır.",
           "security": "🔐 {detail}",
           "iys_rejected": "⚠️ İYS {detail} izin kaydını reddetti. Nedenleri panelde ve "
                           "GET /api/v1/iys yanıtında."}


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().replace("-", "").encode()).hexdigest()


class OperatorDesk:
    def __init__(self, db: Database, master: MasterKey, directory: TenantDirectory, channel,
                 fields: FieldCrypto | None = None):
        self.db, self.master, self.directory, self.channel = db, master, directory, channel
        self.fields = fields  # opens campaign names while the vault is unlocked

    async def _name(self, tenant_id: str, row) -> str:
        """A campaign's name (sealed): opened while unlocked, else a lock and its short id."""
        if self.fields is not None and row.name_sealed:
            name, locked = await open_name(self.fields, tenant_id, bytes(row.name_sealed))
            if not locked and name is not None:
                return name
        return f"🔒 {row.id[:8]}"

    async def new_code(self, tenant_id: str) -> tuple[str, float]:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        expires = time.time() + CODE_SECONDS
        async with self.db.begin() as conn:
            await conn.execute(operator_codes.delete().where(
                operator_codes.c.expires_at < time.time()))
            await conn.execute(operator_codes.insert().values(
                code_hash=_hash(code), tenant_id=tenant_id, expires_at=expires))
        return f"{code[:4]}-{code[4:]}", expires

    async def handle(self, line: Line, chat_id: str, name: str, arg: str) -> str:
        """The reply to an operator command typed in the line's bot."""
        if name == "unlock":
            return "Kasa yalnızca panelden veya API'den açılır; bu bot parola kabul etmez."
        try:
            return await self._handle(line, chat_id, name, arg)
        except VaultLockedError:  # operators are found by the tenant's index: held by it
            return "Kasa kilitli; önce panelden açın. / The vault is locked; unlock it first."

    async def _handle(self, line: Line, chat_id: str, name: str, arg: str) -> str:
        if name == "link":
            return await self._link(line, chat_id, arg)
        if not await self.is_operator(line, chat_id):
            return "Bu komut işletme kullanıcıları içindir. Önce API'den alınan kodla /link KOD."
        if name == "campaigns":
            return await self._campaigns(line.tenant_id)
        return await self._campaign_command(line.tenant_id, name, arg.strip())

    async def _link(self, line: Line, chat_id: str, code: str) -> str:
        now = time.time()
        async with self.db.begin() as conn:
            found = (await conn.execute(sa.select(operator_codes).where(
                operator_codes.c.code_hash == _hash(code)))).first()
            if found is None or found.expires_at < now or found.tenant_id != line.tenant_id:
                return "Kod geçersiz ya da süresi dolmuş."
            await conn.execute(operator_codes.delete().where(
                operator_codes.c.code_hash == found.code_hash))
            index = (await self.directory.indexer(conn, line.tenant_id))(chat_id)
            await raw.execute(conn, "DELETE FROM operators WHERE line_id = ? AND chat_index = ?",
                              (line.id, index))
            await conn.execute(operators.insert().values(
                id=str(uuid.uuid4()), tenant_id=line.tenant_id, line_id=line.id,
                chat_index=index, chat_wrapped=self.master.wrap(chat_id.encode()),
                created_at=now))
        log.info("operator linked", extra={"tenant_id": line.tenant_id, "line_id": line.id})
        return ("Bağlandı. Kampanya bildirimleri bu sohbete gelecek. Komutlar: /campaigns, "
                "/status ID, /pause ID, /resume ID.")

    async def is_operator(self, line: Line, chat_id: str) -> bool:
        async with self.db.connect() as conn:
            index = (await self.directory.indexer(conn, line.tenant_id))(chat_id)
            rows = await raw.fetch(conn, "SELECT 1 FROM operators WHERE line_id = ? AND "
                                         "chat_index = ? AND tenant_id = ?",
                                   (line.id, index, line.tenant_id))
        return bool(rows)

    async def _campaigns(self, tenant_id: str) -> str:
        q = sa.select(campaigns).where(campaigns.c.tenant_id == tenant_id).order_by(
            campaigns.c.created_at.desc()).limit(10)
        async with self.db.connect() as conn:
            rows = list(await conn.execute(q))
            lines = [await self._summary(conn, r) for r in rows]
        return "\n".join(lines) if lines else "Henüz kampanya yok."

    async def _summary(self, conn, row) -> str:
        counts, _ = await outbox.counts(conn, row.id)
        done = counts["sent"] + counts["delivered"] + counts["read"]
        total = sum(counts.values())
        reason = f" ({row.state_reason})" if row.state_reason else ""
        name = await self._name(row.tenant_id, row)
        return f"{row.id[:8]} «{name}» — {row.state}{reason}, {done}/{total}"

    async def _campaign_command(self, tenant_id: str, name: str, short: str) -> str:
        if len(short) < 4:
            return f"Kullanım: /{name} KAMPANYA_ID (ilk 8 karakter yeter)"
        q = sa.select(campaigns.c.id).where(campaigns.c.tenant_id == tenant_id,
                                            campaigns.c.id.startswith(short))
        async with self.db.begin() as conn:
            ids = [r.id for r in await conn.execute(q.limit(2))]
            if len(ids) != 1:
                return "Kampanya bulunamadı." if not ids else "Birden çok kampanya eşleşti."
            if name in ("pause", "resume"):
                try:
                    await service.transition(conn, tenant_id, ids[0], name)
                except CampaignError as exc:
                    return f"Yapılamadı: {exc}"
            return await self._summary(conn, await service.get(conn, tenant_id, ids[0]))

    async def campaign_event(self, tenant_id: str, campaign_id: str | None, event: str,
                             detail: str | None = None) -> None:
        """Alerts (campaigns.ports.Alerts): pushed to every chat linked to the tenant."""
        text = await self._alert_text(tenant_id, campaign_id, event, detail)
        async with self.db.connect() as conn:
            rows = list(await conn.execute(sa.select(operators.c.line_id,
                                                     operators.c.chat_wrapped).where(
                operators.c.tenant_id == tenant_id)))
            targets = [(await line_by_id(conn, r.line_id), r.chat_wrapped) for r in rows]
        for line, wrapped in targets:
            if line is not None:
                await self._send(line, self.master.unwrap(bytes(wrapped)).decode(), text)

    async def _send(self, line: Line, chat_id: str, text: str) -> None:
        await send_patiently(self.channel, line, chat_id, text)

    async def _alert_text(self, tenant_id, campaign_id, event, detail) -> str:
        name, counts = "?", {"sent": 0, "skipped": 0}
        if campaign_id:
            async with self.db.connect() as conn:
                row = await service.get(conn, tenant_id, campaign_id)
                name, (counts, _) = (await self._name(tenant_id, row),
                                     await outbox.counts(conn, campaign_id))
        return _ALERTS[event].format(name=name, detail=detail or "", sent=counts["sent"],
                                     skipped=counts["skipped"], short=(campaign_id or "")[:8])
