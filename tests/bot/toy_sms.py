"""A toy SMS channel, defined only in tests: the one module a new channel needs. Its spec
(credentials and their validation, pacing, limits, outcome mapping, webhook route and parser,
KVKK processor) is registered with bot.registry and nothing else in izinli changes."""
from __future__ import annotations

import hmac
import json
from dataclasses import asdict, dataclass
from hashlib import sha256

import aiohttp

from bot.registry import ChannelSpec, Field, WebhookRoute
from bot.whatsapp_webhook import StatusUpdate
from campaigns.ports import Line, OutboundMessage, PermanentFailure, SendResult, Sent
from optout.addresses import normalise_phone

PROCESSOR = "Toy SMS Gateway Ltd."


@dataclass(frozen=True, repr=False)
class SmsCredentials:
    api_key: str
    sender: str
    webhook_secret: str

    @classmethod
    def from_json(cls, raw: bytes) -> SmsCredentials:
        return cls(**json.loads(raw))


def _sender(value: str) -> str:
    if not (value.isascii() and value.isalnum() and len(value) <= 11):
        raise ValueError("'sender' must be up to 11 letters or digits (an SMS sender id)")
    return value


_ERRORS = {21211: PermanentFailure("invalid_address"), 30007: PermanentFailure("filtered")}


def outcome_for_error(code: int) -> SendResult:
    return _ERRORS.get(code, PermanentFailure(f"sms_{code}"))


class SmsChannel:
    def __init__(self, credentials_for, base_url: str):
        self._credentials_for, self._base_url = credentials_for, base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult:
        creds = await self._credentials_for(line)
        self._session = self._session or aiohttp.ClientSession()
        async with self._session.post(f"{self._base_url}/messages", json={
                "from": creds.sender, "to": address, "text": message.text,
                "reference": message.reference},
                headers={"Authorization": f"Bearer {creds.api_key}"}) as response:
            body = await response.json()
        if response.status == 201:
            return Sent(body["id"])
        return outcome_for_error(int((body.get("error") or {}).get("code", 0)))

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _verify(creds: SmsCredentials, headers, raw: bytes) -> bool:
    expected = "sha256=" + hmac.new(creds.webhook_secret.encode(), raw, sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Sms-Signature", ""))


def _parse(payload) -> list:
    reports = payload.get("reports") if isinstance(payload, dict) else None
    return [StatusUpdate(phone_number_id="", message_id=str(r.get("id")),
                         status=str(r.get("status")), recipient=str(r.get("to")),
                         reference=r.get("reference"), error_code=r.get("error_code"),
                         timestamp=int(r.get("at") or 0))
            for r in reports or [] if isinstance(r, dict)]


def spec(base_url: str, webhook_secret: str) -> ChannelSpec:
    """The toy SMS channel against the gateway at `base_url` (the operator's address)."""
    return ChannelSpec(
        name="sms", title="SMS", address_kind="phone", normalise=normalise_phone,
        default_rate=10.0, max_rate=50.0,
        build=lambda ctx: SmsChannel(ctx.credentials_for, base_url),
        processor=PROCESSOR,
        credentials=(Field("api_key", "API key", secret=True, editable=True),
                     Field("sender", "Sender id", check=_sender)),
        parse_credentials=SmsCredentials.from_json,
        make_credentials=lambda v: json.dumps(asdict(SmsCredentials(
            v["api_key"], v["sender"], webhook_secret))),
        limits=lambda line: {"pair_interval": 1.0, "provider_max_rate": 50.0},
        outcome_for_error=outcome_for_error,
        webhooks=(WebhookRoute("POST", "SMS delivery reports (X-Sms-Signature)",
                               verify=_verify, parse=_parse,
                               responses={200: "Processed", 401: "Bad signature"}),))
