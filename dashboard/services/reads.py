"""Aggregate reads (today's figures, the overview's chart) kept per tenant for a few seconds,
so a team refreshing the same page does not repeat them. A change made through the dashboard
forgets the tenant's entries (`forget`); live progress is never kept here."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

MAX_ENTRIES = 10_000
_kept: dict[tuple[str, str], tuple[float, Any]] = {}


async def remember(tenant_id: str, key: str, seconds: float,
                   compute: Callable[[], Awaitable[Any]]) -> Any:
    """`compute()`'s answer for (tenant, key), reused for `seconds`."""
    found = _kept.get((tenant_id, key))
    if found is not None and time.monotonic() - found[0] < seconds:
        return found[1]
    value = await compute()
    if len(_kept) > MAX_ENTRIES:
        _kept.clear()
    _kept[(tenant_id, key)] = (time.monotonic(), value)
    return value


def forget(tenant_id: str) -> None:
    for key in [k for k in _kept if k[0] == tenant_id]:
        _kept.pop(key, None)
