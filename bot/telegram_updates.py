"""Telegram updates as our events: pure parsing of update dicts, bot commands, webhook secrets."""
from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

CONSENT_YES = "consent:yes"
CONSENT_NO = "consent:no"
# An offer opened by an invite link carries its token after the answer ("consent:yes:<token>"),
# within the 64 bytes Telegram allows a button's callback data.
_CONSENT_DATA = re.compile(r"consent:(yes|no)(?::([A-Za-z0-9_-]{1,48}))?")
# The update kinds parse_update understands. Sent as allowed_updates on every setWebhook and
# getUpdates, because Telegram otherwise keeps whatever list the bot last asked for.
UPDATE_KINDS = ("message", "edited_message", "callback_query", "my_chat_member")

_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+(.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ChatText:
    chat_id: str
    user_id: str
    text: str
    update_id: int
    message_id: int
    language_code: str | None
    # An edit repeats the original message_id: de-duplicate on update_id, not message_id.
    edited: bool = False
    # When it was sent (an edit: when it was edited), Unix seconds: orders a STOP and a START.
    date: int | None = None


@dataclass(frozen=True, slots=True)
class ConsentTap:
    chat_id: str
    user_id: str
    accepted: bool
    callback_query_id: str
    update_id: int
    # The offer the person saw next to the buttons: part of the consent evidence.
    message_text: str | None
    # The offer's message id and the invite token its buttons carry (telegram_invites).
    message_id: int | None = None
    invite_token: str | None = None


@dataclass(frozen=True, slots=True)
class ChatBlocked:
    chat_id: str
    update_id: int
    date: int | None = None  # a late block older than an unblock changes nothing


@dataclass(frozen=True, slots=True)
class ChatUnblocked:
    chat_id: str
    update_id: int
    date: int | None = None


TelegramEvent = ChatText | ConsentTap | ChatBlocked | ChatUnblocked


def parse_update(update: object) -> list[TelegramEvent]:
    """Our events in one Bot API update; unknown kinds and malformed input give []."""
    if not isinstance(update, dict):
        return []
    update_id = _int(update.get("update_id"))
    if update_id is None:
        return []
    for kind, parse in _PARSERS:
        body = update.get(kind)
        if isinstance(body, dict):
            event = parse(body, update_id)
            return [event] if event is not None else []
    return []


def command_of(text: str, bot_username: str | None = None) -> tuple[str, str] | None:
    """("start", "payload") for "/start payload"; None when `text` is not a bot command.

    "/stop@MyBot" is accepted; with `bot_username` given, a command addressed to another bot
    (in a group) is not ours and gives None."""
    match = _COMMAND.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    command, mention, payload = match.groups()
    if mention and bot_username and mention.lower() != bot_username.lstrip("@").lower():
        return None
    return command.lower(), (payload or "").strip()


def verify_secret(expected: str, header: str | None) -> bool:
    """Whether X-Telegram-Bot-Api-Secret-Token matches; a line without a secret accepts none."""
    if not expected or header is None:
        return False
    return hmac.compare_digest(expected.encode(), header.encode())


def _message(body: dict, update_id: int, edited: bool = False) -> ChatText | None:
    chat_id, user_id = _id(body, "chat"), _id(body, "from")
    message_id = _int(body.get("message_id"))
    # A caption is what the person wrote under a photo; "DUR" there still means stop.
    text = _str(body.get("text")) or _str(body.get("caption"))
    if None in (chat_id, user_id, message_id) or not text:
        return None
    sender = body["from"]
    date = _int(body.get("edit_date")) if edited else None
    return ChatText(chat_id, user_id, text, update_id, message_id,
                    _str(sender.get("language_code")), edited,
                    date if date is not None else _int(body.get("date")))


def _edited_message(body: dict, update_id: int) -> ChatText | None:
    return _message(body, update_id, edited=True)


def _callback(body: dict, update_id: int) -> ConsentTap | None:
    data, query_id = _str(body.get("data")), _str(body.get("id"))
    message = body.get("message")
    consent = _CONSENT_DATA.fullmatch(data) if data else None
    # Taps on inline-mode messages carry no chat; consent offers are always chat messages.
    if consent is None or not query_id or not isinstance(message, dict):
        return None
    chat_id, user_id = _id(message, "chat"), _id(body, "from")
    if chat_id is None or user_id is None:
        return None
    return ConsentTap(chat_id, user_id, consent.group(1) == "yes", query_id, update_id,
                      _str(message.get("text")), _int(message.get("message_id")),
                      consent.group(2))


def _my_chat_member(body: dict, update_id: int) -> ChatBlocked | ChatUnblocked | None:
    chat_id = _id(body, "chat")
    old, new = _status(body, "old_chat_member"), _status(body, "new_chat_member")
    if chat_id is None:
        return None
    date = _int(body.get("date"))
    if new == "kicked":
        return ChatBlocked(chat_id, update_id, date)
    if old == "kicked" and new == "member":
        return ChatUnblocked(chat_id, update_id, date)
    return None


_PARSERS: tuple[tuple[str, Callable[[dict, int], TelegramEvent | None]], ...] = (
    ("message", _message),
    ("edited_message", _edited_message),
    ("callback_query", _callback),
    ("my_chat_member", _my_chat_member),
)


def _id(body: dict, key: str) -> str | None:
    """The integer `id` of body[key] (a chat or a user) as a decimal string."""
    inner = body.get(key)
    value = _int(inner.get("id")) if isinstance(inner, dict) else None
    return None if value is None else str(value)


def _status(body: dict, key: str) -> str | None:
    inner = body.get(key)
    return _str(inner.get("status")) if isinstance(inner, dict) else None


def _int(value: object) -> int | None:
    # bool is an int subclass; JSON true is never an id.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
