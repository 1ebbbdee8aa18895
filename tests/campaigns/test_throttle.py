"""Line pacing on a simulated clock: exact token buckets, back-off, caps, warm-up, quiet hours."""

import heapq
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.throttle import (
    DEFAULT_WARMUP,
    FREQUENCY_WINDOW,
    WHATSAPP_TIERS,
    Aimd,
    LineThrottle,
    PairLimiter,
    RollingCap,
    TokenBucket,
    frequency_capped,
    quiet_hours_wait,
    warmup_limit,
    warmup_rate,
)

ISTANBUL = "Europe/Istanbul"


def run_bucket(bucket: TokenBucket, start: float, seconds: float, n: float = 1) -> float:
    """A caller that sleeps exactly wait_time and then takes; returns tokens taken in time."""
    clock, taken, end = start, 0.0, start + seconds
    while True:
        clock += bucket.wait_time(clock, n)
        if clock > end:
            return taken
        bucket.take(clock, n)
        taken += n


def assert_exact(taken: float, rate: float, seconds: float, burst: float) -> None:
    slack = 1e-9 * (rate * seconds + burst)  # rounding in the bound itself, not in the bucket
    assert taken <= rate * seconds + burst + slack
    assert taken >= rate * seconds - 1


def local_ts(tz: str, *parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(tz)).timestamp()


# --- TokenBucket ------------------------------------------------------------------------------

def test_bucket_default_burst_is_half_a_second_of_messages():
    assert TokenBucket(80).burst == 40
    assert TokenBucket(0.5).burst == 1
    assert TokenBucket(80, burst=5).burst == 5


def test_bucket_80_per_second_over_60_seconds_sends_4800_plus_burst():
    taken = run_bucket(TokenBucket(80, now=0.0), 0.0, 60.0)
    assert taken == 80 * 60 + 40


def test_bucket_a_million_per_second():
    taken = run_bucket(TokenBucket(1_000_000, burst=1, now=5.0), 5.0, 0.02)
    assert_exact(taken, 1_000_000, 0.02, 1)
    # The dispatcher claims batches; a default-burst million-per-second line over a whole second.
    bucket = TokenBucket(1_000_000, now=0.0)
    assert_exact(run_bucket(bucket, 0.0, 1.0, n=10_000), 1_000_000, 1.0, bucket.burst)


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 1_000_000), burst=st.floats(1, 64), start=st.floats(0, 10_000))
def test_bucket_is_exact_over_a_long_run(rate, burst, start):
    seconds = min(60.0, 3_000 / rate)
    taken = run_bucket(TokenBucket(rate, burst=burst, now=start), start, seconds)
    assert_exact(taken, rate, seconds, burst)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 4_000), start=st.floats(0, 10_000))
def test_bucket_with_default_burst_is_exact(rate, start):
    seconds = min(60.0, 3_000 / rate)
    bucket = TokenBucket(rate, now=start)
    assert_exact(run_bucket(bucket, start, seconds), rate, seconds, bucket.burst)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 10_000), times_burst=st.floats(0.1, 5))
def test_bucket_serves_batches_larger_than_its_burst(rate, times_burst):
    bucket = TokenBucket(rate, now=0.0)
    n = max(1.0, bucket.burst * times_burst)
    seconds = 200 * n / rate
    taken = run_bucket(bucket, 0.0, seconds, n=n)
    assert taken <= rate * seconds + max(bucket.burst, n) + 1e-6 * taken
    assert taken >= rate * seconds - n


def test_bucket_refuses_to_go_negative():
    bucket = TokenBucket(10, burst=2, now=0.0)
    bucket.take(0.0, 2)
    assert not bucket.try_take(0.0)
    with pytest.raises(ValueError):
        bucket.take(0.05)
    assert bucket.wait_time(0.05) == pytest.approx(0.05)
    assert bucket.try_take(0.1)


def test_bucket_set_rate_keeps_tokens_capped_at_new_burst():
    bucket = TokenBucket(100, now=0.0)  # burst 50
    bucket.take(0.0, 10)
    bucket.set_rate(10, 0.0)  # burst 5: 40 saved tokens shrink to 5
    assert bucket.burst == 5
    assert bucket.wait_time(0.0, 5) == 0
    bucket.take(0.0, 5)
    assert bucket.wait_time(0.0) == pytest.approx(0.1)
    bucket.set_rate(1000, 0.05)  # the half token saved so far is kept
    assert bucket.wait_time(0.05) == pytest.approx(0.0005)


def test_bucket_wait_lands_on_a_clock_value_where_take_succeeds():
    # Epoch-sized clocks round coarsely; the wait still moves the caller's clock far enough.
    clock = 1_700_000_000.0
    bucket = TokenBucket(3, burst=1, now=clock)
    for _ in range(1_000):
        clock += bucket.wait_time(clock)
        bucket.take(clock)


# --- Aimd --------------------------------------------------------------------------------------

def test_aimd_halves_on_429_and_honours_retry_after():
    aimd = Aimd(80)
    aimd.on_rate_limited(retry_after=5, now=100.0)
    assert aimd.rate == 40
    assert aimd.paused_until == 105.0
    aimd.on_rate_limited(retry_after=1, now=103.0)  # a shorter retry_after never shortens a pause
    assert aimd.paused_until == 105.0


def test_aimd_in_flight_429s_halve_only_once():
    aimd = Aimd(80)
    for i in range(40):
        aimd.on_rate_limited(retry_after=2, now=10.0 + i / 100)
    assert aimd.rate == 40
    aimd.on_rate_limited(retry_after=2, now=12.5)
    assert aimd.rate == 20


def test_aimd_never_below_min_rate():
    aimd = Aimd(80, min_rate=5)
    for i in range(20):
        aimd.on_rate_limited(retry_after=0, now=10.0 * i)
    assert aimd.rate == 5


def test_aimd_recovers_within_seconds_after_the_pause():
    # Was a linear climb of max/60 per second (a 10 s storm cost 2.4x the campaign's time):
    # now the ceiling doubles per second of sending once the pause is over.
    aimd = Aimd(60)
    aimd.on_rate_limited(retry_after=10, now=0.0)
    aimd.on_success(5.0)  # an answer to a request sent before the pause earns nothing
    assert aimd.rate == 30
    aimd.on_success(10.5)
    assert aimd.rate == pytest.approx(30 * 2 ** 0.5)
    aimd.on_success(11.0)
    assert aimd.rate == 60  # one second after the pause: back at full speed


def test_aimd_recovers_from_the_minimum_to_80_per_second_in_under_7_seconds():
    aimd = Aimd(80)
    for i in range(10):
        aimd.on_rate_limited(retry_after=0, now=float(i) * 2)
    assert aimd.rate == 1
    start = aimd.paused_until
    clock = start
    while aimd.rate < 80:
        clock += 0.01
        aimd.on_success(clock)
    assert clock - start < 7


def test_aimd_rate_at_projects_without_changing():
    aimd = Aimd(80)
    aimd.on_rate_limited(retry_after=1, now=0.0)
    assert aimd.rate_at(0.5) == 40  # still paused
    assert aimd.rate_at(1.5) == pytest.approx(40 * 2 ** 0.5)
    assert aimd.rate == 40
    assert aimd.rate_at(1e9) == 80  # no overflow however long the line was idle


def test_aimd_custom_recovery_and_factor():
    aimd = Aimd(100, recovery_per_second=1.5, decrease_factor=0.8)
    aimd.on_rate_limited(0, 0.0)
    assert aimd.rate == 80
    aimd.on_success(0.5)
    assert aimd.rate == pytest.approx(80 * 1.5 ** 0.5)


def test_aimd_refuses_a_recovery_that_does_not_grow():
    with pytest.raises(ValueError):
        Aimd(10, recovery_per_second=1.0)


# --- RollingCap --------------------------------------------------------------------------------

def test_rolling_cap_admits_the_first_n_unique_recipients():
    cap = RollingCap(3)
    for i, who in enumerate(["a", "b", "c"]):
        assert cap.admits(who, float(i))
        cap.record(who, float(i))
    assert not cap.admits("d", 10.0)
    assert cap.next_free_at(10.0) == 86_400.0


def test_rolling_cap_readmits_known_recipients():
    cap = RollingCap(2)
    cap.record("a", 0.0)
    cap.record("b", 1.0)
    assert cap.admits("a", 100.0)
    cap.record("a", 100.0)
    assert len(cap) == 2


def test_rolling_cap_admits_again_after_the_window():
    cap = RollingCap(2, window=100.0)
    cap.record("a", 0.0)
    cap.record("b", 10.0)
    cap.record("a", 50.0)  # a is counted again from 50
    assert not cap.admits("c", 99.0)
    assert cap.next_free_at(99.0) == 110.0  # b leaves first; a was seen again
    assert cap.admits("c", 110.0)


def test_rolling_cap_memory_follows_the_window():
    cap = RollingCap(1_000, window=10.0)
    for i in range(10_000):
        cap.record(f"r{i}", i / 10)
    assert len(cap) == 100


def test_rolling_cap_unlimited_stores_nothing():
    cap = RollingCap(None)
    for i in range(100):
        cap.record(f"r{i}", 0.0)
        assert cap.admits(f"x{i}", 0.0)
    assert len(cap) == 0
    assert cap.next_free_at(7.0) == 7.0


def test_rolling_cap_seed_rebuilds_after_restart():
    cap = RollingCap(WHATSAPP_TIERS[0])
    cap.seed([(f"+90555{i:07d}", 1_000.0 + i) for i in range(250)][::-1])
    assert not cap.admits("+905550000999", 2_000.0)
    assert cap.admits("+905550000007", 2_000.0)
    assert cap.next_free_at(2_000.0) == 1_000.0 + 86_400.0


# --- tiers, warm-up, frequency -----------------------------------------------------------------

def test_whatsapp_tiers():
    assert [warmup_limit(i) for i in range(5)] == [250, 2_000, 10_000, 100_000, None]
    assert warmup_limit(9) is None
    with pytest.raises(ValueError):
        warmup_limit(-1)


def test_warmup_schedule_is_piecewise_constant():
    assert DEFAULT_WARMUP[0] == (0, 0.1)
    assert warmup_rate(80, 0) == 8
    assert warmup_rate(80, 0.99) == 8
    assert warmup_rate(80, 1) == 20
    assert warmup_rate(80, 2.5) == 20
    assert warmup_rate(80, 3) == 40
    assert warmup_rate(80, 7) == 80
    assert warmup_rate(80, 400) == 80


def test_warmup_is_at_least_one_message_per_second():
    assert warmup_rate(5, 0) == 1
    assert warmup_rate(0.5, 0) == 0.5  # never above the line's own maximum
    assert warmup_rate(100, 2, schedule=[(0, 0.01), (2, 0.3)]) == 30


def test_frequency_cap_three_per_seven_days():
    assert FREQUENCY_WINDOW == 7 * 86_400
    assert not frequency_capped(2)
    assert frequency_capped(3)
    assert frequency_capped(1, cap=1)


# --- PairLimiter -------------------------------------------------------------------------------

def test_pair_limiter_six_seconds_per_recipient():
    pairs = PairLimiter(6.0)
    assert pairs.wait_time("a", 0.0) == 0
    pairs.record("a", 0.0)
    assert pairs.wait_time("a", 1.0) == pytest.approx(5.0)
    assert pairs.wait_time("b", 1.0) == 0
    assert pairs.wait_time("a", 6.0) == 0


def test_pair_limiter_forgets_recipients_after_the_interval():
    pairs = PairLimiter(1.0)
    for i in range(10_000):
        pairs.record(f"chat{i}", i / 100)
    assert len(pairs) <= 101


# --- quiet hours -------------------------------------------------------------------------------

def test_quiet_hours_istanbul_edges():
    assert quiet_hours_wait(local_ts(ISTANBUL, 2024, 6, 1, 8, 59), ISTANBUL) == 60
    assert quiet_hours_wait(local_ts(ISTANBUL, 2024, 6, 1, 9, 0), ISTANBUL) == 0
    assert quiet_hours_wait(local_ts(ISTANBUL, 2024, 6, 1, 20, 59), ISTANBUL) == 0
    assert quiet_hours_wait(local_ts(ISTANBUL, 2024, 6, 1, 21, 0), ISTANBUL) == 12 * 3600
    assert quiet_hours_wait(local_ts(ISTANBUL, 2024, 6, 1, 0, 30), ISTANBUL) == 8.5 * 3600


def test_quiet_hours_window_crossing_midnight():
    def wait(hour: int, minute: int = 0) -> float:
        now = local_ts(ISTANBUL, 2024, 6, 1, hour, minute)
        return quiet_hours_wait(now, ISTANBUL, start_hour=22, end_hour=6)

    assert wait(23) == 0
    assert wait(0) == 0
    assert wait(5, 59) == 0
    assert wait(6) == 16 * 3600
    assert wait(21, 59) == 60


def test_quiet_hours_follow_dst():
    # Berlin springs forward on 2024-03-31: 00:00 to 09:00 local is only 8 hours.
    midnight = local_ts("Europe/Berlin", 2024, 3, 31, 0, 0)
    assert quiet_hours_wait(midnight, "Europe/Berlin") == 8 * 3600
    # New York skips 02:00 on 2024-03-10; a window opening at 02:00 opens when clocks hit 03:00.
    now = local_ts("America/New_York", 2024, 3, 10, 1, 30)
    assert quiet_hours_wait(now, "America/New_York", start_hour=2) == 1800


@settings(max_examples=200, deadline=None)
@given(now=st.floats(1.6e9, 1.9e9), start=st.integers(0, 23), end=st.integers(0, 24),
       tz=st.sampled_from([ISTANBUL, "Europe/Berlin", "America/New_York", "Asia/Tokyo"]))
def test_quiet_hours_wait_ends_inside_the_window(now, start, end, tz):
    wait = quiet_hours_wait(now, tz, start, end)
    assert 0 <= wait <= 2 * 86_400
    assert quiet_hours_wait(now + wait, tz, start, end) == 0
    if wait > 0:
        assert quiet_hours_wait(now + wait - 1, tz, start, end) > 0


# --- LineThrottle ------------------------------------------------------------------------------

def test_line_effective_rate_is_the_provider_maximum():
    line = LineThrottle(1000, now=0.0, provider_max_rate=80)
    assert line.effective_rate(0.0) == 80


def test_sandbox_line_has_no_provider_limits():
    line = LineThrottle(500, now=0.0)
    assert line.effective_rate(0.0) == 500
    assert all(line.admits(f"r{i}", 0.0) for i in range(10_000))
    line.sent("r1", 0.0)
    assert line.wait_time(0.0, "r1") == 0


def test_line_warmup_rises_with_age():
    line = LineThrottle(1000, now=0.0, provider_max_rate=80, warmup_age_days=0.5)
    assert line.effective_rate(0.0) == 8
    assert line.effective_rate(0.5 * 86_400) == 20
    assert line.effective_rate(7 * 86_400) == 80


def test_line_rate_limit_pauses_and_halves_from_what_it_was_sending():
    line = LineThrottle(1000, now=0.0, provider_max_rate=80, warmup_age_days=1)
    line.rate_limited(retry_after=30, now=10.0)
    assert line.effective_rate(10.0) == 10  # half the warm-up rate of 20, not half of 80
    assert line.wait_time(10.0) == 30
    assert line.wait_time(40.0) == 0


def test_line_pair_interval_and_daily_cap():
    line = LineThrottle(80, now=0.0, provider_max_rate=80, pair_interval=6,
                        daily_unique_limit=2)
    line.sent("a", 0.0)
    assert line.wait_time(0.0, "a") == 6
    assert line.wait_time(0.0, "b") == 0
    line.sent("b", 0.0)
    assert not line.admits("c", 1.0)
    assert line.admits("a", 1.0)
    assert line.rolling_cap.next_free_at(1.0) == 86_400.0


def test_line_wait_time_is_never_infinite():
    line = LineThrottle(10, now=0.0, daily_unique_limit=1)
    line.sent("a", 0.0)
    assert not line.admits("b", 0.0)
    assert math.isfinite(line.wait_time(0.0, "b"))


def test_twenty_lines_at_80_per_second_for_a_minute():
    lines = [LineThrottle(1000, now=0.0, provider_max_rate=80, pair_interval=6,
                          daily_unique_limit=10_000) for _ in range(20)]
    sends: list[list[float]] = [[] for _ in lines]
    recipients = [f"+90555{i:07d}" for i in range(600)]  # each comes round every 7.5 s
    queue = [(0.0, index) for index in range(len(lines))]
    while queue:
        clock, index = heapq.heappop(queue)
        line, times = lines[index], sends[index]
        recipient = recipients[len(times) % len(recipients)]
        wait = line.wait_time(clock, recipient)
        if wait > 0:
            if clock + wait <= 60.0:
                heapq.heappush(queue, (clock + wait, index))
            continue
        assert line.admits(recipient, clock)
        line.sent(recipient, clock)
        times.append(clock)
        heapq.heappush(queue, (clock, index))
    for times in sends:
        assert len(times) >= 0.98 * 80 * 60
        assert bucket_violations(times, rate=80, burst=40) == 0


def bucket_violations(times: list[float], rate: float, burst: float) -> int:
    """Replay send times through a textbook bucket; count sends it would have refused."""
    tokens, last, violations = burst, times[0], 0
    for at in times:
        tokens = min(burst, tokens + (at - last) * rate)
        last = at
        if tokens < 1 - 1e-9:
            violations += 1
        tokens -= 1
    return violations


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["send", "429"]), st.floats(0, 3),
                                st.integers(0, 20)), min_size=1, max_size=200),
       warmup=st.one_of(st.none(), st.floats(0, 10)))
def test_line_never_refuses_a_send_it_cleared(steps, warmup):
    line = LineThrottle(1000, now=0.0, provider_max_rate=80, pair_interval=6,
                        warmup_age_days=warmup)
    clock = 0.0
    for action, retry_after, who in steps:
        if action == "429":
            line.rate_limited(retry_after, clock)
            continue
        recipient = f"r{who}"
        clock += line.wait_time(clock, recipient)
        assert line.wait_time(clock, recipient) == 0
        line.sent(recipient, clock)


# --- provider errors and the line's condition ---------------------------------------------------

def test_provider_errors_back_off_doubling_per_wave_up_to_the_maximum():
    line = LineThrottle(80, now=0.0, backoff_base=2, backoff_max=10)
    line.provider_failed(0.0)
    assert line.paused_for(0.0) == 2
    for i in range(30):  # answers to requests already in flight: the same wave
        line.provider_failed(0.0 + i / 100)
    assert line.failures == 1 and line.paused_for(0.0) == 2
    line.provider_failed(2.0)  # the first try after the pause failed too
    assert line.failures == 2 and line.paused_for(2.0) == 4
    line.provider_failed(6.0)
    line.provider_failed(14.0)
    assert line.paused_for(14.0) == 10  # capped
    line.provider_took()
    assert line.failures == 0


def test_provider_errors_slow_the_line_like_a_429_and_honour_retry_after():
    line = LineThrottle(80, now=0.0)
    line.provider_failed(0.0, retry_after=9)
    assert line.effective_rate(0.0) == 40
    assert line.paused_for(0.0) == 9
    assert line.wait_time(0.0) == 9


def test_condition_says_why_the_line_is_slow_and_clears_when_normal():
    line = LineThrottle(80, now=0.0)
    assert line.condition(0.0) is None
    line.rate_limited(retry_after=1, now=0.0)
    assert line.condition(0.5) == "provider_rate_limited: slowed to 40/s"
    line.sent("a", 1.5)
    assert line.condition(1.5) == "provider_rate_limited: slowed to 57/s"
    assert line.condition(3.0) is None  # full speed again within seconds
    line.sent("c", 10.0)
    line.provider_failed(10.0)
    assert line.condition(10.0) == "provider_errors: retrying, slowed to 40/s"
    line.provider_took()
    line.sent("b", 12.0)
    assert line.condition(12.0) == "provider_errors: slowed to 40/s"
    assert line.condition(14.0) is None


def test_a_message_the_provider_did_not_take_starts_no_pair_interval():
    line = LineThrottle(80, now=0.0, pair_interval=6)
    line.sent("a", 0.0)
    assert line.wait_time(0.1, "a") > 5
    line.not_taken("a")  # a 5xx: WhatsApp's 6 s per recipient never began
    assert line.wait_time(0.1, "a") == 0


def test_a_batch_takes_what_single_sends_would():
    """allowance/starting/took (the dispatcher's batches) pace like one sent() per message:
    the same tokens, each recipient's interval counted before the next of the batch."""
    batched = LineThrottle(10, now=0.0, pair_interval=6.0)
    single = LineThrottle(10, now=0.0, pair_interval=6.0)
    room = batched.allowance(0.0)
    assert room == int(single.bucket.available(0.0)) >= 2
    for recipient in ("a", "b"):
        batched.starting(recipient, 0.0)
        single.sent(recipient, 0.0)
    batched.took(2, 0.0)
    assert batched.allowance(0.0) == room - 2 == int(single.bucket.available(0.0))
    assert batched.pair_wait("a", 0.0) == 6.0 and batched.pair_wait("c", 0.0) == 0.0
    batched.rate_limited(5.0, 0.0)
    assert batched.allowance(1.0) == 0  # nothing starts during a provider back-off
