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
from crypto.service import FieldCrypto
from optout import inbound
from optout.inbound import InboundText, Outcome
from optout.keywords import Intent, classify
from optout.order import event_second
from optout.tenants import TenantDirectory
from optout.watch import RevocationWatch
from store.engine import Database

log = logging.getLogger(__name__)


@dataclass
class InboundRouter:
    db: Database
    fields: FieldCrypto
    directory: TenantDirectory
    channels: dict[str, Channel]
    watch: RevocationWatch
    _pending_replies: set = field(default_factory=set)

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
                          provider_message_id=provider_message_id or str(uuid.uuid4()),
                          received_at=time.time(), sent_at=sent_at)
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

    async def wrote(self, line: Line, address: str, at: float | None = None) -> None:
        """A message with no words to classify (a photo, a location, a reaction) still opens
        the person's 24 h window on the line."""
        if window.window_of(line.channel):
            async with self.db.begin() as conn:
                await self.directory.profile(conn, line.tenant_id)  # loads the index key
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
        newer events of the person superseded it (nothing changed)."""
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
        superseded it."""
        profile, sealer, index = await self._context(line, address)
        async with self.db.begin() as conn:
            applied = await inbound.apply_grant(conn, profile, index, sealer, line.channel,
                                                address, source, statement,
                                                event_second(at, time.time()), evidence)
            sealed = sealer.seal_field(address.encode()) if applied else b""
            if applied and subscribe_to:
                await add_subscriber(conn, line.tenant_id, subscribe_to, index, sealed)
            if applied and join_list_id:
                await join_list(conn, line.tenant_id, join_list_id, index, sealed)
        return applied

    async def unblocked(self, line: Line, address: str, at: float | None = None) -> bool:
        """The person unblocked the bot at `at`: only the block is lifted (that is not
        consent), and only when no newer block was applied."""
        _, _, index = await self._context(line, address)
        async with self.db.begin() as conn:
            return await inbound.apply_unblock(conn, line.tenant_id, index, line.channel,
                                               event_second(at, time.time()))
