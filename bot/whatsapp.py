"""The WhatsApp Cloud API channel: sends over the Graph API and classifies its answers."""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, fields
from urllib.parse import quote

import aiohttp

from bot.network import network_outcome
from campaigns.ports import (
    Line,
    MaybeSent,
    OptedOut,
    OutboundMessage,
    PermanentFailure,
    RateLimited,
    SendResult,
    Sent,
    TemporaryFailure,
    Unavailable,
)
from optout.outbound import is_redirect, read_capped, timeouts

log = logging.getLogger(__name__)

# Seconds to wait when Graph sends no Retry-After (its documented errors never carry one).
# 130429: throughput is counted per second, so one second lets the number's bucket refill and
# the dispatcher's back-off lowers the rate on top. 131056: the pair limit is one message per
# 6 s to the same user. 4, 80007, 613: app / account call limits are counted over rolling
# windows of up to an hour; a minute is a probe interval, not a guess at the window.
RETRY_AFTER = {130429: 1.0, 131056: 6.0, 4: 60.0, 80007: 60.0, 613: 60.0}

# Documented Graph / WhatsApp error codes with a fixed meaning for one send.
_OUTCOMES: dict[int, SendResult] = {
    131048: PermanentFailure("spam_rate_limited"),  # pause the line (LINE_PAUSE_CODES)
    368: PermanentFailure("policy_blocked"),  # pause the line (LINE_PAUSE_CODES)
    131050: OptedOut(),  # the user stopped marketing messages from this business
    131026: PermanentFailure("undeliverable"),
    131047: PermanentFailure("outside_window"),  # free-form text needs the 24 h window
    # Per-user marketing cap: the same message may be sent again after 24 h.
    131049: TemporaryFailure("marketing_cap"),
    0: PermanentFailure("auth_failed"),
    190: PermanentFailure("auth_failed"),
    100: PermanentFailure("invalid_request"),
    # Graph's own "temporary, try again" codes: the message was not sent.
    1: Unavailable("provider_unavailable"),
    2: Unavailable("provider_unavailable"),
    131000: Unavailable("provider_unavailable"),
    131016: Unavailable("provider_unavailable"),
}


class WhatsAppCredentialsError(ValueError):
    code = "invalid_credentials"


@dataclass(frozen=True, repr=False)
class WhatsAppCredentials:
    """A number's secrets. No address: Graph's URL is the operator's (providers.whatsapp_url),
    and a `base_url` stored by older versions is ignored when read."""

    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str

    def __repr__(self) -> str:
        return (f"WhatsAppCredentials(phone_number_id={self.phone_number_id!r}, "
                "access_token=<hidden>, app_secret=<hidden>, verify_token=<hidden>)")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> WhatsAppCredentials:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            # `from None`: a JSONDecodeError keeps the whole document, secrets included.
            raise WhatsAppCredentialsError("credentials are not valid JSON") from None
        if not isinstance(data, dict):
            raise WhatsAppCredentialsError("credentials must be a JSON object")
        values = {}
        for field in fields(cls):
            value = data.get(field.name, field.default)
            if not isinstance(value, str) or not value:
                raise WhatsAppCredentialsError(f"credentials need a non-empty '{field.name}'")
            values[field.name] = value
        return cls(**values)


def text_body(address: str, message: OutboundMessage) -> dict:
    """The /messages body for a free-form text (valid inside the 24 h customer window)."""
    return _envelope(address, message.reference) | {
        "type": "text", "text": {"preview_url": False, "body": message.text}}


def template_body(to: str, name: str, language: str, parameters: Sequence[str] = (),
                     reference: str | None = None) -> dict:
    """The /messages body for an approved template; `parameters` fill the body's {{1}}, {{2}}…"""
    template: dict = {"name": name, "language": {"code": language}}
    if parameters:
        template["components"] = [{"type": "body", "parameters": [
            {"type": "text", "text": value} for value in parameters]}]
    return _envelope(to, reference) | {"type": "template", "template": template}


def _envelope(address: str, reference: str | None) -> dict:
    body = {"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": address.removeprefix("+")}
    if reference is not None:
        body["biz_opaque_callback_data"] = reference
    return body


def classify(status: int, body: dict | None, retry_after: float | None = None) -> SendResult:
    """Graph's answer to POST /messages as one of the closed set of send outcomes."""
    if status == 200:
        return _accepted(body)
    code = _error_code(body)
    if code is not None:
        return outcome_for_error(code, retry_after, status)
    if status == 504:
        # A gateway gave up waiting for Graph, which may have taken the message meanwhile.
        return MaybeSent("gateway_timeout")
    if status >= 500:
        return Unavailable(f"http_{status}", retry_after)
    if status == 429:
        return RateLimited(retry_after or 1.0)
    if status == 401:
        return PermanentFailure("auth_failed")
    return PermanentFailure(f"http_{status}")


def outcome_for_error(code: int, retry_after: float | None = None,
                      status: int = 400) -> SendResult:
    """A Graph error code as a send outcome; also fits the codes of failed status webhooks."""
    if code in RETRY_AFTER:
        return RateLimited(retry_after if retry_after is not None else RETRY_AFTER[code])
    if code in _OUTCOMES:
        return _OUTCOMES[code]
    if status >= 500:
        return Unavailable(f"graph_{code}", retry_after)
    return PermanentFailure(f"graph_{code}")


def _accepted(body: dict | None) -> SendResult:
    try:
        message_id = (body or {})["messages"][0]["id"]
    except (KeyError, IndexError, TypeError):
        message_id = None
    if isinstance(message_id, str) and message_id:
        return Sent(message_id)
    # Graph took the request but said nothing we understand; sending again could duplicate.
    return MaybeSent("malformed_response")


def classify_exception(exc: BaseException) -> SendResult:
    """A failed exchange with Graph as an outcome (bot.network decides for every channel)."""
    return network_outcome(exc, "connection_error")


def _error_code(body: dict | None) -> int | None:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code.isascii() and code.isdigit():
        return int(code)  # some relays quote the code
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _retry_after(headers) -> float | None:
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if 0 <= value < 86400 else None


class WhatsAppChannel:
    """Implements campaigns.ports.Channel; one HTTP session shared by every WhatsApp line,
    all of them sent to `base_url` (providers.whatsapp_url, with the Graph version)."""

    def __init__(self, credentials_for: Callable[[Line], Awaitable[WhatsAppCredentials]], *,
                 base_url: str, timeout: float = 15.0) -> None:
        self._credentials_for = credentials_for
        self._base_url = base_url.rstrip("/")
        self._timeout = timeouts(timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult:
        digits = address.removeprefix("+")
        if not (digits.isascii() and digits.isdigit()):
            return PermanentFailure("invalid_address")
        if message.template is not None:
            t = message.template
            return await self.send_body(line, template_body(
                address, t.name, t.language, t.parameters, message.reference))
        return await self.send_body(line, text_body(address, message))

    async def send_body(self, line: Line, payload: dict) -> SendResult:
        """Posts a prepared /messages body (e.g. from `template_body`) for the line."""
        # A loader failure (line deleted, master key changed) is not a provider answer: it
        # propagates, and the dispatcher records the row as a channel error.
        credentials = await self._credentials_for(line)
        url = self._messages_url(credentials)
        headers = {"Authorization": f"Bearer {credentials.access_token}"}
        try:
            async with self._client().post(url, json=payload, headers=headers,
                                           allow_redirects=False) as response:
                status, body = response.status, await _json_body(response)
                retry_after = _retry_after(response.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return self._failed(line, classify_exception(exc), type(exc).__name__)
        result = classify(status, body, retry_after)
        if not isinstance(result, Sent):
            error = (body or {}).get("error")
            error = error if isinstance(error, dict) else {}
            self._failed(line, result, f"{status}/{error.get('code')}", error.get("fbtrace_id"))
        return result

    async def graph_get(self, line: Line, path: str, params: dict) -> tuple[int, dict | None]:
        """GET `path` (quoted segments) under the operator's Graph URL with the line's token,
        e.g. the account's templates (bot.whatsapp_templates); transport errors propagate."""
        credentials = await self._credentials_for(line)
        headers = {"Authorization": f"Bearer {credentials.access_token}"}
        async with self._client().get(f"{self._base_url}/{path}", params=params,
                                      headers=headers, allow_redirects=False) as response:
            return response.status, await _json_body(response)

    async def flush(self) -> None:
        """Nothing is buffered: Graph holds the message once it answers."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _messages_url(self, credentials: WhatsAppCredentials) -> str:
        # Quoted: the id is the tenant's input and may only ever name a path segment.
        return f"{self._base_url}/{quote(credentials.phone_number_id, safe='')}/messages"

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so that it belongs to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    @staticmethod
    def _failed(line: Line, result: SendResult, detail: str | None = None,
                trace: str | None = None) -> SendResult:
        # Ids and codes only: never the token, the address or the text (nor aiohttp's exception
        # texts, which can carry the request URL). fbtrace_id is what Meta support asks for.
        log.info("whatsapp send not accepted", extra={
            "line_id": line.id, "outcome": result, "detail": detail, "fbtrace_id": trace})
        return result


async def _json_body(response: aiohttp.ClientResponse) -> dict | None:
    """The answer as a JSON object; ResponseTooLargeError (an aiohttp.ClientError) past the
    cap. A redirect's body is never looked at: it is not Graph's answer."""
    if is_redirect(response.status):
        return None
    try:
        body = json.loads(await read_capped(response))
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
