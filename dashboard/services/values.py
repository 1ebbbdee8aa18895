"""Small value rules the services and the API share: ISO times, addresses a request names,
and the fields a line request may carry (from the registered channels)."""
from __future__ import annotations

from datetime import UTC, datetime

from bot import registry
from dashboard.services import ServiceError
from optout.outbound import names_an_address

COMMON_FIELDS = ("channel", "name", "rate_per_second")


def line_fields() -> tuple[str, ...]:
    """Every field a line request may carry, over the registered channels."""
    return COMMON_FIELDS + tuple(dict.fromkeys(
        f.name for spec in registry.all_channels() for f in spec.credentials + spec.options))


def refuse_addresses(body: object, known: tuple[str, ...], where: str = "") -> None:
    """A 400 naming the first field that would point a provider call somewhere: provider
    addresses are the operator's (providers.*), and a tenant's would receive the line's
    tokens and its recipients' numbers. Checked before anything else is read or called."""
    if not isinstance(body, dict):
        return
    for key, value in body.items():
        if names_an_address(str(key), None if key in known else value):
            raise ServiceError("address_not_allowed",
                               f"'{where}{key}' is not accepted: provider addresses are "
                               "set by the operator (providers.* in the configuration), not "
                               "per tenant")


def address_param(raw: str | None, channel: str, name: str) -> str:
    if not raw or not raw.strip():
        raise ServiceError("missing_field", f"'{name}' is required")
    address = registry.normalise(raw, channel)
    if address is None:
        raise ServiceError("invalid_address", f"'{name}' is not a valid {channel} address")
    return address


def iso(ts: float | None) -> str | None:
    try:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, ValueError, OSError):  # a row stored before inputs were checked
        return None
