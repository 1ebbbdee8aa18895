"""What a failed HTTP exchange with a provider means for the message, decided once for every
channel: a connection that never opened reached nobody (Unavailable: retried after a back-off);
anything later — a timeout while waiting for the answer, a connection reset or closed
mid-answer, an answer too large to read — may have reached the provider, which keeps a message
the moment it takes it (MaybeSent: `unknown`, never resent automatically)."""
from __future__ import annotations

import aiohttp

from campaigns.ports import MaybeSent, SendResult, Unavailable

# aiohttp errors raised before a byte of the request left.
BEFORE_SENDING = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError,
                  aiohttp.InvalidURL)


def network_outcome(exc: BaseException, not_taken_reason: str) -> SendResult:
    if isinstance(exc, BEFORE_SENDING):
        return Unavailable(not_taken_reason)
    if isinstance(exc, TimeoutError):
        return MaybeSent("timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):  # cut off mid-answer, or over the cap
        return MaybeSent("unreadable_answer")
    return MaybeSent("connection_lost")
