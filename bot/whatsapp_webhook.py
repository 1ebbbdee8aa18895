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


@dataclass(frozen=True, slots=True)
class InboundOther:
    """A message with no words to classify (media, location, reaction…): it still opens the
    person's 24 h customer-service window."""
    phone_number_id: str
    from_address: str  # E.164 with '+'
    timestamp: int


@dataclass(frozen=True, slots=True)
class QualityUpdate:
    """`phone_number_quality_update`: a number's messaging limit or quality changed. It names
    the number by its display form only (no phone_number_id)."""
    waba_id: str | None
    display_phone_number: str | None  # digits, as Meta writes it
    event: str  # FLAGGED | UNFLAGGED | UPGRADE | DOWNGRADE | ONBOARDING | THROUGHPUT_UPGRADE
    current_limit: str | None  # TIER_50 | TIER_250 | TIER_1K | TIER_2K | … | TIER_UNLIMITED
    phone_number_id: None = None  # account-level: matched to lines by the handler


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """`account_update`: the WhatsApp Business Account was restricted, disabled, found in
    violation, reinstated…"""
    waba_id: str | None
    event: str  # ACCOUNT_RESTRICTION | DISABLED_UPDATE | ACCOUNT_VIOLATION | ACCOUNT_DELETED …
    ban_state: str | None = None  # ban_info.waba_ban_state: DISABLE | REINSTATE | …
    restrictions: tuple[str, ...] = ()  # restriction_info[].restriction_type
    violation: str | None = None  # violation_info.violation_type
    phone_number_id: None = None


WebhookEvent = (InboundText | StatusUpdate | PreferenceChange | InboundOther | QualityUpdate
                | AccountUpdate)


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
    return events + _account_events(payload)


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


def _message(number: str, item: dict) -> InboundText | InboundOther | None:
    text = _message_text(item)
    if text is None:
        if item.get("type") in _NOT_FROM_THE_PERSON:
            return None
        return InboundOther(phone_number_id=number, from_address=_e164(item["from"]),
                            timestamp=int(item["timestamp"]))
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
# Message types WhatsApp itself writes (a number change…): they open no window.
_NOT_FROM_THE_PERSON = frozenset({"system"})


def _account_events(payload: dict) -> list[WebhookEvent]:
    """`phone_number_quality_update` and `account_update` changes: account-level values
    without `metadata`, named by the entry's WABA id."""
    events: list[WebhookEvent] = []
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        waba = entry.get("id") if isinstance(entry.get("id"), str) else None
        changes = entry.get("changes")
        for change in changes if isinstance(changes, list) else ():
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                continue
            parse_value = _ACCOUNT_PARSERS.get(change.get("field"))
            event = parse_value and _guarded(parse_value, waba, change["value"])
            if event is not None:
                events.append(event)
    return events


def _quality(waba: str | None, value: dict) -> QualityUpdate:
    limit = value.get("current_limit") or value.get("max_daily_conversations_per_business")
    display = value.get("display_phone_number")
    return QualityUpdate(waba_id=waba, event=_text(value["event"]),
                         display_phone_number=str(display) if display else None,
                         current_limit=limit if isinstance(limit, str) else None)


def _account(waba: str | None, value: dict) -> AccountUpdate:
    ban = value.get("ban_info") if isinstance(value.get("ban_info"), dict) else {}
    restrictions = value.get("restriction_info")
    violation = value.get("violation_info") if isinstance(value.get("violation_info"),
                                                          dict) else {}
    return AccountUpdate(
        waba_id=waba, event=_text(value["event"]),
        ban_state=ban.get("waba_ban_state") if isinstance(ban.get("waba_ban_state"),
                                                          str) else None,
        restrictions=tuple(r["restriction_type"] for r in restrictions
                           if isinstance(r, dict) and isinstance(r.get("restriction_type"),
                                                                 str))
        if isinstance(restrictions, list) else (),
        violation=violation.get("violation_type") if isinstance(
            violation.get("violation_type"), str) else None)


_ACCOUNT_PARSERS = {"phone_number_quality_update": _quality, "account_update": _account}


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


# --- message_template_status_update (issue 15 item 2) -----------------------------------------

@dataclass(frozen=True, slots=True)
class TemplateStatusChange:
    """`message_template_status_update`: Meta approved, rejected, paused, disabled… one of the
    account's templates. Account-level, named by the entry's WABA id."""
    waba_id: str | None
    event: str  # APPROVED | REJECTED | PAUSED | DISABLED | PENDING_DELETION | FLAGGED | …
    name: str
    language: str
    template_id: str | None = None
    reason: str | None = None  # Meta's reason and other_info (title: description), if any
    phone_number_id: None = None


def _template_status(waba: str | None, value: dict) -> TemplateStatusChange:
    reasons = [value.get("reason")]
    info = value.get("other_info") if isinstance(value.get("other_info"), dict) else {}
    reasons += [": ".join(p for p in (info.get("title"), info.get("description"))
                          if isinstance(p, str) and p)]
    template_id = value.get("message_template_id")
    return TemplateStatusChange(
        waba_id=waba, event=_text(value["event"]).upper(),
        name=_text(value["message_template_name"]),
        language=_text(value["message_template_language"]),
        template_id=str(template_id) if isinstance(template_id, int | str) else None,
        reason="; ".join(r for r in reasons if isinstance(r, str) and r and r != "NONE")
        or None)


_ACCOUNT_PARSERS["message_template_status_update"] = _template_status
