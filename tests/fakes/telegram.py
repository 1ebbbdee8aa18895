"""A fake Telegram Bot API server (documented answers, limits and errors) and update builders."""
from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

TOKEN = "123456789:AAE-fake-izinli-test-token_0123456789"
BOT_USERNAME = "izinli_test_bot"
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_CHAT_ID = re.compile(r"-?[0-9]{1,20}")


@dataclass(frozen=True)
class SentMessage:
    chat_id: int
    text: str
    reply_markup: dict | None
    at: float
    message_id: int
    token: str


@dataclass
class BotApiState:
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    blocked: set[int] = field(default_factory=set)  # 403 bot was blocked by the user
    missing: set[int] = field(default_factory=set)  # 400 chat not found
    pending_updates: list[dict] = field(default_factory=list)  # getUpdates serves these
    bot_rate: int = 30  # messages per second per bot
    chat_interval: float = 1.0  # seconds between messages to one chat
    failing: bool = False  # every call answers 500, as during an outage
    latency: float = 0.0  # seconds before answering, to exercise client timeouts
    clock: Callable[[], float] = time.monotonic  # inject a fixed clock for exact tests
    sent: list[SentMessage] = field(default_factory=list)
    answered: list[dict] = field(default_factory=list)  # answerCallbackQuery calls
    webhooks: dict[str, dict] = field(default_factory=dict)  # token → url, secret_token…
    _recent: dict[str, deque] = field(default_factory=dict, init=False, repr=False)
    _last_to: dict[tuple[str, int], float] = field(default_factory=dict, init=False, repr=False)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1), init=False,
                                  repr=False)

    def wait_for(self, token: str, chat_id: int) -> int:
        """Seconds until a message to `chat_id` is allowed (0: now), as Telegram's retry_after."""
        now = self.clock()
        recent = self._recent.setdefault(token, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        waits = [recent[0] + 1.0 - now] if len(recent) >= self.bot_rate else []
        last = self._last_to.get((token, chat_id))
        if last is not None and now - last < self.chat_interval:
            waits.append(last + self.chat_interval - now)
        return max(1, math.ceil(max(waits))) if waits else 0

    def deliver(self, token: str, chat_id: int, text: str, reply_markup: dict | None) -> int:
        now = self.clock()
        self._recent.setdefault(token, deque()).append(now)
        self._last_to[(token, chat_id)] = now
        message = SentMessage(chat_id, text, reply_markup, now, next(self._ids), token)
        self.sent.append(message)
        return message.message_id


class BotApiError(Exception):
    """An answer of the Bot API's error shape; `parameters` carries retry_after on 429."""

    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


def create_bot_api_app(state: BotApiState) -> web.Application:
    app = web.Application()

    async def handle(request: web.Request) -> web.Response:
        if state.latency:
            await asyncio.sleep(state.latency)
        try:
            result = await _dispatch(state, request)
        except BotApiError as error:
            return _error(error)
        return web.json_response({"ok": True, "result": result})

    app.router.add_route("*", "/bot{token}/{method}", handle)
    return app


async def _dispatch(state: BotApiState, request: web.Request) -> object:
    token = request.match_info["token"]
    if state.failing:
        raise BotApiError(500, "Internal Server Error")
    if token not in state.tokens:
        raise BotApiError(401, "Unauthorized")
    method = _METHODS.get(request.match_info["method"].lower())
    if method is None:
        raise BotApiError(404, "Not Found")
    return await method(state, token, await _params(request))


async def _params(request: web.Request) -> dict:
    """Query string, JSON, urlencoded or multipart (aiogram sends multipart), as one dict."""
    params: dict = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        params.update(body if isinstance(body, dict) else {})
    elif request.can_read_body:
        params.update(await request.post())
    return params


def _error(error: BotApiError) -> web.Response:
    body = {"ok": False, "error_code": error.status, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.status)


async def _send_message(state: BotApiState, token: str, params: dict) -> dict:
    chat_id, text = _chat_id(params), str(params.get("text", ""))
    if chat_id is None or chat_id in state.missing:
        raise BotApiError(400, "Bad Request: chat not found")
    if not text.strip():
        raise BotApiError(400, "Bad Request: message text is empty")
    if len(text) > 4096:
        raise BotApiError(400, "Bad Request: message is too long")
    if chat_id in state.blocked:
        raise BotApiError(403, "Forbidden: bot was blocked by the user")
    if wait := state.wait_for(token, chat_id):
        raise BotApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
    markup = _json(params.get("reply_markup"))
    message_id = state.deliver(token, chat_id, text, markup)
    message = {"message_id": message_id, "from": _bot_user(token), "date": int(time.time()),
               "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
               "text": text}
    return message | ({"reply_markup": markup} if markup else {})


async def _get_updates(state: BotApiState, token: str, params: dict) -> list[dict]:
    if token in state.webhooks:
        raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                               "use deleteWebhook to delete the webhook first")
    offset, timeout = _int(params.get("offset")), _int(params.get("timeout")) or 0
    if offset is not None:  # calling with an offset confirms every update before it
        state.pending_updates[:] = [u for u in state.pending_updates
                                    if u.get("update_id", 0) >= offset]
    deadline = asyncio.get_running_loop().time() + timeout
    while not state.pending_updates and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return state.pending_updates[:_int(params.get("limit")) or 100]


async def _set_webhook(state: BotApiState, token: str, params: dict) -> bool:
    url, secret = str(params.get("url", "")), params.get("secret_token")
    if not url:  # an empty url removes the webhook, as deleteWebhook does
        state.webhooks.pop(token, None)
        return True
    if not url.startswith("https://"):
        raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for "
                               "webhook")
    if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
        raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
    state.webhooks[token] = {"url": url, "secret_token": secret,
                             "allowed_updates": _json(params.get("allowed_updates"))}
    return True


async def _delete_webhook(state: BotApiState, token: str, params: dict) -> bool:
    state.webhooks.pop(token, None)
    if str(params.get("drop_pending_updates", "")).lower() == "true":
        state.pending_updates.clear()
    return True


async def _answer_callback_query(state: BotApiState, token: str, params: dict) -> bool:
    if not params.get("callback_query_id"):
        raise BotApiError(400, "Bad Request: query is too old and response timeout expired or "
                               "query ID is invalid")
    state.answered.append({"callback_query_id": str(params["callback_query_id"]),
                           "text": params.get("text")})
    return True


async def _get_me(state: BotApiState, token: str, params: dict) -> dict:
    return _bot_user(token) | {"can_join_groups": True, "can_read_all_group_messages": False,
                               "supports_inline_queries": False}


_METHODS = {
    "sendmessage": _send_message,
    "getupdates": _get_updates,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "answercallbackquery": _answer_callback_query,
    "getme": _get_me,
}


def _bot_user(token: str) -> dict:
    return {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "İzinli Test",
            "username": BOT_USERNAME}


def _chat_id(params: dict) -> int | None:
    raw = str(params.get("chat_id", ""))
    return int(raw) if _CHAT_ID.fullmatch(raw) else None


def _int(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _json(value: object) -> object:
    """Form fields carry objects as JSON text; JSON bodies carry them as they are."""
    return json.loads(value) if isinstance(value, str) else value


# Update builders: the shapes Telegram sends to a bot in a private chat.

def _user(user_id: int, language_code: str | None = "tr") -> dict:
    user = {"id": user_id, "is_bot": False, "first_name": "Ayşe", "username": f"user{user_id}"}
    return user | ({"language_code": language_code} if language_code else {})


def _private_chat(chat_id: int) -> dict:
    return {"id": chat_id, "first_name": "Ayşe", "username": f"user{chat_id}", "type": "private"}


def _date(date: int | None) -> int:
    # Updates carry the time they happened; the service orders a person's events by it.
    return int(time.time()) if date is None else date


def text_update(chat_id: int, text: str, update_id: int, *, message_id: int = 1,
                language_code: str | None = "tr", edited: bool = False,
                date: int | None = None) -> dict:
    message = {"message_id": message_id, "from": _user(chat_id, language_code),
               "chat": _private_chat(chat_id), "date": _date(date), "text": text}
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
    if edited:
        message["edit_date"] = message["date"] + 60
    return {"update_id": update_id, "edited_message" if edited else "message": message}


def callback_update(chat_id: int, data: str, update_id: int, *,
                    query_id: str = "4382bfdwdsb323b2d9", message_id: int = 7,
                    message_text: str | None = "Kampanyalarımızdan haberdar olmak ister misiniz?",
                    ) -> dict:
    message = {"message_id": message_id, "from": _bot_user(TOKEN),
               "chat": _private_chat(chat_id), "date": 1_732_000_000}
    if message_text is not None:
        message["text"] = message_text
    return {"update_id": update_id, "callback_query": {
        "id": query_id, "from": _user(chat_id), "message": message,
        "chat_instance": "-5393481394893240098", "data": data}}


def _member_update(chat_id: int, update_id: int, old: str, new: str,
                   date: int | None = None) -> dict:
    bot = _bot_user(TOKEN)
    new_member = {"user": bot, "status": new} | ({"until_date": 0} if new == "kicked" else {})
    return {"update_id": update_id, "my_chat_member": {
        "chat": _private_chat(chat_id), "from": _user(chat_id), "date": _date(date),
        "old_chat_member": {"user": bot, "status": old}, "new_chat_member": new_member}}


def kicked_update(chat_id: int, update_id: int, *, date: int | None = None) -> dict:
    """The person blocked the bot (Telegram calls it kicked in a private chat)."""
    return _member_update(chat_id, update_id, "member", "kicked", date)


def unblocked_update(chat_id: int, update_id: int, *, date: int | None = None) -> dict:
    """The person unblocked the bot (and pressed Start again)."""
    return _member_update(chat_id, update_id, "kicked", "member", date)
