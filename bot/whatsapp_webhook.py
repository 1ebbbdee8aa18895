"""WhatsApp Cloud API webhooks: signature, subscription handshake, payload → events (no I/O)."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Hub-Signature-256"
STATUSES = frozenset({"sent", "delivered", "read", "failed"})
PREFERENCES = frozenset({"stop", "resume"})


@dataclass(frozen=True, slots=True)
class InboundText:
    phone_number_id: str
    from_address: str  # E.164 with '+'
    text: str
    message_id: str
    timestamp: int  # Unix seconds


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    phone_number_id: str
    message_id: str
    status: str  # sent | delivered | read | failed
    recipient: str  # E.164 with '+'
    reference: str | None  # our biz_opaque_callback_data, echoed back
    error_code: int | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class PreferenceChange:
    phone_number_id: str
    address: str  # E.164 with '+'
    value: str  # stop | resume
    category: str  # marketing_messages
    timestamp: int | None = None  # orders a stop and a resume that arrive out of order


WebhookEvent = InboundText | StatusUpdate | PreferenceChange


def verify_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """True when `header` is `sha256=<hex>` of HMAC-SHA256(app_secret, raw_body)."""
    # An empty secret would make the HMAC computable by anyone: refuse rather than accept.
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The GET subscription check: the challenge to echo back, or None to refuse (403)."""
    challenge = params.get("hub.challenge")
    token = params.get("hub.verify_token") or ""
    if params.get("hub.mode") != "subscribe" or not challenge or not verify_token:
        return None
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return challenge


def parse(payload: dict) -> list[WebhookEvent]:
    """Events of a (batched) webhook; unknown kinds and malformed parts are skipped."""
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return []
    events: list[WebhookEvent] = []
    for value in _values(payload):
        number = _phone_number_id(value)
        if number is None:
            continue
        for kind, parse_item in _PARSERS.items():
            items = value.get(kind)
            for item in items if isinstance(items, list) else ():
                event = _guarded(parse_item, number, item)
                if event is not None:
                    events.append(event)
    return events


def _values(payload: dict) -> Iterator[dict]:
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else ():
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict):
                yield value


def _phone_number_id(value: dict) -> str | None:
    metadata = value.get("metadata")
    number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return number if isinstance(number, str) and number else None


def _guarded(parse_item, number: str, item) -> WebhookEvent | None:
    # One bad item must not drop its neighbours: Meta retries the whole batch on an error.
    try:
        return parse_item(number, item)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None


def _message(number: str, item: dict) -> InboundText | None:
    text = _message_text(item)
    if text is None:
        return None
    return InboundText(phone_number_id=number, from_address=_e164(item["from"]),
                       text=text, message_id=_text(item["id"]),
                       timestamp=int(item["timestamp"]))


def _message_text(item: dict) -> str | None:
    """The words the person sent or tapped: typed text, a template quick-reply button or an
    interactive reply, so that "Stop promotions" or "RET" buttons reach the keyword classifier."""
    kind = item.get("type")
    if kind == "text":
        return _text(item["text"]["body"])
    if kind == "button":
        return _text(item["button"]["text"])
    if kind == "interactive":
        interactive = item["interactive"]
        reply_kind = interactive.get("type")
        if reply_kind in ("button_reply", "list_reply"):
            return _text(interactive[reply_kind]["title"])
    return None  # media, reactions, locations, "unsupported"…: nothing to classify


def _status(number: str, item: dict) -> StatusUpdate | None:
    status = item["status"]
    if status not in STATUSES:
        return None
    reference = item.get("biz_opaque_callback_data")
    return StatusUpdate(phone_number_id=number, message_id=_text(item["id"]), status=status,
                        recipient=_e164(item["recipient_id"]),
                        reference=reference if isinstance(reference, str) else None,
                        error_code=_error_code(item.get("errors")),
                        timestamp=int(item["timestamp"]))


def _error_code(errors) -> int | None:
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    try:
        return int(errors[0]["code"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def _preference(number: str, item: dict) -> PreferenceChange | None:
    value = item["value"]
    if value not in PREFERENCES:
        return None
    timestamp = item.get("timestamp")
    return PreferenceChange(phone_number_id=number, address=_e164(item["wa_id"]), value=value,
                            category=_text(item["category"]),
                            timestamp=int(timestamp) if timestamp is not None else None)


_PARSERS = {"messages": _message, "statuses": _status, "user_preferences": _preference}


def _text(value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _e164(wa_id) -> str:
    """WhatsApp sends numbers without '+'; everything above bot/ speaks E.164."""
    digits = _text(wa_id).removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("not a phone number")
    return f"+{digits}"
