"""dashboard.labels: codes, times and durations as the dashboard shows them."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboard.labels import CATALOGUE, duration, error_text, label, when


def test_every_code_has_turkish_and_english_text_and_none_shows_raw():
    for kind, table in CATALOGUE.items():
        for code, (tr, en) in table.items():
            assert tr and en, (kind, code)
            if "_" in code:
                assert label(code, kind, "tr") != code and label(code, kind, "en") != code


@pytest.mark.parametrize(("code", "kind", "tr", "en"), [
    ("waiting_unlock", "state", "kasanın açılmasını bekliyor", "waiting for the vault"),
    ("no_consent", "reason", "izin yok", "no consent"),
    ("owner", "role", "sahip", "owner"),
    ("error_run: 5 send errors in a row", "reason", "art arda gönderim hataları",
     "a run of send errors"),
    ("inbound:sandbox", "source", "kişinin yanıtı (deneme kutusu)",
     "the person's reply (sandbox)"),
])
def test_label(code, kind, tr, en):
    assert label(code, kind, "tr") == tr and label(code, kind, "en") == en


def test_unknown_code_is_humanised_never_raw():
    assert label("provider_said_no", "reason") == "Provider said no"
    assert label(None) == label("") == "—"


def test_times_in_the_business_zone_in_turkish_and_english():
    moment = datetime(2026, 11, 30, 9, 4, 5, 123456, tzinfo=UTC)
    assert when(moment.isoformat(), "Europe/Istanbul") == "30 Kasım 2026, 12:04"
    assert when(moment.timestamp(), "Europe/Istanbul", "en") == "30 November 2026, 12:04"
    assert when(moment.isoformat(), "America/New_York") == "30 Kasım 2026, 04:04"
    assert when(moment.isoformat(), "No/Such_Zone") == "30 Kasım 2026, 12:04"  # the default
    assert when(None) == "—"


def test_durations_in_minutes_and_hours():
    assert duration(3600) == "1 saat" and duration(2700) == "45 dakika"
    assert duration(3900, "en") == "1 hour 5 minutes" and duration(59) == "1 dakikadan az"


def test_api_errors_translated_by_code():
    assert error_text("vault_locked", "The vault is locked") == "Kasa kilitli: önce kasayı açın."
    assert error_text("invalid_field", "'sender_name' is too long").endswith("(sender_name)")
    assert "IANA" in error_text("invalid_field", "'timezone' must be an IANA zone name")
    assert error_text("something_new", "Shown as the API wrote it") == (
        "Shown as the API wrote it")
