"""What the campaign pipeline needs from the outside, declared by it: a channel that sends, and
the closed set of outcomes a send can have. bot/ implements these; nothing above bot/ ever sees
a provider's HTTP status or error code."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Line:
    id: str
    tenant_id: str
    channel: str
    name: str
    rate_per_second: float
    state: str
    options: dict | None = None
    state_reason: str | None = None  # why a line is paused (a provider's quality warning, …)
    created_at: float | None = None  # epoch seconds; WhatsApp warm-up goes by the line's age
    # The name as typed is known only right after creating the line; read from the database
    # `name` is "" and the name is in `name_sealed` (optout.names opens it while unlocked).
    name_sealed: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProviderTemplate:
    """An approved provider template (WhatsApp): required for business-initiated messages
    outside the 24 h customer window. `parameters` fill its {{1}}, {{2}}… in order."""
    name: str
    language: str
    parameters: tuple[str, ...] = ()


class OutboundMessage(NamedTuple):  # one per message: cheaper to make than a frozen dataclass
    text: str
    # Our reference the provider echoes in status callbacks (WhatsApp biz_opaque_callback_data).
    reference: str | None = None
    # When set, channels that have templates send it instead of `text` (kept for the record).
    template: ProviderTemplate | None = None
    # The recipient's blind index when the sender knows it (the dispatcher does): a channel
    # that files what it sent by recipient (the sandbox) need not compute it again.
    recipient_index: bytes | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str


@dataclass(frozen=True, slots=True)
class RateLimited:
    retry_after: float


@dataclass(frozen=True, slots=True)
class Blocked:
    """The recipient blocked the sender (Telegram 403): suppress the address."""


@dataclass(frozen=True, slots=True)
class OptedOut:
    """The provider says the person stopped marketing messages: record an opt-out."""


@dataclass(frozen=True, slots=True)
class TemporaryFailure:
    """The provider refused this message for now (WhatsApp's per-user marketing cap, a
    simulated failure): `failed`, and the owner may retry it later."""
    reason: str


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    code: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The provider, or the way to it, failed before it took the message (a 5xx answer, a
    connection that never opened): nothing was sent. The line slows down and the message is
    tried again after a back-off, a bounded number of times."""
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class MaybeSent:
    """The request may have reached the provider but no answer says whether it was taken (a
    timeout after sending, a connection lost mid-answer, an answer we cannot read). Recorded
    `unknown` and never sent again automatically: a missed message beats a duplicate."""
    reason: str


SendResult = (Sent | RateLimited | Blocked | OptedOut | TemporaryFailure | PermanentFailure
              | Unavailable | MaybeSent)


def reason_of(outcome: SendResult) -> str:
    """An outcome as one stable lowercase word, for logs, errors and outbox reasons."""
    if isinstance(outcome, PermanentFailure):
        return outcome.code
    if isinstance(outcome, TemporaryFailure | Unavailable | MaybeSent):
        return outcome.reason
    return {RateLimited: "rate_limited", Blocked: "blocked", OptedOut: "opted_out"}.get(
        type(outcome), "sent")


# PermanentFailure codes that mean the provider is unhappy with the LINE, not the recipient:
# the dispatcher pauses the line (WhatsApp 131048 spam rate limit, 368 policy block).
LINE_PAUSE_CODES = frozenset({"spam_rate_limited", "policy_blocked"})


class Channel(Protocol):
    async def send(self, line: Line, address: str, message: OutboundMessage) -> SendResult: ...

    async def flush(self) -> None:
        """Waits for work still being made durable (the sandbox's group commits); may do
        nothing. A send returns Sent only once its message is kept, as a provider does."""


@runtime_checkable
class BatchChannel(Protocol):
    """A channel that can start many sends in one call (the sandbox: one commit for all).
    The dispatcher checks each message (opt-outs, lock, lease, throttle) with no await before
    the call, exactly as it does before a single send."""

    async def send_many(self, line: Line,
                        messages: Sequence[tuple[str, OutboundMessage]]) -> list[SendResult]:
        """One outcome per message, in order."""


class Alerts(Protocol):
    """Told when a campaign needs the owner: completed, paused (with the reason), waiting for
    an unlock, or its line paused by a provider signal."""

    async def campaign_event(self, tenant_id: str, campaign_id: str | None, event: str,
                             detail: str | None = None) -> None: ...


class NoAlerts:
    async def campaign_event(self, tenant_id: str, campaign_id: str | None, event: str,
                             detail: str | None = None) -> None:
        return None


# What each channel's provider enforces per line (pair interval, 24 h unique-recipient cap,
# its maximum rate, warm-up), as campaigns.throttle.LineThrottle keywords. Declared by the
# channel registry (bot.registry) when a channel is registered: campaigns cannot import bot/.
_LIMITS: dict[str, Callable[[Line], dict]] = {}


def declare_limits(channel: str, limits: Callable[[Line], dict]) -> None:
    _LIMITS[channel] = limits


def withdraw_limits(channel: str) -> None:
    _LIMITS.pop(channel, None)


def provider_limits(line: Line) -> dict:
    limits = _LIMITS.get(line.channel)
    return {} if limits is None else limits(line)


# How many sends the dispatcher may have in flight on a channel at once, when the channel says
# (bot.registry: ChannelSpec.max_in_flight); else DispatchSettings.max_in_flight.
_IN_FLIGHT: dict[str, int] = {}


def declare_in_flight(channel: str, most: int | None) -> None:
    if most is None:
        _IN_FLIGHT.pop(channel, None)
    else:
        _IN_FLIGHT[channel] = most


def max_in_flight(channel: str) -> int | None:
    return _IN_FLIGHT.get(channel)
