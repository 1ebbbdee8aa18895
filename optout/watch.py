"""Revocations the dispatcher must see at once: noted BEFORE the revoking transaction commits,
so a send that starts after the commit always finds them (a revocation whose commit then fails
only costs a skipped message, never a message to someone who said stop)."""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# After this long the revocation is long committed and the per-batch gate query sees it.
KEEP_SECONDS = 600.0


class RevocationWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._seen: dict[tuple[str, bytes], float] = {}
        self._order: deque[tuple[float, tuple[str, bytes]]] = deque()

    def note(self, tenant_id: str, address_index: bytes) -> None:
        now = self._clock()
        key = (tenant_id, address_index)
        self._seen[key] = now
        self._order.append((now, key))
        self._expire(now)

    def revoked(self, tenant_id: str, address_index: bytes) -> bool:
        return (tenant_id, address_index) in self._seen

    def _expire(self, now: float) -> None:
        while self._order and self._order[0][0] < now - KEEP_SECONDS:
            at, key = self._order.popleft()
            if self._seen.get(key) == at:
                del self._seen[key]
