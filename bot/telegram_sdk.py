"""Everything that touches aiogram, imported on first use of a Telegram line: aiogram builds
hundreds of pydantic models at import (seconds), which a server without Telegram lines and
every one-shot command should not pay."""
from __future__ import annotations

from typing import Any, cast

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
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.token import TokenValidationError

from bot.network import network_outcome
from bot.telegram_updates import CONSENT_NO, CONSENT_YES
from campaigns.ports import (
    Blocked,
    MaybeSent,
    PermanentFailure,
    RateLimited,
    SendResult,
    TemporaryFailure,
    Unavailable,
)
from optout.outbound import is_redirect, read_capped, timeouts

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
    if isinstance(exc, TelegramNetworkError | aiohttp.ClientError | TimeoutError):
        return _network_outcome(exc)
    if isinstance(exc, TelegramAPIError):
        return TemporaryFailure("telegram_error")
    return TemporaryFailure("unexpected")


# TelegramNetworkError texts (BoundedSession names the aiohttp error by its type) that mean the
# request was not taken: no connection, or an answer that only redirected us.
_NOT_TAKEN = ("ClientConnectorError", "ClientConnectorDNSError", "ConnectionTimeoutError",
              "InvalidURL", "redirect refused")


def _network_outcome(exc: BaseException) -> SendResult:
    """bot.network's rule, once the aiohttp error behind aiogram's TelegramNetworkError is
    found (BoundedSession names it by its type, or chains it)."""
    if isinstance(exc, TelegramNetworkError):
        if exc.message in _NOT_TAKEN:
            return Unavailable("network_error")
        exc = exc.__cause__ or exc.__context__ or exc
    return network_outcome(exc, "network_error")


# Order matters: subclasses before their bases (EntityTooLarge is a NetworkError).
_BY_TYPE: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], SendResult], ...] = (
    # Telegram answers 404 for a malformed token in the URL and 401 for a revoked one.
    ((TelegramUnauthorizedError, TelegramNotFound, TokenValidationError),
     PermanentFailure("auth_failed")),
    (TelegramConflictError, PermanentFailure("conflict")),
    (TelegramMigrateToChat, PermanentFailure("chat_migrated")),
    (TelegramEntityTooLarge, PermanentFailure("too_large")),
    # A 5xx that Telegram answered as an error: it did not take the message.
    (TelegramServerError, Unavailable("server_error")),
    # An answer that is not the Bot API's JSON (a proxy's page): the request may have gone in.
    (ClientDecodeError, MaybeSent("bad_response")),
)


def _says(exc: TelegramAPIError, phrases: tuple[str, ...]) -> bool:
    description = exc.message.lower()
    return any(phrase in description for phrase in phrases)


class _GetRawUpdates(GetUpdates):
    # Updates stay the dicts Telegram sent, exactly what a webhook delivers, so one parser
    # serves both; an update shape aiogram cannot validate never wedges the poll loop.
    __returning__ = list[dict[str, Any]]


class BoundedSession(AiohttpSession):
    """aiogram's session with our outbound limits. Its make_request follows redirects and
    reads the whole answer (`await resp.text()`) with one total timeout; this one refuses
    redirects, reads at most outbound.MAX_RESPONSE_BYTES and also bounds connect and read."""

    async def make_request(self, bot: Bot, method: TelegramMethod[TelegramType],
                           timeout: int | None = None) -> TelegramType:
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        form = self.build_form_data(bot=bot, method=method)
        limits = timeouts(self.timeout if timeout is None else timeout)
        try:
            async with session.post(url, data=form, timeout=limits,
                                    allow_redirects=False) as resp:
                if is_redirect(resp.status):
                    raise TelegramNetworkError(method=method, message="redirect refused")
                raw = (await read_capped(resp)).decode("utf-8", "replace")
        except TimeoutError as exc:
            raise TelegramNetworkError(method=method, message="Request timeout error") from exc
        except aiohttp.ClientError as exc:
            # The type only: aiohttp's texts can quote the URL, and the URL holds the token.
            raise TelegramNetworkError(method=method, message=type(exc).__name__) from None
        response = self.check_response(bot=bot, method=method, status_code=resp.status,
                                       content=raw)
        return cast(TelegramType, response.result)


def new_bot(bot_token: str, base_url: str, timeout: float) -> Bot:
    return Bot(bot_token, session=BoundedSession(api=TelegramAPIServer.from_base(base_url),
                                                 timeout=timeout))


def consent_keyboard(accept_label: str, decline_label: str,
                     invite_token: str | None = None) -> InlineKeyboardMarkup:
    suffix = f":{invite_token}" if invite_token else ""
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=accept_label, callback_data=CONSENT_YES + suffix),
        InlineKeyboardButton(text=decline_label, callback_data=CONSENT_NO + suffix),
    ]])


def raw_updates(offset: int | None, timeout: int, kinds: list[str]) -> _GetRawUpdates:
    return _GetRawUpdates(offset=offset, timeout=timeout, allowed_updates=kinds)
