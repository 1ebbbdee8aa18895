"""What optout needs to know of each sending channel — the consent type it is recorded under,
the processor a KVKK report names, how its addresses are normalised. The channel registry
(bot.registry) declares them when a channel is registered: optout cannot import bot/."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelFacts:
    consent_type: str
    processor: str | None
    normalise: Callable[[str], str | None]


_declared: dict[str, ChannelFacts] = {}


def declare(name: str, *, consent_type: str, processor: str | None,
            normalise: Callable[[str], str | None]) -> None:
    _declared[name] = ChannelFacts(consent_type, processor, normalise)


def withdraw(name: str) -> None:
    _declared.pop(name, None)


def facts(name: str) -> ChannelFacts | None:
    return _declared.get(name)


def consent_types() -> dict[str, str]:
    return {name: f.consent_type for name, f in _declared.items()}


def processors() -> dict[str, str]:
    return {name: f.processor for name, f in _declared.items() if f.processor}
