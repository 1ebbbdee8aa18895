"""Per-line send pacing (rate, back-off, caps, warm-up, quiet hours); pure: every call takes now."""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

DAY = 86400.0
# WhatsApp's unique users per rolling 24 h by messaging tier; None is unlimited.
WHATSAPP_TIERS: tuple[int | None, ...] = (250, 2_000, 10_000, 100_000, None)
# (line age in days, fraction of the line's maximum rate), piecewise constant.
DEFAULT_WARMUP: tuple[tuple[float, float], ...] = ((0, 0.1), (1, 0.25), (3, 0.5), (7, 1.0))
FREQUENCY_WINDOW = 7 * 86400
# Answers to requests already in flight when a 429 arrived say nothing new about the provider's
# limit; halving once per answer would collapse a line to min_rate within one batch.
DECREASE_COOLDOWN = 1.0
# After a back-off the ceiling doubles for every second of sending (TCP's slow start): a line
# halved by a 429 is back to full speed in one second, one at 1 msg/s reaches 80/s in about 6 s
# (a linear climb of max/60 per second made a 10 s storm cost 2.4x the campaign's time).
RECOVERY_PER_SECOND = 2.0
# Provider errors (5xx, unreachable): the line waits 2, 4, 8, 16 s … (at most 30 s) after each
# wave of failures, so the same message is tried 5 times within about 30 s.
BACKOFF_BASE = 2.0
BACKOFF_MAX = 30.0


def _positive(value: float, name: str) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _until(deadline: float, now: float) -> float:
    """Seconds from now to deadline, rounded up so that `now + result >= deadline` in floats."""
    wait = deadline - now
    if wait <= 0:
        return 0.0
    # A caller that adds the wait to its clock must land on the deadline, not one ulp short,
    # or it would ask again and sleep for a wait too small to move its clock.
    step = math.ulp(abs(now) + wait + 1.0)
    while now + wait < deadline:
        wait += step
        step *= 2
    return wait


class TokenBucket:
    """Tokens refill at `rate` per second up to `burst`; a message takes one."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0,
                 headroom: float = 0.0) -> None:
        self._fixed_burst = None if burst is None else _positive(burst, "burst")
        self._headroom = headroom
        self._rate = _positive(rate, "rate")
        self._burst = self._burst_for(self._rate)
        self._tokens = self._burst
        self._last = now

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def set_rate(self, rate: float, now: float) -> None:
        self._tokens = self._available(now, 0)
        self._last = max(self._last, now)
        self._rate = _positive(rate, "rate")
        self._burst = self._burst_for(self._rate)
        self._tokens = min(self._tokens, self._burst)

    def wait_time(self, now: float, n: float = 1) -> float:
        if self._ready(now, n):
            return 0.0
        start = max(now, self._last)
        wait = (start - now) + (n - self._available(start, n)) / self._rate
        # Rounding may leave now + wait a hair before the refill; step up (doubling, so it ends
        # quickly) until the caller's own clock arithmetic lands where take() succeeds.
        step = math.ulp(abs(now) + wait + 1.0)
        while not self._ready(now + wait, n):
            wait += step
            step *= 2
        return wait

    def take(self, now: float, n: float = 1) -> None:
        if not self._ready(now, n):
            raise ValueError(f"{n} tokens are not available yet; wait {self.wait_time(now, n)} s")
        self._tokens = self._available(now, n) - n
        self._last = max(self._last, now)

    def try_take(self, now: float, n: float = 1) -> bool:
        if not self._ready(now, n):
            return False
        self.take(now, n)
        return True

    def available(self, now: float) -> float:
        """Tokens that may be taken at `now` (at most the burst)."""
        return self._available(now, 1)

    def _burst_for(self, rate: float) -> float:
        # Half a second of messages at most, so a line never floods the provider at once.
        if self._fixed_burst is not None:
            return self._fixed_burst
        return max(1.0, rate * 0.5 - self._headroom)

    def _available(self, now: float, n: float) -> float:
        # A request larger than the burst may save up past it, else it could never be served.
        refill = max(0.0, now - self._last) * self._rate
        return min(max(self._burst, n), self._tokens + refill)

    def _ready(self, now: float, n: float) -> bool:
        if n < 0:
            raise ValueError(f"cannot take a negative number of tokens ({n})")
        return self._available(now, n) >= n


class Aimd:
    """A rate ceiling that halves on provider rate limits and errors, and grows back
    multiplicatively once the pause is over (so not strictly additive: recovery takes seconds)."""

    def __init__(self, max_rate: float, min_rate: float = 1.0,
                 recovery_per_second: float = RECOVERY_PER_SECOND,
                 decrease_factor: float = 0.5) -> None:
        self.max_rate = _positive(max_rate, "max_rate")
        self.min_rate = min(_positive(min_rate, "min_rate"), self.max_rate)
        if not (recovery_per_second > 1 and math.isfinite(recovery_per_second)):
            raise ValueError(f"recovery_per_second must be > 1, got {recovery_per_second!r}")
        self.recovery_per_second = float(recovery_per_second)
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {decrease_factor!r}")
        self.decrease_factor = decrease_factor
        self.paused_until = -math.inf
        self._rate = self.max_rate
        self._last = -math.inf
        self._next_decrease = -math.inf

    @property
    def rate(self) -> float:
        return self._rate

    def rate_at(self, now: float) -> float:
        """The ceiling a success at `now` would leave (the rate as of now, without sending)."""
        if now <= self._last or self._rate >= self.max_rate:
            return self._rate
        # The exponent is capped: past 64 doublings any rate is at its maximum anyway.
        growth = self.recovery_per_second ** min(now - self._last, 64.0)
        return min(self.max_rate, self._rate * growth)

    def on_rate_limited(self, retry_after: float, now: float) -> None:
        pause_end = now + max(0.0, retry_after)
        if now >= self._next_decrease:
            self._rate = max(self.min_rate, self._rate * self.decrease_factor)
            self._next_decrease = max(now + DECREASE_COOLDOWN, pause_end)
        self.paused_until = max(self.paused_until, pause_end)
        # Recovery is earned by sending, so it starts when the pause ends, not during it.
        self._last = max(self._last, self.paused_until)

    def on_success(self, now: float) -> None:
        if now <= self._last:
            return
        self._rate = self.rate_at(now)
        self._last = now

    def clamp(self, ceiling: float) -> None:
        """Lower the rate to what the line's other limits allow, so a decrease bites at once."""
        self._rate = min(self._rate, max(ceiling, self.min_rate))


class _RecentlySeen:
    """When each recipient was last seen, forgetting those last seen at or before a horizon."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, recipient: str) -> bool:
        return recipient in self._at

    def get(self, recipient: str) -> float | None:
        return self._at.get(recipient)

    def discard(self, recipient: str) -> None:
        # Its queue entry stays and is skipped as stale by forget_until.
        self._at.pop(recipient, None)

    def oldest(self) -> float | None:
        return self._order[0][0] if self._order else None

    def add(self, recipient: str, now: float) -> None:
        # An out-of-order time is moved forward: expiry needs a sorted deque, and a later time
        # only makes the limits stricter.
        if self._order:
            now = max(now, self._order[-1][0])
        self._at[recipient] = now
        self._order.append((now, recipient))

    def forget_until(self, horizon: float) -> None:
        while self._order:
            at, recipient = self._order[0]
            live = self._at.get(recipient) == at
            if live and at > horizon:
                return
            self._order.popleft()
            if live:
                del self._at[recipient]


class RollingCap:
    """Unique recipients per rolling window (WhatsApp's 24 h messaging limit)."""

    def __init__(self, limit: int | None, window: float = DAY) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1 or None, got {limit!r}")
        self.limit = limit
        self.window = _positive(window, "window")
        self._seen = _RecentlySeen()

    def __len__(self) -> int:
        """Recipients counted in the window as of the last call."""
        return len(self._seen)

    def admits(self, recipient: str, now: float) -> bool:
        if self.limit is None:
            return True
        self._seen.forget_until(now - self.window)
        return recipient in self._seen or len(self._seen) < self.limit

    def record(self, recipient: str, now: float) -> None:
        if self.limit is None:
            return
        self._seen.forget_until(now - self.window)
        self._seen.add(recipient, now)

    def next_free_at(self, now: float) -> float:
        if self.limit is None:
            return now
        self._seen.forget_until(now - self.window)
        oldest = self._seen.oldest()
        if len(self._seen) < self.limit or oldest is None:
            return now
        return oldest + self.window

    def seed(self, entries: Iterable[tuple[str, float]]) -> None:
        """Rebuild after a restart from (recipient, sent_at) pairs, e.g. read from the outbox."""
        for recipient, at in sorted(entries, key=lambda entry: entry[1]):
            self.record(recipient, at)


def warmup_limit(tier_index: int) -> int | None:
    if tier_index < 0:
        raise ValueError(f"tier_index must not be negative, got {tier_index}")
    return WHATSAPP_TIERS[min(tier_index, len(WHATSAPP_TIERS) - 1)]


def warmup_rate(max_rate: float, line_age_days: float,
                schedule: Sequence[tuple[float, float]] = DEFAULT_WARMUP) -> float:
    ordered = sorted(schedule)
    fraction = ordered[0][1] if ordered else 1.0
    for age, share in ordered:
        if line_age_days >= age:
            fraction = share
    # At least 1 msg/s so a brand-new line still moves, but never above its maximum.
    return min(max_rate, max(1.0, max_rate * fraction))


class PairLimiter:
    """Minimum interval between two messages to the same recipient on one line."""

    def __init__(self, min_interval: float) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must not be negative, got {min_interval!r}")
        self.min_interval = float(min_interval)
        self._seen = _RecentlySeen()

    def __len__(self) -> int:
        """Recipients still inside their interval as of the last call."""
        return len(self._seen)

    def wait_time(self, recipient: str, now: float) -> float:
        self._seen.forget_until(now - self.min_interval)
        last = self._seen.get(recipient)
        return 0.0 if last is None else _until(last + self.min_interval, now)

    def record(self, recipient: str, now: float) -> None:
        self._seen.forget_until(now - self.min_interval)
        if self.min_interval > 0:
            self._seen.add(recipient, now)

    def forget(self, recipient: str) -> None:
        """The last message to `recipient` never reached the provider: no interval to keep."""
        self._seen.discard(recipient)


def quiet_hours_wait(now: float, tz: str, start_hour: int = 9, end_hour: int = 21) -> float:
    """0 inside the local sending window [start_hour, end_hour), else seconds until it opens."""
    if not (0 <= start_hour <= 23 and 0 <= end_hour <= 24):
        raise ValueError(f"hours out of range: {start_hour}, {end_hour}")
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now, zone)
    if _in_window(local.hour, start_hour, end_hour):
        return 0.0
    for days in range(3):
        day = local.date() + timedelta(days=days)
        # Wall-clock construction, so a DST shift moves the opening with local time; an hour
        # skipped by DST resolves (fold=0) to the moment the clock jumps past it.
        opens = datetime(day.year, day.month, day.day, start_hour, tzinfo=zone).timestamp()
        if opens > now:
            return _until(opens, now)
    raise AssertionError("a daily window always opens within two days")


def _in_window(hour: int, start_hour: int, end_hour: int) -> bool:
    if start_hour == end_hour:
        return True  # no quiet hours at all
    if start_hour < end_hour:
        return start_hour <= hour < end_hour
    return hour >= start_hour or hour < end_hour  # the window crosses midnight


def frequency_capped(sent_in_window: int, cap: int = 3) -> bool:
    """True when a recipient already got `cap` commercial messages within FREQUENCY_WINDOW."""
    return sent_in_window >= cap


PROVIDER_HEADROOM = 1.0


def _per_second(rate: float) -> str:
    return f"{rate:.1f}/s" if rate < 10 else f"{rate:.0f}/s"


class LineThrottle:
    """Everything that paces one sending line, except quiet hours and frequency caps."""

    def __init__(self, rate: float, *, now: float, provider_max_rate: float | None = None,
                 daily_unique_limit: int | None = None, pair_interval: float | None = None,
                 warmup_age_days: float | None = None, backoff_base: float = BACKOFF_BASE,
                 backoff_max: float = BACKOFF_MAX) -> None:
        rate = _positive(rate, "rate")
        provider = rate if provider_max_rate is None else _positive(provider_max_rate,
                                                                    "provider_max_rate")
        self._ceiling = min(rate, provider)
        # Warm-up is the provider's trust in the number, so it scales the provider's maximum.
        self._warmup_base = provider
        self._born = None if warmup_age_days is None else now - warmup_age_days * DAY
        self.aimd = Aimd(self._ceiling, min_rate=min(1.0, self._ceiling))
        self.rolling_cap = RollingCap(daily_unique_limit)
        self.pairs = PairLimiter(pair_interval or 0.0)
        # One message less of burst than the provider allows: both buckets then refill in step
        # with ours a token behind, so jitter between our clock and theirs never costs a 429.
        self.bucket = TokenBucket(self.effective_rate(now), now=now, headroom=PROVIDER_HEADROOM)
        self.backoff_base = _positive(backoff_base, "backoff_base")
        self.backoff_max = max(self.backoff_base, _positive(backoff_max, "backoff_max"))
        self.failures = 0  # waves of provider errors since the provider last took a message
        self._slowed_by = "provider_rate_limited"

    def effective_rate(self, now: float) -> float:
        return min(self._limit(now), self.aimd.rate)

    def wait_time(self, now: float, recipient: str | None = None) -> float:
        self._sync(now)
        waits = [_until(self.aimd.paused_until, now), self.bucket.wait_time(now)]
        if recipient is not None:
            waits.append(self.pairs.wait_time(recipient, now))
        return max(waits)

    def admits(self, recipient: str, now: float) -> bool:
        return self.rolling_cap.admits(recipient, now)

    def paused_for(self, now: float) -> float:
        """Seconds left of a provider's back-off (429 or errors); 0 when the line may send."""
        return _until(self.aimd.paused_until, now)

    def allowance(self, now: float) -> int:
        """How many messages may start at `now` as one batch (whole tokens in the bucket, 0
        while a provider back-off lasts); each recipient's own limits are checked apart
        (pair_wait, admits) and noted (starting) before the batch takes its tokens (took)."""
        self._sync(now)
        if now < self.aimd.paused_until:
            return 0
        return int(self.bucket.available(now))

    def pair_wait(self, recipient: str, now: float) -> float:
        """Seconds until `recipient` may be sent another message on this line."""
        return self.pairs.wait_time(recipient, now)

    def sent(self, recipient: str, now: float, capped: bool = True) -> None:
        """`capped` False: a reply inside the person's 24 h window, which WhatsApp's
        unique-recipient limit does not count."""
        self.starting(recipient, now, capped)
        self.took(1, now)

    def starting(self, recipient: str, now: float, capped: bool = True) -> None:
        """A message to `recipient` starts at `now` (see sent()): its interval and its place
        under the 24 h cap are counted at once, so the next message of a batch sees them."""
        self.pairs.record(recipient, now)
        if capped:
            self.rolling_cap.record(recipient, now)

    def took(self, count: int, now: float) -> None:
        """`count` messages started at `now` (each noted by starting()): their tokens are
        taken at once, so a batch costs one bucket update, not one per message."""
        self._sync(now)
        self.bucket.take(now, count)
        self.aimd.on_success(now)
        self._sync(now)

    def rate_limited(self, retry_after: float, now: float) -> None:
        self._slowed_by = "provider_rate_limited"
        self.aimd.clamp(self._limit(now))
        self.aimd.on_rate_limited(retry_after, now)
        self._sync(now)

    def provider_failed(self, now: float, retry_after: float | None = None) -> None:
        """A provider error (5xx, unreachable, no answer): slowed like a 429, and paused for a
        back-off that doubles with each wave of failures. Answers to requests that were already
        in flight when a wave began arrive during its pause and are the same wave."""
        if now < self.aimd.paused_until and self.failures:
            return
        self.failures += 1
        pause = min(self.backoff_max, self.backoff_base * 2.0 ** min(self.failures - 1, 30))
        self.rate_limited(max(pause, retry_after or 0.0), now)
        self._slowed_by = "provider_errors"

    def not_taken(self, recipient: str) -> None:
        """The provider did not take the message to `recipient` (an error before it): the
        provider's per-recipient interval did not start, so a retry need not wait for it."""
        self.pairs.forget(recipient)

    def provider_took(self) -> None:
        """The provider accepted a message: errors no longer lengthen the back-off."""
        self.failures = 0

    def condition(self, now: float) -> str | None:
        """Why the line sends slower than configured or waits (a campaign's state_reason), or
        None when it runs at its configured rate."""
        rate = min(self._limit(now), self.aimd.rate_at(now))
        if self.failures:
            return f"provider_errors: retrying, slowed to {_per_second(rate)}"
        if now < self.aimd.paused_until or rate < self._limit(now):
            return f"{self._slowed_by}: slowed to {_per_second(rate)}"
        return None

    def _limit(self, now: float) -> float:
        if self._born is None:
            return self._ceiling
        age_days = (now - self._born) / DAY
        return min(self._ceiling, warmup_rate(self._warmup_base, age_days))

    def _sync(self, now: float) -> None:
        rate = self.effective_rate(now)
        if rate != self.bucket.rate:
            self.bucket.set_rate(rate, now)
