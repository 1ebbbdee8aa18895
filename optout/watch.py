"""Revocations the dispatcher must see at once: noted BEFORE the revoking transaction commits,
so a send that starts after the commit always finds them (a revocation whose commit then fails
only costs a skipped message, never a message to someone who said stop). Revocations that
other processes commit arrive as notices (optout.revocations) and are noted the same way.

A revocation covers a scope (a consent type, or "*" for everything) and either every
purpose (a suppression) or only commercial messages (a revoked consent), as the claim and
the gate read them, and carries the gate's reason code for the skip; a writer that does not
say covers everything as an opt-out (skipping is the safe side)."""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from optout.gate import OPTED_OUT

# After this long the revocation is long committed and the per-batch gate query sees it.
KEEP_SECONDS = 600.0
# A bound on memory (about 300 bytes each) for a flood of revocations, e.g. an import of
# refusals: the oldest go first, long after the claims that could miss them are sent.
MAX_NOTED = 200_000
EVERYTHING = "*"

_Key = tuple[str, bytes, str, bool]  # tenant, blind index, scope, commercial only


class RevocationWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_noted: int = MAX_NOTED):
        self._clock = clock
        self._max = max_noted
        self._seen: dict[_Key, tuple[float, str]] = {}
        self._order: deque[tuple[float, _Key]] = deque()

    def note(self, tenant_id: str, address_index: bytes, scope: str = EVERYTHING,
             commercial_only: bool = False, reason: str = OPTED_OUT) -> None:
        now = self._clock()
        key = (tenant_id, address_index, scope, commercial_only)
        self._seen[key] = (now, reason)
        self._order.append((now, key))
        self._expire(now)

    def revoked(self, tenant_id: str, address_index: bytes, consent_type: str,
                commercial: bool) -> str | None:
        """The reason a send of that purpose on a channel of `consent_type` must not start
        (a suppression's before a revoked consent's, as the gate orders them), or None."""
        seen = self._seen
        for commercial_only in (False, True) if commercial else (False,):
            for scope in (EVERYTHING, consent_type):
                found = seen.get((tenant_id, address_index, scope, commercial_only))
                if found is not None:
                    return found[1]
        return None

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        order, seen = self._order, self._seen
        while order and (order[0][0] < now - KEEP_SECONDS or len(order) > self._max):
            at, key = order.popleft()
            if seen.get(key, (None,))[0] == at:
                del seen[key]
