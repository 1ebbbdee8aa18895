"""Throttles for guessing (in memory, per process): attempts counted per key in a sliding
window, and a bound on how many password hashes run at once.

An attempt is counted when it starts, before the slow hash, and forgiven when it succeeds:
counting after the hash let a burst of parallel guesses all pass the check before any of them
was counted. Reserving is synchronous (no await between check and count), so on one event
loop it is atomic."""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Beyond this many keys the limiter drops the ones whose window has passed: an attacker
# rotating e-mails or addresses must not grow memory without bound.
MAX_KEYS = 100_000


class FailureLimiter:
    def __init__(self, limit: int, window_seconds: float,
                 clock: Callable[[], float] | None = None):
        self._limit, self._window = limit, window_seconds
        self._clock = clock or time.monotonic
        self._attempts: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        times = self._attempts.get(key)
        if times is None:
            if len(self._attempts) >= MAX_KEYS:
                self._prune()
            times = self._attempts[key] = deque()
        horizon = self._clock() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def _prune(self) -> None:
        horizon = self._clock() - self._window
        for key in [k for k, v in self._attempts.items() if not v or v[-1] <= horizon]:
            del self._attempts[key]

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self._limit

    def take(self, key: str) -> float:
        """Counts an attempt now; returns its stamp (to forgive it later)."""
        stamp = self._clock()
        self._recent(key).append(stamp)
        return stamp

    def forgive(self, key: str, stamp: float) -> None:
        times = self._attempts.get(key)
        if times is not None and stamp in times:
            times.remove(stamp)

    def failed(self, key: str) -> None:
        self.take(key)

    def reset(self, key: str) -> None:
        self._attempts.pop(key, None)

    def retry_after(self, key: str) -> int:
        """Seconds until the next attempt under `key` is allowed (0 when it is now)."""
        times = self._recent(key)
        if len(times) < self._limit:
            return 0
        return max(1, math.ceil(times[len(times) - self._limit] + self._window - self._clock()))


@dataclass
class Reservation:
    """Attempts counted under several keys at once; `forgive()` takes them all back."""

    held: list[tuple[FailureLimiter, str, float]] = field(default_factory=list)

    def forgive(self) -> None:
        for limiter, key, stamp in self.held:
            limiter.forgive(key, stamp)
        self.held = []


class TooManyAttemptsError(Exception):
    def __init__(self, retry_after: int):
        super().__init__("too many attempts")
        self.retry_after = retry_after


def reserve(*slots: tuple[FailureLimiter, str]) -> Reservation:
    """Counts one attempt under every (limiter, key), or none of them and raises
    TooManyAttemptsError when any is full."""
    waits = [limiter.retry_after(key) for limiter, key in slots]
    if any(waits):
        raise TooManyAttemptsError(max(waits))
    return Reservation([(limiter, key, limiter.take(key)) for limiter, key in slots])


class LoginThrottle:
    """Sign-in attempts: per account and address first (an attacker's own address is stopped
    after a few guesses while the owner elsewhere still gets in), per address (one address
    guessing many accounts), and a higher account-wide ceiling so guesses spread over many
    addresses slow down. A browser that signed in to the account before (`device`: its
    device cookie) is counted on its own instead, so guesses from elsewhere never shut it out.
    Every count lives in a window, so nothing locks anyone out for good; the CLI has no
    throttle at all."""

    def __init__(self, per_account_ip: int = 5, per_ip: int = 30, per_account: int = 50,
                 window_seconds: float = 900, clock: Callable[[], float] | None = None):
        self.account_ip = FailureLimiter(per_account_ip, window_seconds, clock)
        self.ip = FailureLimiter(per_ip, window_seconds, clock)
        self.account = FailureLimiter(per_account, window_seconds, clock)

    def reserve(self, account: str, ip: str, device: str | None = None) -> Reservation:
        if device is not None:
            return reserve((self.account_ip, _device_key(account, device)))
        return reserve((self.account_ip, f"{account}\x00{ip}"), (self.ip, ip),
                       (self.account, account))

    def succeeded(self, reservation: Reservation, account: str, ip: str,
                  device: str | None = None) -> None:
        reservation.forgive()
        self.account_ip.reset(_device_key(account, device) if device is not None
                              else f"{account}\x00{ip}")


def _device_key(account: str, device: str) -> str:
    return f"{account}\x00device\x00{device}"


class HashBusyError(Exception):
    """Every password-hashing slot is taken; the caller answers 429 at once."""

    def __init__(self, message: str = "the server is busy checking passwords; try again "
                                      "shortly"):
        super().__init__(message)


class HashSlots:
    """At most `size` Argon2id computations at once in this process. Each costs up to 256 MiB
    (MODERATE), so a burst of parallel guesses would otherwise take the server's memory; a
    request finding every slot busy is refused at once rather than queued. A slot is held until
    the hashing thread ends, even when the request that started it is cancelled."""

    def __init__(self, size: int = 2):
        self.size = max(1, size)
        self._busy = 0

    @property
    def busy(self) -> int:
        return self._busy

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._busy >= self.size:
            raise HashBusyError()
        self._busy += 1
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        task.add_done_callback(self._release)
        return await asyncio.shield(task)

    def _release(self, task: asyncio.Future) -> None:
        self._busy -= 1
        if not task.cancelled():
            task.exception()  # seen here when the request was cancelled; re-raised by shield
