"""Turkish business days, the İYS 3-business-day upload deadline, and İYS date formats."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.deadlines import (
    TZ,
    business_days_after,
    format_iys_date,
    is_business_day,
    iys_upload_deadline,
    parse_consent_date,
)


def istanbul(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


def end_of_istanbul_day(year: int, month: int, day: int) -> datetime:
    return istanbul(year, month, day, 23, 59, 59).astimezone(UTC)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 3, 16), True),  # Monday
        (date(2026, 3, 14), False),  # Saturday
        (date(2026, 3, 15), False),  # Sunday
        (date(2026, 1, 1), False),  # New Year's Day, a Thursday
        (date(2026, 4, 23), False),  # National Sovereignty and Children's Day
        (date(2026, 3, 20), False),  # Ramazan Bayramı, a Friday
        (date(2026, 5, 27), False),  # Kurban Bayramı day 1, a Wednesday
        (date(2026, 5, 29), False),  # Kurban Bayramı day 3, a Friday
        # Half-day eves (arife, from 1 pm) stay business days: the package files them under
        # "half_day", not "public".
        (date(2026, 3, 19), True),
        (date(2026, 5, 26), True),
        (date(2026, 10, 28), True),
    ],
)
def test_is_business_day(day, expected):
    assert is_business_day(day) is expected


def test_is_business_day_refuses_a_datetime():
    with pytest.raises(TypeError):
        is_business_day(datetime(2026, 3, 16, tzinfo=UTC))


def test_friday_collection_is_due_the_following_wednesday():
    deadline = iys_upload_deadline(istanbul(2026, 3, 6, 15, 30))
    assert deadline == end_of_istanbul_day(2026, 3, 11)
    assert deadline.tzinfo is UTC
    assert deadline.astimezone(TZ).strftime("%A %H:%M:%S") == "Wednesday 23:59:59"


@pytest.mark.parametrize("day", [7, 8])
def test_weekend_collection_counts_from_monday(day):
    assert iys_upload_deadline(istanbul(2026, 3, day, 10)) == end_of_istanbul_day(2026, 3, 11)


def test_collection_before_kurban_bayrami_skips_the_holidays():
    # Kurban Bayramı 2026: arife Tue 26 May (half day), holidays Wed 27 – Sat 30 May.
    collected = istanbul(2026, 5, 25, 18)
    assert iys_upload_deadline(collected) == end_of_istanbul_day(2026, 6, 2)


def test_collection_before_ramazan_bayrami_skips_the_holiday():
    # Ramazan Bayramı 2026: arife Thu 19 March (half day), holidays Fri 20 – Sun 22 March.
    assert iys_upload_deadline(istanbul(2026, 3, 18, 9)) == end_of_istanbul_day(2026, 3, 24)


def test_the_day_is_taken_in_istanbul_time():
    # 22:30 UTC on Friday is already Saturday 01:30 in Istanbul.
    friday_utc = datetime(2026, 3, 6, 22, 30, tzinfo=UTC)
    assert iys_upload_deadline(friday_utc) == end_of_istanbul_day(2026, 3, 11)
    friday_eve = datetime(2026, 3, 6, 20, 30, tzinfo=UTC)
    assert iys_upload_deadline(friday_eve) == end_of_istanbul_day(2026, 3, 11)
    thursday_utc = datetime(2026, 3, 5, 22, 30, tzinfo=UTC)  # Friday 01:30 in Istanbul
    assert iys_upload_deadline(thursday_utc) == end_of_istanbul_day(2026, 3, 11)


def test_deadline_crosses_the_year_end():
    # Wed 31 Dec 2025 → Fri 2 Jan, Mon 5 Jan, Tue 6 Jan (1 Jan is a holiday).
    assert iys_upload_deadline(istanbul(2025, 12, 31, 12)) == end_of_istanbul_day(2026, 1, 6)


def test_zero_business_days_is_the_end_of_the_same_day():
    assert business_days_after(istanbul(2026, 3, 7, 1), 0) == end_of_istanbul_day(2026, 3, 7)


def test_naive_datetimes_and_negative_counts_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        iys_upload_deadline(datetime(2026, 3, 6, 12))
    with pytest.raises(ValueError, match="naive"):
        format_iys_date(datetime(2026, 3, 6, 12))
    with pytest.raises(ValueError):
        business_days_after(istanbul(2026, 3, 6), -1)


@given(st.datetimes(min_value=datetime(2017, 1, 1), max_value=datetime(2035, 12, 31),
                    timezones=st.just(UTC)), st.integers(min_value=0, max_value=15))
def test_deadline_ends_the_nth_business_day_after_the_start(start, n):
    deadline = business_days_after(start, n)
    local = deadline.astimezone(TZ)
    first = start.astimezone(TZ).date()
    assert (local.hour, local.minute, local.second) == (23, 59, 59)
    assert n == 0 or is_business_day(local.date())
    days = [first + timedelta(days=k) for k in range(1, (local.date() - first).days + 1)]
    assert sum(map(is_business_day, days)) == n


def test_format_iys_date_is_gmt_plus_3():
    assert format_iys_date(datetime(2026, 3, 6, 21, 5, 9, tzinfo=UTC)) == "2026-03-07 00:05:09"
    assert format_iys_date(istanbul(2026, 7, 1, 8, 0, 0, 999999)) == "2026-07-01 08:00:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-20 10:00:00", istanbul(2026, 3, 20, 10)),
        ("2026-03-20", istanbul(2026, 3, 20)),
        ("20.03.2026", istanbul(2026, 3, 20)),
        ("20.03.2026 10:05", istanbul(2026, 3, 20, 10, 5)),
        ("20.03.2026 10:05:07", istanbul(2026, 3, 20, 10, 5, 7)),
        ("20/03/2026", istanbul(2026, 3, 20)),
        ("  2026-03-20 10:00:00 ", istanbul(2026, 3, 20, 10)),
        ("2026-03-20T10:00:00+00:00", datetime(2026, 3, 20, 10, tzinfo=UTC)),
        ("2026-03-20T10:00:00Z", datetime(2026, 3, 20, 10, tzinfo=UTC)),
        ("2026-03-20T10:00:00+03:00", istanbul(2026, 3, 20, 10)),
        ("2026-03-20T10:00:00", istanbul(2026, 3, 20, 10)),
    ],
)
def test_parse_consent_date_formats(text, expected):
    parsed = parse_consent_date(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    ["", "   ", "garbage", "dün", "32.01.2026", "2026-02-30", "30.02.2026", "20.03.26x",
     "2026-03-20 25:00:00", "0001-01-01", "12345"],
)
def test_parse_consent_date_garbage_is_none(text):
    assert parse_consent_date(text) is None


some_times = st.datetimes(
    min_value=datetime(2017, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, TZ, timezone(timedelta(hours=-5, minutes=-30))]),
).map(lambda dt: dt.replace(microsecond=0))


@given(some_times)
def test_format_then_parse_round_trips(dt):
    assert parse_consent_date(format_iys_date(dt)) == dt


@given(some_times)
def test_iso_round_trips(dt):
    assert parse_consent_date(dt.isoformat()) == dt


@given(st.text())
def test_parse_consent_date_never_raises(text):
    parsed = parse_consent_date(text)
    assert parsed is None or parsed.tzinfo is UTC
