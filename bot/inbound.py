"""Inbound routing: every channel's incoming text (sandbox API, Telegram, WhatsApp webhooks)
comes through `receive`, which commits its effect and only then sends the reply."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from bot.delivery import LONGEST_WAIT, send_patiently
from campaigns import window
from campaigns.audiences import add_subscriber, join_list
from campaigns.ports import Channel, Line, RateLimited
from crypto.blind import provider_reference
from crypto.errors import VaultLockedError
from crypto.service import FieldCrypto
from optout import inbound
from optout.backlog import Applying, InboundBacklog
from optout.inbound import InboundText, Outcome
from optout.keywords import Intent, classify
from optout.order import event_second
from optout.replies import reply_for
from optout.tenants import TenantDirectory, TenantProfile
from optout.watch import RevocationWatch
from store import raw
from store.engine import Database

log = logging.getLogger(__name__)


@dataclass
class InboundRouter:
    db: Database
    fields: FieldCrypto
    directory: TenantDirectory
    channels: dict[str, Channel]
    watch: RevocationWatch
    # Where what arrives while the vault is locked waits, sealed (optout.backlog); without
    # it (a bare router in a tool) a locked tenant's inbound raises VaultLockedError.
    backlog: InboundBacklog | None = None
    _pending_replies: set = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.backlog is not None:
            self.use_backlog(self.backlog)

    def use_backlog(self, backlog: InboundBacklog) -> None:
        """Keeps a locked tenant's inbound in `backlog` and applies it from there."""
        self.backlog = backlog
        backlog.on("receive", self._apply_receive)
        backlog.on("wrote", self._apply_wrote)
        backlog.on("stop", self._apply_stop)
        backlog.on("grant", self._apply_grant)
        backlog.on("unblock", self._apply_unblock)
        backlog.on("erase", _apply_erase)

    def _locked(self, tenant_id: str) -> bool:
        """True when the tenant's index cannot be computed now and a backlog can keep it."""
        if self.directory.can_index(tenant_id):
            return False
        if self.backlog is None:
            raise VaultLockedError("vault is locked")
        return True

    async def receive(self, line: Line, address: str, text: str,
                      provider_message_id: str | None = None,
                      sent_at: float | None = None) -> Outcome:
        """`address` is already normalised for the line's channel; `sent_at` is when the
        person sent it by the provider's clock (orders a STOP and a START that cross)."""
        async with self.db.connect() as conn:
            profile = await self.directory.profile(conn, line.tenant_id)
        # Made before the write transaction: creating a data key is a write of its own.
        sealer = await self.fields.shared_sealer(line.tenant_id, profile.public_key)
        msg = InboundText(tenant_id=line.tenant_id, line_id=line.id, channel=line.channel,
                          address=address, text=text[:4096],
                          provider_message_id=(provider_reference(provider_message_id)
                                               if provider_message_id else str(uuid.uuid4())),
                          received_at=time.time(), sent_at=sent_at)
        if self._locked(line.tenant_id):
            return await self._keep_receive(line, profile, msg)
        index = self.directory.index(line.tenant_id, address)
        if classify(text, profile.brand_names) is Intent.STOP:
            self.watch.note(line.tenant_id, index)  # before the commit: see optout.watch
        async with self.db.begin() as conn:
            outcome = await inbound.handle(conn, profile, index, sealer, msg)
            if window.window_of(line.channel):  # the person opened (or renewed) their window
                await window.note_inbound(conn, line.tenant_id, line.id, index,
                                          sent_at or msg.received_at)
        log.info("inbound message", extra={
            "tenant_id": line.tenant_id, "line_id": line.id, "intent": outcome.intent,
            "duplicate": outcome.duplicate, "stale": outcome.stale})
        if outcome.reply:
            await self.reply(line, address, outcome.reply)
        return outcome

    async def _keep_receive(self, line: Line, profile: TenantProfile, msg: InboundText
                            ) -> Outcome:
        """A locked tenant's inbound text: sealed for the next unlock, and confirmed now (the
        reply needs the number, which the webhook carries, not the index)."""
        intent = classify(msg.text, profile.brand_names)
        async with self.db.begin() as conn:
            seen = await raw.fetch(conn, "SELECT 1 FROM inbound_messages WHERE line_id = ? AND "
                                         "provider_message_id = ?",
                                   (line.id, msg.provider_message_id))
            kept = not seen and await self.backlog.keep(
                line.tenant_id, profile.public_key, "receive", {
                    "line_id": line.id, "channel": line.channel, "address": msg.address,
                    "text": msg.text, "provider_message_id": msg.provider_message_id,
                    "received_at": msg.received_at, "sent_at": msg.sent_at},
                provider_id=f"{line.id}:{msg.provider_message_id}", conn=conn)
        if not kept:
            return Outcome(intent, duplicate=True, reply=None)
        reply = None if intent is None else reply_for(
            intent, profile.sender_name, profile.sender_contact, profile.language)
        log.info("inbound message kept sealed", extra={
            "tenant_id": line.tenant_id, "line_id": line.id, "intent": intent})
        if reply:
            await self.reply(line, msg.address, reply)
        return Outcome(intent, duplicate=False, reply=reply)

    async def _keep(self, line: Line, op: str, payload: dict) -> None:
        async with self.db.connect() as conn:
            profile = await self.directory.profile(conn, line.tenant_id)
        await self.backlog.keep(line.tenant_id, profile.public_key, op,
                                {"line_id": line.id, "channel": line.channel, **payload})

    async def wrote(self, line: Line, address: str, at: float | None = None) -> None:
        """A message with no words to classify (a photo, a location, a reaction) still opens
        the person's 24 h window on the line."""
        if window.window_of(line.channel):
            async with self.db.connect() as conn:
                await self.directory.profile(conn, line.tenant_id)  # loads the index key
            if self._locked(line.tenant_id):
                await self._keep(line, "wrote", {
                    "address": address, "at": time.time() if at is None else at})
                return
            async with self.db.begin() as conn:
                index = self.directory.index(line.tenant_id, address)
                await window.note_inbound(conn, line.tenant_id, line.id, index,
                                          time.time() if at is None else at)

    async def reply(self, line: Line, address: str, text: str) -> None:
        """Sends a confirmation now, or, when the provider asks to wait (WhatsApp allows one
        message per 6 s to a person), a little later in the background."""
        channel = self.channels[line.channel]
        result = await send_patiently(channel, line, address, text, attempts=1)
        if isinstance(result, RateLimited) and result.retry_after <= LONGEST_WAIT:
            task = asyncio.create_task(self._retry_reply(line, address, text,
                                                         result.retry_after))
            self._pending_replies.add(task)
            task.add_done_callback(self._pending_replies.discard)

    async def _retry_reply(self, line: Line, address: str, text: str, wait: float) -> None:
        result = await send_patiently(self.channels[line.channel], line, address, text,
                                      first_wait=wait, attempts=3)
        if isinstance(result, RateLimited):
            log.warning("confirmation not sent", extra={"line_id": line.id})

    async def _context(self, line: Line, address: str):
        async with self.db.connect() as conn:
            profile = await self.directory.profile(conn, line.tenant_id)
        sealer = await self.fields.shared_sealer(line.tenant_id, profile.public_key)
        return profile, sealer, self.directory.index(line.tenant_id, address)

    async def stopped_by_provider(self, line: Line, address: str, source: str, evidence: str,
                                  kind: str = "opted_out", at: float | None = None) -> bool:
        """An opt-out the provider reports (WhatsApp stop preference or error 131050, a
        Telegram block) at its time `at`: applied like a STOP, without a reply. False when
        newer events of the person superseded it (nothing changed). Kept sealed while
        locked (True: it will be applied)."""
        if await self._locked_profile(line):
            await self._keep(line, "stop", {
                "address": address, "source": source, "evidence": evidence, "kind": kind,
                "at": event_second(at, time.time())})
            return True
        profile, sealer, index = await self._context(line, address)
        self.watch.note(line.tenant_id, index)  # before the commit: see optout.watch
        async with self.db.begin() as conn:
            applied = await inbound.apply_stop(conn, profile, index, sealer, line.channel,
                                               address, source, evidence, kind=kind,
                                               at=event_second(at, time.time()))
        log.info("provider opt-out", extra={"tenant_id": line.tenant_id, "line_id": line.id,
                                            "kind": kind, "stale": not applied})
        return applied

    async def granted(self, line: Line, address: str, source: str, statement: str,
                      subscribe_to: str | None = None, at: float | None = None,
                      join_list_id: str | None = None, evidence: dict | None = None) -> bool:
        """A consent given on the channel itself at its time `at` (now when None); with
        `subscribe_to` the person also joins that list (created on first use), and with
        `join_list_id` that list (a Telegram invite's), so the business can send a campaign
        to them; `evidence` adds facts to the sealed evidence. False when a newer stop
        superseded it. Kept sealed while locked (True: it will be applied unless a newer
        stop supersedes it)."""
        payload = {"address": address, "source": source, "statement": statement,
                   "subscribe_to": subscribe_to, "at": event_second(at, time.time()),
                   "join_list_id": join_list_id, "evidence": evidence}
        if await self._locked_profile(line):
            await self._keep(line, "grant", payload)
            return True
        profile, sealer, index = await self._context(line, address)
        async with self.db.begin() as conn:
            return await _grant(conn, profile, sealer, index, line.channel, payload)

    async def unblocked(self, line: Line, address: str, at: float | None = None) -> bool:
        """The person unblocked the bot at `at`: only the block is lifted (that is not
        consent), and only when no newer block was applied. Kept sealed while locked."""
        if await self._locked_profile(line):
            await self._keep(line, "unblock", {"address": address,
                                               "at": event_second(at, time.time())})
            return True
        _, _, index = await self._context(line, address)
        async with self.db.begin() as conn:
            return await inbound.apply_unblock(conn, line.tenant_id, index, line.channel,
                                               event_second(at, time.time()))

    async def erase_later(self, line: Line, address: str) -> None:
        """A KVKK erasure asked in the chat while the vault is locked: applied at unlock,
        before anything is sent (optout.backlog)."""
        if self.backlog is None:
            raise VaultLockedError("vault is locked")
        await self._keep(line, "erase", {"address": address})

    async def _locked_profile(self, line: Line) -> bool:
        async with self.db.connect() as conn:
            await self.directory.profile(conn, line.tenant_id)  # loads the index key
        return self._locked(line.tenant_id)

    # --- applying what was kept while locked (optout.backlog), in its transaction ----------

    async def _apply_receive(self, a: Applying, item: dict) -> None:
        msg = InboundText(tenant_id=a.profile.id, line_id=item["line_id"],
                          channel=item["channel"], address=item["address"], text=item["text"],
                          provider_message_id=item["provider_message_id"],
                          received_at=item["received_at"], sent_at=item["sent_at"])
        index = a.index(msg.address)
        if classify(msg.text, a.profile.brand_names) is Intent.STOP:
            a.watch.note(a.profile.id, index)
        await inbound.handle(a.conn, a.profile, index, a.sealer, msg)  # no reply: sent already
        if window.window_of(msg.channel):
            await window.note_inbound(a.conn, a.profile.id, msg.line_id, index,
                                      msg.sent_at or msg.received_at)

    async def _apply_wrote(self, a: Applying, item: dict) -> None:
        await window.note_inbound(a.conn, a.profile.id, item["line_id"],
                                  a.index(item["address"]), item["at"])

    async def _apply_stop(self, a: Applying, item: dict) -> None:
        index = a.index(item["address"])
        a.watch.note(a.profile.id, index)
        await inbound.apply_stop(a.conn, a.profile, index, a.sealer, item["channel"],
                                 item["address"], item["source"], item["evidence"],
                                 kind=item["kind"], at=item["at"])

    async def _apply_grant(self, a: Applying, item: dict) -> None:
        await _grant(a.conn, a.profile, a.sealer, a.index(item["address"]), item["channel"],
                     item)

    async def _apply_unblock(self, a: Applying, item: dict) -> None:
        await inbound.apply_unblock(a.conn, a.profile.id, a.index(item["address"]),
                                    item["channel"], item["at"])


async def _grant(conn, profile: TenantProfile, sealer, index: bytes, channel: str,
                 item: dict) -> bool:
    applied = await inbound.apply_grant(conn, profile, index, sealer, channel, item["address"],
                                        item["source"], item["statement"], item["at"],
                                        item["evidence"])
    sealed = sealer.seal_field(item["address"].encode()) if applied else b""
    if applied and item["subscribe_to"]:
        await add_subscriber(conn, profile.id, item["subscribe_to"], index, sealed)
    if applied and item["join_list_id"]:
        await join_list(conn, profile.id, item["join_list_id"], index, sealed)
    return applied


async def _apply_erase(a: Applying, item: dict) -> None:
    from optout import subjects  # the KVKK module pulls in much; only needed here
    index = a.index(item["address"])
    a.watch.note(a.profile.id, index)
    await subjects.erase(a.conn, a.profile.id, index)
    await subjects.record_request(a.conn, a.profile.id, index, "erasure", item["channel"],
                                  done=False)
