"""A fake WhatsApp Cloud API (Graph) server and builders of signed, realistic webhook payloads."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"

# (HTTP status, message, details) as Graph answers them; details are Meta's wording.
ERRORS: dict[int, tuple[int, str, str]] = {
    1: (500, "An unknown error occurred", "Possibly a temporary issue due to downtime."),
    2: (503, "Service temporarily unavailable", "Temporary due to downtime or overload."),
    4: (400, "(#4) Application request limit reached",
        "The app has reached its API call rate limit."),
    100: (400, "(#100) Invalid parameter", "Invalid parameter"),
    190: (401, "Invalid OAuth access token - Cannot parse access token", ""),
    368: (400, "(#368) Temporarily blocked for policies violations",
          "The WhatsApp Business Account associated with the app has been restricted or "
          "disabled for violating a platform policy."),
    613: (400, "(#613) Calls to this api have exceeded the rate limit.",
          "Calls to this API have exceeded the rate limit."),
    80007: (400, "(#80007) Rate limit issues",
            "The WhatsApp Business Account has reached its rate limit."),
    130429: (400, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
    131000: (500, "(#131000) Something went wrong",
             "Message failed to send due to an unknown error."),
    131016: (503, "(#131016) Service unavailable",
             "A service is temporarily unavailable."),
    131026: (400, "(#131026) Message Undeliverable", "Unable to deliver message."),
    131047: (400, "(#131047) Re-engagement message",
             "Message failed to send because more than 24 hours have passed since the "
             "customer last replied to this number."),
    131048: (400, "(#131048) Spam rate limit hit",
             "Message failed to send because there are restrictions on how many messages "
             "can be sent from this phone number."),
    131049: (400, "(#131049) This message was not delivered to maintain healthy ecosystem "
                  "engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be "
             "delivered."),
    131050: (400, "(#131050) Unable to deliver the message. This recipient has chosen to stop "
                  "receiving marketing messages on WhatsApp from your business.",
             "Unable to deliver the message."),
    131056: (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
             "Message failed to send because there were too many messages sent from this "
             "phone number to the same phone number in a short period of time."),
}
THROTTLING = frozenset({4, 613, 80007, 130429, 131056})


@dataclass
class GraphState:
    access_token: str = "EAAG-test-token"
    phone_number_ids: set[str] = field(default_factory=lambda: {PHONE_NUMBER_ID})
    rate_per_second: float = 80.0  # per business number; the bucket holds one second
    pair_interval: float = 6.0  # one message per 6 s to the same user (131056)
    fail: dict[str, int] = field(default_factory=dict)  # wa_id (no '+') → Graph error code
    retry_after: str | None = None  # a Retry-After header on throttling answers, if set
    latency: float = 0.0  # seconds before answering, to exercise client timeouts
    # Seconds between keeping a message and answering: a client that times out meanwhile
    # does not know the message was accepted (the case that must become `unknown`).
    answer_delay: float = 0.0
    # An outage: until `outage_until` (on `clock`) every /messages call is answered with
    # `outage_status` and nothing is kept — Graph's JSON error for 500 and 503, a gateway's
    # plain page for anything else (502, 504).
    outage_until: float = -1.0
    outage_status: int = 500
    answers: list[tuple[float, int]] = field(default_factory=list)  # (time.monotonic(), status)
    # Message templates per business account (see `template()`), listed by
    # GET /{waba_id}/message_templates in pages of at most `template_page_limit`.
    waba_ids: set[str] = field(default_factory=lambda: {WABA_ID})
    templates: list[dict] = field(default_factory=list)
    template_page_limit: int = 100
    template_requests: list[dict] = field(default_factory=list)  # query of every listing call
    template_error_on_page: dict[int, int] = field(default_factory=dict)  # page → error code
    # The 24 h customer-service window: when enforced, free text to a number that has not
    # written in the last 24 h (as told through `customer_wrote`) is refused with 131047.
    enforce_window: bool = False
    last_inbound: dict[str, float] = field(default_factory=dict)  # wa_id → time.time()
    clock: Callable[[], float] = time.monotonic  # inject a fixed clock for exact tests
    sent: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # every body received, raw
    _tokens: dict[str, tuple[float, float]] = field(  # number → (tokens, at)
        default_factory=dict, init=False, repr=False)
    _last_to: dict[tuple[str, str], float] = field(default_factory=dict, init=False, repr=False)
    _ids: itertools.count = field(default_factory=itertools.count, init=False, repr=False)

    def take_token(self, number: str) -> bool:
        now, burst = self.clock(), self.rate_per_second
        tokens, at = self._tokens.get(number, (burst, now))
        tokens = min(burst, tokens + (now - at) * self.rate_per_second)
        if tokens < 1:
            self._tokens[number] = (tokens, now)
            return False
        self._tokens[number] = (tokens - 1, now)
        return True

    def customer_wrote(self, wa_id: str, at: float | None = None) -> None:
        """The person wrote to the business (the fake cannot see our webhooks)."""
        self.last_inbound[wa_id.removeprefix("+")] = time.time() if at is None else at

    def outside_window(self, to: str) -> bool:
        last = self.last_inbound.get(to)
        return last is None or time.time() - last > 86400

    def pair_free(self, number: str, to: str) -> bool:
        last = self._last_to.get((number, to))
        return last is None or self.clock() - last >= self.pair_interval

    def accept(self, number: str, body: dict) -> str:
        # Like Meta's: the id is base64 that embeds the recipient's number (and the sender's).
        wamid = "wamid." + base64.b64encode(
            f"{body['to']}:{number}:{next(self._ids)}:{secrets.token_hex(4)}".encode()).decode()
        self._last_to[(number, body["to"])] = self.clock()
        self.sent.append({"to": body["to"], "text": (body.get("text") or {}).get("body"),
                          "template": body.get("template"), "type": body["type"],
                          "reference": body.get("biz_opaque_callback_data"), "id": wamid,
                          "at": time.time()})
        return wamid


def graph_error(code: int, details: str | None = None, subcode: int | None = None
                ) -> web.Response:
    status, message, default_details = ERRORS.get(code, (400, f"(#{code}) Error", ""))
    error: dict = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if code != 190:  # token errors come from Graph itself, without WhatsApp's error_data
        error["error_data"] = {"messaging_product": "whatsapp",
                               "details": details or default_details}
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
    return web.json_response({"error": error}, status=status)


def _missing(body: object) -> str | None:
    """The first required field a /messages body lacks, as Graph names it."""
    if not isinstance(body, dict):
        return "body"
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product"
    to = body.get("to")
    if not isinstance(to, str) or not to.isdigit():
        return "to"
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        ok = isinstance(text, dict) and isinstance(text.get("body"), str) and text["body"]
        return None if ok and len(text["body"]) <= 4096 else "text.body"
    if kind == "template":
        template = body.get("template")
        ok = (isinstance(template, dict) and template.get("name")
              and isinstance(template.get("language"), dict) and template["language"].get("code"))
        return None if ok else "template"
    return "type"


def create_graph_app(state: GraphState) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        if state.latency:
            await asyncio.sleep(state.latency)
        number = request.match_info["phone_number_id"]
        if request.headers.get("Authorization") != f"Bearer {state.access_token}":
            return graph_error(190)
        if number not in state.phone_number_ids:
            return graph_error(100, f"Object with ID '{number}' does not exist", subcode=33)
        try:
            body = await request.json()
        except ValueError:
            body = None
        state.requests.append(body)
        if (missing := _missing(body)) is not None:
            return graph_error(100, f"The parameter {missing} is required.")
        if state.clock() < state.outage_until:
            return _answered(_outage())
        response = _answered(_send(number, body))
        if state.answer_delay:
            await asyncio.sleep(state.answer_delay)
        return response

    def _answered(response: web.Response) -> web.Response:
        state.answers.append((time.monotonic(), response.status))
        return response

    def _outage() -> web.Response:
        if state.outage_status in (500, 503):
            return graph_error(1 if state.outage_status == 500 else 2)
        return web.Response(status=state.outage_status, text="<html>Bad Gateway</html>",
                            content_type="text/html")

    def _send(number: str, body: dict) -> web.Response:
        if not state.take_token(number):
            return _throttled(130429)
        if (code := state.fail.get(body["to"])) is not None:
            return _throttled(code)
        if state.enforce_window and body.get("type", "text") == "text" and \
                state.outside_window(body["to"]):
            return graph_error(131047)
        if not state.pair_free(number, body["to"]):
            return _throttled(131056)
        wamid = state.accept(number, body)
        return web.json_response({
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": wamid, "message_status": "accepted"}]})

    def _throttled(code: int) -> web.Response:
        response = graph_error(code)
        if state.retry_after is not None and code in THROTTLING:
            response.headers["Retry-After"] = state.retry_after
        return response

    app = web.Application()
    app.router.add_post("/{version}/{phone_number_id}/messages", messages)
    app.router.add_get("/{version}/{waba_id}/message_templates", _template_listing(state))
    return app


# --- webhooks -------------------------------------------------------------------------------

def signed_webhook(app_secret: str, payload: dict) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers Meta would POST (X-Hub-Signature-256 over the exact bytes)."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    signature = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}


def batch(*payloads: dict) -> dict:
    """Several webhooks delivered as one, the way Meta batches entries."""
    return {"object": "whatsapp_business_account",
            "entry": [entry for payload in payloads for entry in payload["entry"]]}


def _wa(number: str) -> str:
    return number.removeprefix("+")


def _now() -> str:
    return str(int(time.time()))


def _wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()


def _webhook(value: dict, field_name: str = "messages",
             phone_number_id: str = PHONE_NUMBER_ID) -> dict:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": DISPLAY_NUMBER,
                          "phone_number_id": phone_number_id}} | value
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field_name}]}]}


def _inbound(sender: str, message: dict, phone_number_id: str, name: str) -> dict:
    message = {"from": _wa(sender), "id": message.pop("id", None) or _wamid(),
               "timestamp": message.pop("timestamp", None) or _now()} | message
    return _webhook({"contacts": [{"profile": {"name": name}, "wa_id": _wa(sender)}],
                     "messages": [message]}, phone_number_id=phone_number_id)


def text_message_body(sender: str, text: str, *, message_id: str | None = None,
                         timestamp: str | None = None, phone_number_id: str = PHONE_NUMBER_ID,
                         name: str = "Ayşe Yılmaz") -> dict:
    return _inbound(sender, {"id": message_id, "timestamp": timestamp, "type": "text",
                             "text": {"body": text}}, phone_number_id, name)


def button_body(sender: str, title: str, *, kind: str = "quick_reply",
                   payload: str | None = None, message_id: str | None = None,
                   phone_number_id: str = PHONE_NUMBER_ID, name: str = "Ayşe Yılmaz") -> dict:
    """A tap on a template quick-reply button (`quick_reply`), an interactive reply button
    (`button_reply`) or a list row (`list_reply`)."""
    reply_id = payload or title.upper().replace(" ", "_")
    context = {"from": DISPLAY_NUMBER, "id": _wamid()}
    if kind == "quick_reply":
        message = {"type": "button", "button": {"payload": reply_id, "text": title}}
    elif kind in ("button_reply", "list_reply"):
        reply = {"id": reply_id, "title": title}
        if kind == "list_reply":
            reply["description"] = ""
        message = {"type": "interactive", "interactive": {"type": kind, kind: reply}}
    else:
        raise ValueError(f"unknown button kind {kind!r}")
    message = {"context": context, "id": message_id} | message
    return _inbound(sender, message, phone_number_id, name)


def status_body(message_id: str, status: str, recipient: str, *,
                   reference: str | None = None, error_code: int | None = None,
                   timestamp: str | None = None,
                   phone_number_id: str = PHONE_NUMBER_ID) -> dict:
    item: dict = {"id": message_id, "status": status, "timestamp": timestamp or _now(),
                  "recipient_id": _wa(recipient)}
    if reference is not None:
        item["biz_opaque_callback_data"] = reference
    if status in ("sent", "delivered"):
        item["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "marketing"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "marketing"}
    if error_code is not None:
        _, message, details = ERRORS.get(error_code, (400, f"(#{error_code}) Error", ""))
        title = message.split(") ", 1)[-1]
        item["errors"] = [{"code": error_code, "title": title, "message": title,
                           "error_data": {"details": details},
                           "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/"
                                   "support/error-codes/"}]
    return _webhook({"statuses": [item]}, phone_number_id=phone_number_id)


def user_preferences_body(wa_id: str, value: str, *, category: str = "marketing_messages",
                             timestamp: int | None = None,
                             phone_number_id: str = PHONE_NUMBER_ID) -> dict:
    detail = f"User requested to {value} marketing messages"
    return _webhook({"contacts": [{"wa_id": _wa(wa_id)}],
                     "user_preferences": [{"wa_id": _wa(wa_id), "detail": detail,
                                           "category": category, "value": value,
                                           "timestamp": timestamp or int(time.time())}]},
                    field_name="user_preferences", phone_number_id=phone_number_id)


def media_message_body(sender: str, *, kind: str = "image", message_id: str | None = None,
                          timestamp: str | None = None,
                          phone_number_id: str = PHONE_NUMBER_ID) -> dict:
    """A message without text (a photo here): nothing to classify, but it opens the window."""
    media = {"caption": "", "mime_type": "image/jpeg", "sha256": secrets.token_hex(32),
             "id": str(secrets.randbelow(10**15))}
    return _inbound(sender, {"id": message_id, "timestamp": timestamp, "type": kind,
                             kind: media}, phone_number_id, "Ayşe Yılmaz")


def _account_webhook(value: dict, field_name: str, waba_id: str) -> dict:
    """Account-level changes carry no `metadata`: the entry's id is the WABA."""
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "time": int(time.time()),
                       "changes": [{"value": value, "field": field_name}]}]}


def quality_update_body(event: str, current_limit: str, *, old_limit: str | None = None,
                           display_phone_number: str = DISPLAY_NUMBER,
                           waba_id: str = WABA_ID) -> dict:
    """`phone_number_quality_update` as Meta documents it: event FLAGGED, UNFLAGGED,
    UPGRADE, DOWNGRADE, ONBOARDING (THROUGHPUT_UPGRADE lately); limits TIER_50, TIER_250,
    TIER_1K (TIER_2K before), TIER_10K, TIER_100K, TIER_UNLIMITED, TIER_NOT_SET."""
    value = {"display_phone_number": display_phone_number, "event": event,
             "current_limit": current_limit,
             "max_daily_conversations_per_business": current_limit}
    if old_limit is not None:
        value["old_limit"] = old_limit
    return _account_webhook(value, "phone_number_quality_update", waba_id)


def account_update_body(event: str, *, ban_state: str | None = None,
                           restrictions: tuple[str, ...] = (), violation: str | None = None,
                           waba_id: str = WABA_ID) -> dict:
    """`account_update`: ACCOUNT_RESTRICTION (restriction_info), DISABLED_UPDATE (ban_info),
    ACCOUNT_VIOLATION (violation_info), ACCOUNT_DELETED …"""
    value: dict = {"event": event}
    if ban_state is not None:
        value["ban_info"] = {"waba_ban_state": ban_state, "waba_ban_date": "October 9, 2025"}
    if restrictions:
        value["restriction_info"] = [{"restriction_type": r,
                                      "expiration": "2026-04-19T13:59:20+0000"}
                                     for r in restrictions]
    if violation is not None:
        value["violation_info"] = {"violation_type": violation}
    return _account_webhook(value, "account_update", waba_id)


# --- message templates ------------------------------------------------------------------------

_TEMPLATE_IDS = itertools.count(1_394_000_000_000_000)


def template(name: str, status: str = "APPROVED", *, language: str = "tr",
             category: str = "MARKETING", body: str = "Merhaba {{1}}!",
             header: str | None = None, footer: str | None = None,
             buttons: list[dict] | tuple = (), rejected_reason: str = "NONE") -> dict:
    """A template as GET /{waba_id}/message_templates lists it (Meta's component shapes)."""
    components: list[dict] = []
    if header is not None:
        components.append({"type": "HEADER", "format": "TEXT", "text": header})
    example = [f"örnek{i}" for i in range(1, body.count("{{") + 1)]
    body_component: dict = {"type": "BODY", "text": body}
    if example:
        body_component["example"] = {"body_text": [example]}
    components.append(body_component)
    if footer is not None:
        components.append({"type": "FOOTER", "text": footer})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": list(buttons)})
    return {"name": name, "language": language, "category": category, "status": status,
            "components": components, "rejected_reason": rejected_reason,
            "id": str(next(_TEMPLATE_IDS))}


def quick_reply(text: str) -> dict:
    return {"type": "QUICK_REPLY", "text": text}


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"cursor:{index}".encode()).decode().rstrip("=")


def _index(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(raw.removeprefix("cursor:")) if raw.startswith("cursor:") else None
    except (ValueError, UnicodeDecodeError):
        return None


def _template_listing(state: GraphState):
    """GET /{waba_id}/message_templates?fields=&limit=&after=: Graph's cursor paging (the
    `after` cursor names the page's last item; `paging.next` only while more remain)."""
    async def listing(request: web.Request) -> web.Response:
        waba = request.match_info["waba_id"]
        state.template_requests.append(dict(request.query))
        if request.headers.get("Authorization") != f"Bearer {state.access_token}":
            return graph_error(190)
        if waba not in state.waba_ids:
            return graph_error(100, f"Unsupported get request. Object with ID '{waba}' does "
                                    "not exist, cannot be loaded due to missing permissions, "
                                    "or does not support this operation.", subcode=33)
        try:
            limit = min(int(request.query.get("limit", "25")), state.template_page_limit)
        except ValueError:
            return graph_error(100, "The parameter limit must be an integer.")
        start = 0
        if "after" in request.query:
            last = _index(request.query["after"])
            if last is None:
                return graph_error(100, "Invalid cursor")
            start = last + 1
        if (code := state.template_error_on_page.get(len(state.template_requests) - 1)) \
                is not None:
            return graph_error(code)
        wanted = [f for f in request.query.get("fields", "").split(",") if f]
        page = [{k: v for k, v in t.items() if not wanted or k in wanted or k == "id"}
                for t in state.templates[start:start + limit]]
        body: dict = {"data": page}
        if page:
            end = start + len(page) - 1
            body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(end)}}
            if end + 1 < len(state.templates):
                query = "&".join(f"{k}={v}" for k, v in request.query.items() if k != "after")
                body["paging"]["next"] = (f"https://graph.facebook.com/v21.0/{waba}/"
                                          f"message_templates?{query}&after={_cursor(end)}")
        return web.json_response(body)
    return listing


def template_status_body(name: str, event: str, *, language: str = "tr",
                            template_id: str | int | None = None, reason: str | None = "NONE",
                            title: str | None = None, description: str | None = None,
                            waba_id: str = WABA_ID) -> dict:
    """A `message_template_status_update` webhook: account-level, no `metadata`."""
    value: dict = {"event": event, "message_template_id": int(template_id or 0) or next(
        _TEMPLATE_IDS), "message_template_name": name, "message_template_language": language,
                   "reason": reason}
    if title or description:
        value["other_info"] = {"title": title, "description": description}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "time": int(time.time()), "changes": [
                {"value": value, "field": "message_template_status_update"}]}]}
