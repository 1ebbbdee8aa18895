"""Everything that touches aiogram, imported on first use of a Telegram line: aiogram builds
hundreds of pydantic models at import (seconds), which a server without Telegram lines and
every one-shot command should not pay."""
from __future__ import annotations

from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.token import TokenValidationError

from bot.telegram_updates import CONSENT_NO, CONSENT_YES
from campaigns.ports import (
    Blocked,
    PermanentFailure,
    RateLimited,
    SendResult,
    TemporaryFailure,
)

# Descriptions of a 403 that mean the person is gone (blocked the bot, deleted the account, or
# removed the bot from the chat). Other 403s ("bot can't initiate conversation with a user")
# are not a refusal by the person and must not become a suppression.
_GONE = ("blocked by the user", "user is deactivated", "kicked")
# Everything a Bot API call can raise that is the provider's doing, not a bug of ours.
PROVIDER_ERRORS = (AiogramError, TokenValidationError, TimeoutError, aiohttp.ClientError)


def classify_exception(exc: BaseException) -> SendResult:
    """The one place a Telegram error becomes an outcome; nothing above bot/ sees aiogram's."""
    if isinstance(exc, TelegramRetryAfter):
        return RateLimited(float(exc.retry_after))
    if isinstance(exc, TelegramForbiddenError):
        return Blocked() if _says(exc, _GONE) else PermanentFailure("forbidden")
    if isinstance(exc, TelegramBadRequest):
        return PermanentFailure("chat_not_found" if _says(exc, ("chat not found",))
                                else "bad_request")
    for kinds, outcome in _BY_TYPE:
        if isinstance(exc, kinds):
            return outcome
    return TemporaryFailure("unexpected")


# Order matters: subclasses before their bases (EntityTooLarge is a NetworkError).
_BY_TYPE: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], SendResult], ...] = (
    # Telegram answers 404 for a malformed token in the URL and 401 for a revoked one.
    ((TelegramUnauthorizedError, TelegramNotFound, TokenValidationError),
     PermanentFailure("auth_failed")),
    (TelegramConflictError, PermanentFailure("conflict")),
    (TelegramMigrateToChat, PermanentFailure("chat_migrated")),
    (TelegramEntityTooLarge, PermanentFailure("too_large")),
    (TelegramServerError, TemporaryFailure("server_error")),
    ((TelegramNetworkError, aiohttp.ClientError), TemporaryFailure("network_error")),
    (TimeoutError, TemporaryFailure("timeout")),
    (ClientDecodeError, TemporaryFailure("bad_response")),
    (TelegramAPIError, TemporaryFailure("telegram_error")),
)


def _says(exc: TelegramAPIError, phrases: tuple[str, ...]) -> bool:
    description = exc.message.lower()
    return any(phrase in description for phrase in phrases)


class _GetRawUpdates(GetUpdates):
    # Updates stay the dicts Telegram sent, exactly what a webhook delivers, so one parser
    # serves both; an update shape aiogram cannot validate never wedges the poll loop.
    __returning__ = list[dict[str, Any]]


def new_bot(bot_token: str, base_url: str, timeout: float) -> Bot:
    return Bot(bot_token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url),
                                                 timeout=timeout))


def consent_keyboard(accept_label: str, decline_label: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=accept_label, callback_data=CONSENT_YES),
        InlineKeyboardButton(text=decline_label, callback_data=CONSENT_NO),
    ]])


def raw_updates(offset: int | None, timeout: int, kinds: list[str]) -> _GetRawUpdates:
    return _GetRawUpdates(offset=offset, timeout=timeout, allowed_updates=kinds)
