"""What recipients do with a business's Telegram bot: /start offers explicit consent with two
buttons (the tap is the evidence), /stop and stop words opt out, /help informs, /verilerim
tells what is held about them (KVKK art. 11), and blocking the bot suppresses the chat.
Webhooks and long polling both hand their updates to `TelegramInbound.handle`."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from bot import deliveries
from bot import telegram_invites as invites
from bot.inbound import InboundRouter
from bot.operator import COMMANDS as OPERATOR_COMMANDS
from bot.operator import OperatorDesk
from bot.telegram import TelegramChannel, TelegramLineError
from bot.telegram_updates import (
    ChatBlocked,
    ChatText,
    ChatUnblocked,
    ConsentTap,
    command_of,
    parse_update,
)
from campaigns.leases import Keeper
from campaigns.ports import Line
from crypto.errors import VaultLockedError
from optout import ledger, subjects
from optout.deadlines import TZ
from optout.tenants import TenantProfile
from store.faults import is_unavailable

log = logging.getLogger(__name__)

_TEXTS = {
    "tr": {
        "offer": "{sender} size kampanya ve duyurularını Telegram'dan göndermek istiyor. Kabul "
                 "ediyor musunuz? İstediğiniz zaman /stop yazarak ayrılabilirsiniz.",
        "invite": "{sender} sizi Telegram'dan kampanya ve duyurularını almaya davet ediyor. "
                  "Kabul ediyor musunuz? İstediğiniz zaman /stop yazarak ayrılabilirsiniz.",
        "yes": "Evet, kabul ediyorum", "no": "Hayır",
        "accepted": "{sender}: Onayınız kaydedildi. Ayrılmak için /stop yazın.",
        "declined": "Tamam, size ticari ileti göndermeyeceğiz.",
        "data": "{sender} bu sohbet için şunları tutuyor: ticari ileti izni: {status}{since}; "
                "izin kaydı sayısı: {events}. Ad, numara ve mesajlar şifreli saklanır. "
                "Silinmesini istiyorsanız /sil yazın ya da {contact}.",
        "erased": "{sender}: Verileriniz silindi; size bir daha mesaj gönderilmeyecek. "
                  "Yasal olarak saklanması gereken izin kayıtları süresi dolunca silinir.",
    },
    "en": {
        "offer": "{sender} would like to send you offers and news on Telegram. Do you agree? "
                 "You can leave at any time by sending /stop.",
        "invite": "{sender} invites you to receive its offers and news on Telegram. Do you "
                  "agree? You can leave at any time by sending /stop.",
        "yes": "Yes, I agree", "no": "No",
        "accepted": "{sender}: Your consent is recorded. Send /stop to leave.",
        "declined": "OK, we will not send you marketing messages.",
        "data": "{sender} holds this for this chat: marketing consent: {status}{since}; "
                "consent records: {events}. Names, numbers and messages are stored encrypted. "
                "To have them erased send /sil, or {contact}.",
        "erased": "{sender}: Your data is erased and you will not be messaged again. Consent "
                  "records the law requires are destroyed when their period ends.",
    },
}
# /verilerim while the vault is locked: what is held can only be read with the tenant's key.
_LATER = {"tr": "{sender}: Kayıtlarınıza şu an erişilemiyor; lütfen daha sonra tekrar deneyin.",
          "en": "{sender}: Your records cannot be read right now; please try again later."}
_STATUS = {"tr": {"granted": "var", "revoked": "geri alındı", None: "yok"},
           "en": {"granted": "given", "revoked": "withdrawn", None: "none"}}


def subscribers_list(line: Line) -> str:
    """Which list a bot's consenting subscribers join (campaigns on the bot can target it):
    the line's id, as campaigns.audiences.add_subscriber finds the list by it (names are
    sealed); the list reads as "Telegram: <line name>" once unlocked."""
    return line.id


class TelegramInbound:
    def __init__(self, router: InboundRouter, channel: TelegramChannel,
                 desk: OperatorDesk | None = None, erasures=None):
        self.router, self.channel, self.desk = router, channel, desk
        self.erasures = erasures  # optout.subjects.ErasureFinisher

    async def handle(self, line: Line, update: dict) -> int:
        """Applies one update; an update id already processed (Telegram resends until it is
        acknowledged) is ignored and counts 0."""
        events = parse_update(update)
        if not events:
            return 0
        key = deliveries.telegram_key(events[0].update_id)
        if await deliveries.seen(self.router.db, line.id, key):
            return 0
        for event in events:
            await self._event(line, event)
        await deliveries.remember(self.router.db, line.id, key)
        return len(events)

    async def _event(self, line: Line, event) -> None:
        if isinstance(event, ChatText):
            await self._text(line, event)
        elif isinstance(event, ConsentTap):
            await self._tap(line, event)
        elif isinstance(event, ChatBlocked):
            await self.router.stopped_by_provider(line, event.chat_id, "telegram:blocked",
                                                  "the person blocked the bot",
                                                  kind="blocked", at=event.date)
        elif isinstance(event, ChatUnblocked):
            await self.router.unblocked(line, event.chat_id, at=event.date)

    async def _profile(self, line: Line) -> TenantProfile:
        async with self.router.db.connect() as conn:
            return await self.router.directory.profile(conn, line.tenant_id)

    async def _text(self, line: Line, event: ChatText) -> None:
        command = command_of(event.text)
        name = command[0] if command else None
        if name == "start":
            await self._start(line, event.chat_id, command[1])
        elif name == "verilerim":
            await self._my_data(line, event.chat_id)
        elif name == "sil":
            await self._erase(line, event.chat_id)
        elif name in OPERATOR_COMMANDS and self.desk is not None:
            reply = await self.desk.handle(line, event.chat_id, name, command[1])
            await self.router.reply(line, event.chat_id, reply)
        else:  # /stop, /help and plain words go through the shared keyword path
            await self.router.receive(line, event.chat_id, event.text,
                                      provider_message_id=f"tg-{event.update_id}",
                                      sent_at=event.date)

    async def _start(self, line: Line, chat_id: str, payload: str) -> None:
        """The consent offer; "/start <token>" from an invite link names the invitation, and
        its buttons carry the token. An unknown or revoked token gets the plain offer."""
        profile = await self._profile(line)
        texts = _TEXTS.get(profile.language, _TEXTS["tr"])
        invite = await self._invite(line, payload)
        offer = texts["invite" if invite else "offer"].format(sender=profile.sender_name)
        await self.channel.send_consent_offer(line, chat_id, offer, texts["yes"], texts["no"],
                                              invite.token if invite else None)

    async def _invite(self, line: Line, token: str | None) -> invites.Invite | None:
        if not token:
            return None
        async with self.router.db.connect() as conn:
            return await invites.by_token(conn, token, line)

    async def _tap(self, line: Line, tap: ConsentTap) -> None:
        profile = await self._profile(line)
        texts = _TEXTS.get(profile.language, _TEXTS["tr"])
        accepted = False
        if tap.accepted:
            shown = tap.message_text or texts["offer"].format(sender=profile.sender_name)
            # Revoked since the offer: still the person's consent, but it joins no list.
            invite = await self._invite(line, tap.invite_token)
            # False when a stop of the same second won (optout.order): say what holds.
            accepted = await self.router.granted(
                line, tap.chat_id,
                "telegram:invite_button" if invite else "telegram:consent_button",
                f"{shown} → {texts['yes']} (user {tap.user_id})",
                subscribe_to=subscribers_list(line),
                join_list_id=invite.list_id if invite else None,
                evidence=_tap_evidence(tap, invite))
        reply = texts["accepted"].format(sender=profile.sender_name) if accepted \
            else texts["declined"]
        await self.channel.answer_callback(line, tap.callback_query_id, reply)
        await self.router.reply(line, tap.chat_id, reply)

    async def _my_data(self, line: Line, chat_id: str) -> None:
        profile = await self._profile(line)
        language = profile.language if profile.language in _TEXTS else "tr"
        async with self.router.db.connect() as conn:
            try:
                index = (await self.router.directory.indexer(conn, line.tenant_id))(chat_id)
            except VaultLockedError:  # what is held is read with the tenant's key only
                await self.router.reply(line, chat_id, _LATER[language].format(
                    sender=profile.sender_name))
                return
            state, history = await ledger.state_and_history(conn, line.tenant_id, index,
                                                            "TELEGRAM")
        status = state["status"] if state else None
        contact = profile.sender_contact or profile.sender_name
        text = _TEXTS[language]["data"].format(
            sender=profile.sender_name, status=_STATUS[language][status],
            since=f" ({_date(state['occurred_at'])})" if state else "", events=len(history),
            contact=f"{contact} ile iletişime geçin" if language == "tr" else f"contact {contact}")
        await self.router.reply(line, chat_id, text)


    async def _erase(self, line: Line, chat_id: str) -> None:
        """KVKK erasure asked in the chat: done at once (while the vault is locked: kept
        sealed and done first thing at the unlock); the person stays unreachable."""
        try:
            async with self.router.db.connect() as conn:
                index = (await self.router.directory.indexer(conn, line.tenant_id))(chat_id)
        except VaultLockedError:
            index = None
            await self.router.erase_later(line, chat_id)
        if index is not None:
            self.router.watch.note(line.tenant_id, index)  # before the commit: optout.watch
            async with self.router.db.begin() as conn:
                await subjects.erase(conn, line.tenant_id, index)
                await subjects.record_request(conn, line.tenant_id, index, "erasure",
                                              "telegram", done=False)
        if self.erasures is not None and index is not None:
            await self.erasures.finish(line.tenant_id)
        profile = await self._profile(line)
        texts = _TEXTS.get(profile.language, _TEXTS["tr"])
        await self.router.reply(line, chat_id, texts["erased"].format(
            sender=profile.sender_name))


def _tap_evidence(tap: ConsentTap, invite: invites.Invite | None) -> dict:
    """The button tap as evidence: Telegram's ids for it and when it reached us (GMT+3),
    and the invite link it came by."""
    evidence: dict = {"tap": {
        "callback_query_id": tap.callback_query_id, "message_id": tap.message_id,
        "update_id": tap.update_id,
        "received_at": datetime.fromtimestamp(time.time(), TZ).isoformat(timespec="seconds")}}
    if invite is not None:
        evidence["invite"] = invite.evidence()
    return evidence


def _date(ts: float) -> str:
    import time
    return time.strftime("%Y-%m-%d", time.gmtime(ts + 3 * 3600))


class PollBackoff:
    """How long a poll loop waits before its next getUpdates. Telegram holds an empty long
    poll for its whole timeout, so an empty answer that comes back early, like a failure,
    means something is wrong: waiting 1 s, then twice as long each time up to 30 s, keeps a
    broken or hostile server from being polled in a tight loop. Updates reset it."""

    FIRST, MOST = 1.0, 30.0

    def __init__(self) -> None:
        self.wait = 0.0

    def after(self, updates: int, elapsed: float, poll_seconds: float, failed: bool = False
              ) -> float:
        """The wait before the next poll, given what this one returned and how long it took."""
        if updates and not failed:
            self.wait = 0.0
        elif failed or elapsed < poll_seconds / 2:
            self.wait = min(self.MOST, max(self.FIRST, self.wait * 2))
        else:
            self.wait = 0.0  # an honest empty long poll: the server waited, so may we not
        return self.wait


class TelegramPoller:
    """Long polling for bots when the service has no public URL: one task per line, ended
    when its line leaves the list (deleted, paused) or loses its credentials."""

    def __init__(self, inbound: TelegramInbound, lines: Callable, timeout: int = 25,
                 leases: Keeper | None = None):
        self.inbound, self._lines, self._timeout = inbound, lines, timeout
        self._tasks: dict[str, asyncio.Task] = {}
        # With several processes on one database, one poller per bot: the lines this
        # process holds a lease on (campaigns.leases). None polls every line (one process).
        self._leases = leases

    async def run(self, every: float = 5.0) -> None:
        while True:
            try:
                current = {line.id: line for line in await self._lines()}
                if self._leases is not None:
                    held = await self._leases.hold(set(current))
                    current = {i: line for i, line in current.items() if i in held}
            except Exception as exc:  # the database is away: keep the lines polled so far
                if not is_unavailable(exc):
                    raise
                log.warning("telegram lines not read", extra={"error": type(exc).__name__})
                await asyncio.sleep(every)
                continue
            for line_id in [i for i in self._tasks if i not in current]:
                self.drop(line_id)
            for line in current.values():
                task = self._tasks.get(line.id)
                if task is None or task.done():
                    self._tasks[line.id] = asyncio.create_task(self._poll(line))
            await asyncio.sleep(every)

    def drop(self, line_id: str) -> None:
        """Stops polling the line now (it was deleted here; other processes notice within
        one `run` round)."""
        task = self._tasks.pop(line_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._leases is not None:  # a peer polls the bots at once, not after the expiry
            try:
                await self._leases.release_all()
            except Exception as exc:
                log.warning("polling leases not released", extra={"error": type(exc).__name__})

    async def _poll(self, line: Line) -> None:
        offset, backoff = None, PollBackoff()
        while True:
            started = time.monotonic()
            try:
                updates = await self.inbound.channel.poll(line, offset, self._timeout)
            except TelegramLineError as exc:
                log.warning("telegram polling failed", extra={"line_id": line.id,
                                                              "reason": exc.code})
                await asyncio.sleep(backoff.after(0, 0.0, self._timeout, failed=True))
                continue
            except LookupError:  # the line's credentials are gone: it was deleted
                return
            updates = [u for u in updates if _update_id(u) is not None]
            wait = backoff.after(len(updates), time.monotonic() - started, self._timeout)
            for update in updates:
                try:
                    await self.inbound.handle(line, update)
                except Exception as exc:  # one bad update must not stop the bot
                    if is_unavailable(exc):
                        # Not confirmed to Telegram (offset kept): it comes again once the
                        # database is back, so a STOP is never dropped.
                        wait = max(wait, 1.0)
                        break
                    log.error("telegram update failed", extra={"line_id": line.id,
                                                               "error": type(exc).__name__})
                offset = max(offset or 0, _update_id(update) + 1)
            if wait:
                await asyncio.sleep(wait)


def _update_id(update: object) -> int | None:
    """An update's id; None for what a broken server may send instead of an update."""
    value = update.get("update_id") if isinstance(update, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
