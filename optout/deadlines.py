"""Turkish business days, the İYS 3-business-day upload deadline, and İYS date formats."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

# İYS dates are GMT+3; Turkey has stayed on +03 all year since 2016.
TZ = ZoneInfo("Europe/Istanbul")
IYS_UPLOAD_BUSINESS_DAYS = 3
IYS_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# Day-first is the Turkish habit; ISO-8601 (with or without offset) is tried after these.
_CONSENT_DATE_FORMATS = (
    IYS_DATE_FORMAT,
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d/%m/%Y",
)
_END_OF_DAY = time(23, 59, 59)


@functools.lru_cache(maxsize=64)
def _public_holidays(year: int) -> frozenset[date]:
    # The holidays package files the half-day eves (arife, "from 1pm", e.g. 2026-03-19) under
    # the "half_day" category, which the default ("public") leaves out. So an arife counts as a
    # business day: counting it can only make a deadline earlier, never later.
    return frozenset(holidays.country_holidays("TR", years=year))


def is_business_day(d: date) -> bool:
    """Monday to Friday and not a full-day Turkish public holiday."""
    if isinstance(d, datetime):
        # Which day a datetime falls on depends on its zone; make the caller choose.
        raise TypeError("is_business_day takes a date, not a datetime")
    return d.weekday() < 5 and d not in _public_holidays(d.year)


def business_days_after(start: datetime, n: int) -> datetime:
    """End (23:59:59 Istanbul) of the n-th business day after the Istanbul day of `start`, in UTC.

    n = 0 is the end of the start day itself. Naive datetimes are rejected with ValueError.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    day = _require_aware(start).astimezone(TZ).date()
    remaining = n
    while remaining:
        day += timedelta(days=1)
        if is_business_day(day):
            remaining -= 1
    return datetime.combine(day, _END_OF_DAY, TZ).astimezone(UTC)


def iys_upload_deadline(collected_at: datetime) -> datetime:
    """The latest time a consent collected outside İYS may be uploaded to it (UTC)."""
    return business_days_after(collected_at, IYS_UPLOAD_BUSINESS_DAYS)


def format_iys_date(dt: datetime) -> str:
    """Format as "YYYY-MM-DD HH:mm:ss" in GMT+3, the İYS consentDate format."""
    return _require_aware(dt).astimezone(TZ).strftime(IYS_DATE_FORMAT)


def parse_consent_date(text: str) -> datetime | None:
    """A consent date from an import or the İYS API as aware UTC; None if it is not a date.

    Naive inputs are Istanbul time.
    """
    text = text.strip()
    if not text:
        return None
    parsed = _parse_known_format(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=TZ)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. "0001-01-01" in +03 falls before year 1 in UTC
        return None


def _parse_known_format(text: str) -> datetime | None:
    for fmt in _CONSENT_DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _require_aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: give a time zone")
    return dt
