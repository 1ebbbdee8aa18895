"""The channel registry: one `ChannelSpec` per channel (sandbox, WhatsApp, Telegram, …) that the
dispatcher's wiring, the line API and pages, the webhooks, the consent ledger and the KVKK
reports read. Adding a channel is one module that builds its spec plus one `register()` call.

The packages below bot/ cannot import this module, so registering also hands them the facts they
need: optout.channels (consent type, processor, address normaliser) and campaigns.ports
(the provider's limits the dispatcher's throttle applies)."""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from campaigns import ports, window
from campaigns.ports import Channel, Line, SendResult, reason_of
from optout import channels as optout_channels
from optout.addresses import normalise_phone


class UnknownChannelError(LookupError):
    code = "unsupported_channel"


@dataclass(frozen=True)
class Field:
    """One value a line's form and API take: a credential or a non-secret option."""
    name: str
    label: str  # shown in the dashboard form (Turkish first)
    kind: type = str  # str, int, float or dict, as dashboard.errors.field checks it
    secret: bool = False  # stored wrapped, never shown or echoed
    required: bool = True
    editable: bool = False  # PATCH /lines/{id} may change it (secrets: a token rotation)
    # Checks a present value; returns it (normalised) or raises ValueError with a message.
    check: Callable[[Any], Any] | None = None
    choices: tuple[str, ...] = ()  # a select in the form: value i is shown as choices[i]
    default: Any = None  # an option stored when the request leaves it out
    help: str = ""  # one sentence under the form field

    def validate(self, value: Any) -> Any:
        return value if self.check is None else self.check(value)


@dataclass(frozen=True)
class WebhookRoute:
    """A route under /webhooks/{channel}/{line_id}. `handler` names a function
    dashboard.webhooks.providers defines for this channel; a channel without one gives `verify` and
    `parse`, and the generic handler applies the StatusUpdate / InboundText events parsed."""
    method: str
    summary: str
    handler: str | None = None
    # (credentials, request headers, raw body) -> is it the provider's?
    verify: Callable[[Any, Mapping[str, str], bytes], bool] | None = None
    parse: Callable[[Any], list] | None = None
    query: tuple[str, ...] = ()  # documented query parameters
    responses: Mapping[int, str] = field(default_factory=lambda: {200: "Processed"})


@dataclass(frozen=True)
class BuildContext:
    """What a channel needs to be built (izinli.app): its credentials, the operator's
    provider settings, and the store pieces the sandbox writes to."""
    credentials_for: Callable[[Line], Awaitable[Any]]
    providers: Any  # izinli.config.Providers
    db: Any = None
    fields: Any = None
    directory: Any = None


@dataclass(frozen=True)
class LineHooks:
    """Handed to a spec's hooks after a line is added, changed or deleted."""
    channel: Channel
    public_url: str | None


LineHook = Callable[[LineHooks, Line, Any], Awaitable[None]]


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    title: str  # shown in pages
    address_kind: str  # "phone" (E.164) or "chat_id"
    normalise: Callable[[str], str | None]
    default_rate: float
    max_rate: float
    build: Callable[[BuildContext], Channel]
    consent_type: str = "MESAJ"  # İYS consent type (optout.ledger); Telegram has its own
    processor: str | None = None  # named in KVKK art. 11 reports
    # Free text reaches a person only this long after their last message (WhatsApp's 24 h
    # customer-service window); None: no window (campaigns.window).
    customer_window_seconds: float | None = None
    credentials: tuple[Field, ...] = ()
    options: tuple[Field, ...] = ()
    # Stored credentials JSON → the adapter's credentials object; raises ValueError.
    parse_credentials: Callable[[bytes], Any] | None = None
    # Checked credential values (by field name) → the JSON to wrap (may add generated secrets).
    make_credentials: Callable[[dict], bytes | str] | None = None
    # Sends the dispatcher may have in flight on the channel at once; None: its default
    # (DispatchSettings.max_in_flight, made for real providers answering in tens of ms).
    max_in_flight: int | None = None
    # What the provider enforces per line, as campaigns.throttle.LineThrottle keywords.
    limits: Callable[[Line], dict] = field(default=lambda line: {})
    # A provider error code (send answers, failed status webhooks) → a send outcome.
    outcome_for_error: Callable[[int], SendResult] | None = None
    webhooks: tuple[WebhookRoute, ...] = ()
    after_add: LineHook | None = None  # e.g. Telegram setWebhook
    after_delete: LineHook | None = None  # with the credentials still readable
    forget: Callable[[Channel, str], Awaitable[None]] | None = None  # drop cached clients
    guide: str | None = None  # a docs/ page the form links to

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.credentials + self.options if f.name == name), None)

    def reason_for_error(self, code: int) -> str:
        """A provider error code as a stable reason word (the one outcome → reason mapping)."""
        if self.outcome_for_error is None:
            return f"{self.name}_{code}"
        return reason_of(self.outcome_for_error(code))

    def credentials_json(self, values: dict) -> bytes:
        if self.make_credentials is not None:
            made = self.make_credentials(values)
            return made.encode() if isinstance(made, str) else made
        return json.dumps(values, separators=(",", ":")).encode()


_SPECS: dict[str, ChannelSpec] = {}


def register(spec: ChannelSpec) -> ChannelSpec:
    """Adds (or replaces) a channel; the lower layers learn its consent type, processor and
    address normaliser through optout.channels."""
    _SPECS[spec.name] = spec
    ports.declare_limits(spec.name, spec.limits)
    ports.declare_in_flight(spec.name, spec.max_in_flight)
    window.declare(spec.name, spec.customer_window_seconds)
    optout_channels.declare(spec.name, consent_type=spec.consent_type,
                            processor=spec.processor, normalise=spec.normalise)
    return spec


def unregister(name: str) -> None:
    _SPECS.pop(name, None)
    ports.withdraw_limits(name)
    ports.declare_in_flight(name, None)
    window.declare(name, None)
    optout_channels.withdraw(name)


def get(name: str) -> ChannelSpec:
    _builtin()
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownChannelError(
            f"unknown channel '{name}'; use {_names()}") from None


def find(name: str) -> ChannelSpec | None:
    _builtin()
    return _SPECS.get(name)


def all_channels() -> list[ChannelSpec]:
    _builtin()
    return list(_SPECS.values())


def names() -> list[str]:
    return [spec.name for spec in all_channels()]


def _names() -> str:
    found = names()
    return ", ".join(found[:-1]) + " or " + found[-1] if len(found) > 1 else "".join(found)


def normalise(raw: str, channel: str) -> str | None:
    """The canonical address on `channel`; unknown channels take phone numbers."""
    spec = find(channel)
    return (spec.normalise if spec else normalise_phone)(raw)


def _builtin() -> None:
    # The shipped channels (bot.channels) import this module: they register themselves when
    # that module is first imported, here at the latest.
    import bot.channels  # noqa: F401
