"""The Telegram channel: one aiogram Bot per line, Bot API errors classified into send outcomes."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.telegram_updates import UPDATE_KINDS
from campaigns.ports import (
    Line,
    OutboundMessage,
    PermanentFailure,
    SendResult,
    Sent,
    reason_of,
)
from optout.addresses import normalise_telegram_chat_id

log = logging.getLogger(__name__)

# Per request. aiogram's 60 s default would let one stuck request hold a sending worker for a
# minute; long polls get their own wait added on top.
REQUEST_TIMEOUT = 20


@dataclass(frozen=True, repr=False)
class TelegramCredentials:
    """A bot's secrets. No address: the Bot API URL is the operator's (providers.telegram_url),
    and a `base_url` stored by older versions is ignored when read."""

    bot_token: str
    webhook_secret: str = ""

    def __repr__(self) -> str:
        # The token is the bot: whoever reads it from a log or traceback can send as the line.
        secret = "<hidden>" if self.webhook_secret else "''"
        return f"TelegramCredentials(bot_token=<hidden>, webhook_secret={secret})"

    def to_json(self) -> str:
        return json.dumps({"bot_token": self.bot_token, "webhook_secret": self.webhook_secret})

    @classmethod
    def from_json(cls, data: str | bytes) -> TelegramCredentials:
        """Raises ValueError on anything but the shape to_json writes (never quoting values)."""
        fields = json.loads(data)
        if not isinstance(fields, dict) or not isinstance(fields.get("bot_token"), str):
            raise ValueError("Telegram credentials need a bot_token string")
        secret = fields.get("webhook_secret", "")
        if not isinstance(secret, str):
            raise ValueError("Telegram credentials: webhook_secret is a string")
        return cls(fields["bot_token"], secret)


def new_webhook_secret() -> str:
    """A secret_token Telegram accepts: 1-256 characters of A-Z, a-z, 0-9, _ and -."""
    return secrets.token_urlsafe(32)


@functools.cache
def _sdk():
    from bot import telegram_sdk
    return telegram_sdk


def classify_exception(exc: BaseException) -> SendResult:
    """The one place a Telegram error becomes an outcome; nothing above bot/ sees aiogram's."""
    return _sdk().classify_exception(exc)


class TelegramLineError(Exception):
    """A Bot API call other than a send failed; `outcome` says how, `code` in one word."""

    def __init__(self, outcome: SendResult):
        self.outcome = outcome
        self.code = reason_of(outcome)
        super().__init__(f"Telegram Bot API call failed: {self.code}")


class TelegramChannel:
    """Channel over the Telegram Bot API at `base_url` (providers.telegram_url);
    `credentials_for` unwraps a line's stored credentials and is asked on every call, so a new
    token takes effect on the next send."""

    def __init__(self, credentials_for: Callable[[Line], Awaitable[TelegramCredentials]], *,
                 base_url: str):
        self._credentials_for = credentials_for
        self._base_url = base_url.rstrip("/")
        self._bots: dict[str, tuple[str, Any]] = {}  # line id → (token, aiogram Bot)
        # Bots replaced after a credential change; other sends may still be using them.
        self._retired: list[Any] = []

    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult:
        return await self._send_text(line, address, message.text)

    async def flush(self) -> None:
        """Nothing is buffered: Telegram has the message once send returns."""

    async def send_consent_offer(self, line: Line, chat_id: str, text: str, accept_label: str,
                                 decline_label: str, invite_token: str | None = None
                                 ) -> SendResult:
        """`text` with accept / decline buttons; a tap comes back as a ConsentTap event (with
        `invite_token` when the offer answered an invite link)."""
        keyboard = _sdk().consent_keyboard(accept_label, decline_label, invite_token)
        return await self._send_text(line, chat_id, text, reply_markup=keyboard)

    async def answer_callback(self, line: Line, callback_query_id: str, text: str) -> bool:
        """Stops the button's spinner and shows `text`. False on failure, which is harmless:
        the tap is already recorded, and Telegram refuses answers after ~15 s anyway."""
        try:
            bot = await self._bot(line)
            await bot.answer_callback_query(callback_query_id, text=text)
        except _sdk().PROVIDER_ERRORS as exc:
            _log_failure(line, "answerCallbackQuery", exc)
            return False
        return True

    async def set_webhook(self, line: Line, url: str, secret: str) -> None:
        """Telegram will POST updates to `url` with `secret` in X-Telegram-Bot-Api-Secret-Token."""
        await self._call(line, "setWebhook", lambda bot: bot.set_webhook(
            url=url, secret_token=secret or None, allowed_updates=list(UPDATE_KINDS)))

    async def delete_webhook(self, line: Line) -> None:
        await self._call(line, "deleteWebhook", lambda bot: bot.delete_webhook())

    async def bot_username(self, line: Line) -> str | None:
        """The bot's username (getMe), without the "@": what t.me links name."""
        me = await self._call(line, "getMe", lambda bot: bot.get_me())
        return me.username

    async def poll(self, line: Line, offset: int | None, timeout: int) -> list[dict]:
        """Long polling (getUpdates): raw update dicts for parse_update. Pass the last
        update_id + 1 as the next offset; that is what confirms the earlier ones."""
        method = _sdk().raw_updates(offset, timeout, list(UPDATE_KINDS))
        return await self._call(line, "getUpdates", lambda bot: bot(
            method, request_timeout=REQUEST_TIMEOUT + timeout))

    async def forget(self, line_id: str) -> None:
        """Drops the line's bot (its line was deleted): its HTTP session closes, which also
        ends a long poll in flight."""
        cached = self._bots.pop(line_id, None)
        if cached is not None:
            await cached[1].session.close()

    async def close(self) -> None:
        bots = [bot for _, bot in self._bots.values()] + self._retired
        self._bots, self._retired = {}, []
        # Not Bot.close(): that is the Bot API method "close", which logs the bot out of its
        # server. Only the HTTP sessions are ours to close.
        await asyncio.gather(*(bot.session.close() for bot in bots))

    async def _send_text(self, line: Line, address: str, text: str, **options) -> SendResult:
        chat_id = normalise_telegram_chat_id(address)
        if chat_id is None:
            return PermanentFailure("invalid_address")
        try:
            bot = await self._bot(line)
            # No parse_mode: texts carry business content, and "<" must arrive as "<".
            sent = await bot.send_message(chat_id=int(chat_id), text=text, **options)
        except _sdk().PROVIDER_ERRORS as exc:
            return _log_failure(line, "sendMessage", exc)
        return Sent(str(sent.message_id))

    async def _call(self, line: Line, name: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await call(await self._bot(line))
        except _sdk().PROVIDER_ERRORS as exc:
            # from None: the chained aiohttp error may quote the URL, and the URL holds the token.
            raise TelegramLineError(_log_failure(line, name, exc)) from None

    async def _bot(self, line: Line):
        credentials = await self._credentials_for(line)
        key = credentials.bot_token
        cached = self._bots.get(line.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        bot = _sdk().new_bot(credentials.bot_token, self._base_url, REQUEST_TIMEOUT)
        if cached is not None:
            self._retired.append(cached[1])
        self._bots[line.id] = (key, bot)
        return bot


def _log_failure(line: Line, method: str, exc: BaseException) -> SendResult:
    """Classifies `exc` and logs it by type only: its text can hold the chat id or the URL
    with the token, and the failed method object holds the message text."""
    outcome = classify_exception(exc)
    log.debug("telegram call failed", extra={
        "line_id": line.id, "method": method, "error": type(exc).__name__,
        "outcome": reason_of(outcome)})
    return outcome
