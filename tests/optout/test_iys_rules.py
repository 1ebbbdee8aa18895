"""İYS record format and the registry's acceptance rules, as pure functions."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.deadlines import TZ
from optout.iys_rules import (
    DATE_BACKWARDS,
    DATE_IN_FUTURE,
    FIRST_RECORD_RET,
    INVALID_RECIPIENT,
    INVALID_SOURCE,
    KNOWN_SOURCES,
    REPEATED_STATE,
    TOO_OLD,
    IysConsent,
    check,
)

PHONE = "+905321112233"
# Friday 31 October 2025, noon in Istanbul; Wednesday 29 October is Republic Day.
NOW = datetime(2025, 10, 31, 12, 0, tzinfo=TZ)
CODES = {FIRST_RECORD_RET, REPEATED_STATE, DATE_BACKWARDS, DATE_IN_FUTURE, TOO_OLD,
         INVALID_RECIPIENT, INVALID_SOURCE, None}


def consent(status: str = "ONAY", at: datetime = NOW - timedelta(hours=1), **changes) -> IysConsent:
    base = IysConsent(recipient=PHONE, recipient_type="BIREYSEL", type="MESAJ",
                      source="HS_WEB", status=status, consent_date=at)
    return replace(base, **changes)


def test_to_json_has_exactly_the_iys_field_names_and_gmt3_date():
    record = consent(at=datetime(2025, 10, 31, 7, 30, 5, 999, tzinfo=UTC))
    assert record.to_json() == {
        "recipient": PHONE, "recipientType": "BIREYSEL", "type": "MESAJ", "source": "HS_WEB",
        "status": "ONAY", "consentDate": "2025-10-31 10:30:05",
    }


@given(st.datetimes(min_value=datetime(2016, 1, 1), max_value=datetime(2099, 1, 1),
                    timezones=st.just(UTC)),
       st.sampled_from(["MESAJ", "ARAMA", "EPOSTA"]), st.sampled_from(["ONAY", "RET"]))
def test_from_json_reads_back_what_to_json_wrote(at, kind, status):
    record = consent(status, at.replace(microsecond=0), type=kind)
    assert IysConsent.from_json(record.to_json()) == record


def test_from_json_falls_back_to_creation_date_and_rejects_records_without_dates():
    data = consent().to_json() | {"creationDate": "2025-10-31 10:00:00"}
    del data["consentDate"]
    assert IysConsent.from_json(data).consent_date == datetime(2025, 10, 31, 7, tzinfo=UTC)
    del data["creationDate"]
    with pytest.raises(ValueError):
        IysConsent.from_json(data)
    with pytest.raises(ValueError):
        IysConsent.from_json({"consentDate": "2025-10-31 10:00:00"})


@pytest.mark.parametrize("changes", [{"recipient_type": "KURUMSAL"}, {"type": "SMS"},
                                     {"status": "IZIN"}, {"consent_date": datetime(2025, 1, 1)}])
def test_malformed_records_are_refused_at_construction(changes):
    with pytest.raises(ValueError):
        consent(**changes)


def test_a_fresh_onay_passes():
    assert check(consent(), None, NOW) is None


def test_first_record_cannot_be_ret():
    assert check(consent("RET"), None, NOW) == FIRST_RECORD_RET


def test_repeated_state_is_refused():
    previous = consent(at=NOW - timedelta(hours=3))
    assert check(consent(), previous, NOW) == REPEATED_STATE


def test_ret_after_onay_passes_and_dates_must_move_forward():
    previous = consent(at=NOW - timedelta(hours=2))
    assert check(consent("RET", NOW - timedelta(hours=1)), previous, NOW) is None
    assert check(consent("RET", NOW - timedelta(hours=3)), previous, NOW) == DATE_BACKWARDS
    # İYS wants a strictly later date; the same second is not later.
    same_second = previous.consent_date + timedelta(microseconds=500)
    assert check(consent("RET", same_second), previous, NOW) == DATE_BACKWARDS


def test_date_in_future_is_refused():
    assert check(consent(at=NOW + timedelta(seconds=2)), None, NOW) == DATE_IN_FUTURE


def test_too_old_counts_business_days_and_skips_a_holiday():
    monday = datetime(2025, 10, 27, 10, 0, tzinfo=TZ)
    # Tue 28 (1), Wed 29 Republic Day skipped, Thu 30 (2), Fri 31 (3): due Friday night.
    assert check(consent(at=monday), None, datetime(2025, 10, 31, 23, 59, 59, tzinfo=TZ)) is None
    assert check(consent(at=monday), None, datetime(2025, 11, 1, 0, 0, 1, tzinfo=TZ)) == TOO_OLD


def test_too_old_skips_the_weekend():
    friday = datetime(2025, 11, 7, 18, 0, tzinfo=TZ)
    assert check(consent(at=friday), None, datetime(2025, 11, 12, 23, 0, tzinfo=TZ)) is None
    assert check(consent(at=friday), None, datetime(2025, 11, 13, 0, 1, tzinfo=TZ)) == TOO_OLD


@pytest.mark.parametrize(("recipient", "kind"), [
    ("05321112233", "MESAJ"), ("+90532111223", "MESAJ"), ("+902121112233", "MESAJ"),
    ("+4915112345678", "MESAJ"), ("+90 532 111 22 33", "MESAJ"), ("ornek@", "EPOSTA"),
    (PHONE, "EPOSTA"), ("", "ARAMA"),
])
def test_invalid_recipients(recipient, kind):
    assert check(consent(recipient=recipient, type=kind), None, NOW) == INVALID_RECIPIENT


@pytest.mark.parametrize(("recipient", "kind"), [
    (PHONE, "MESAJ"), (PHONE, "ARAMA"), ("+902121112233", "ARAMA"), ("ornek@adiniz.com", "EPOSTA"),
])
def test_valid_recipients(recipient, kind):
    assert check(consent(recipient=recipient, type=kind), None, NOW) is None


@pytest.mark.parametrize("source", ["WEB", "HS_BILINMEYEN", "IYS", "hs_web", ""])
def test_invalid_sources(source):
    assert check(consent(source=source), None, NOW) == INVALID_SOURCE


@pytest.mark.parametrize("source", sorted(KNOWN_SOURCES))
def test_every_known_source_passes(source):
    assert source.startswith("HS_")
    assert check(consent(source=source), None, NOW) is None


def test_previous_for_another_key_is_a_programming_error():
    with pytest.raises(ValueError):
        check(consent(), consent(type="ARAMA"), NOW)


statuses = st.sampled_from(["ONAY", "RET"])
offsets = st.integers(min_value=-10 * 86400, max_value=86400)


@given(statuses, offsets, st.none() | st.tuples(statuses, offsets))
def test_check_always_answers_a_known_code(status, offset, prior):
    previous = None if prior is None else consent(prior[0], NOW + timedelta(seconds=prior[1]))
    assert check(consent(status, NOW + timedelta(seconds=offset)), previous, NOW) in CODES


@given(statuses, st.integers(min_value=1, max_value=86400), st.integers(min_value=0,
                                                                          max_value=3600))
def test_same_status_as_previous_is_always_repeated_state(status, age, gap):
    previous = consent(status, NOW - timedelta(seconds=age + gap))
    assert check(consent(status, NOW - timedelta(seconds=age)), previous, NOW) == REPEATED_STATE


@given(statuses, st.integers(min_value=1, max_value=3600), st.integers(min_value=1,
                                                                         max_value=3600))
def test_a_change_of_state_with_a_later_recent_date_passes(status, age, gap):
    other = "RET" if status == "ONAY" else "ONAY"
    previous = consent(other, NOW - timedelta(seconds=age + gap))
    assert check(consent(status, NOW - timedelta(seconds=age)), previous, NOW) is None
