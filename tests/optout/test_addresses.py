"""Address normalisation: one person, one E.164 string, however the spreadsheet wrote it."""

import random

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.addresses import (
    mask,
    normalise_address,
    normalise_phone,
    normalise_telegram_chat_id,
)

SAME_PERSON = [
    "0532 111 22 33", "+90 (532) 111-22-33", "905321112233", "5321112233",
    "0090 532 111 2233", "+90.532.111.22.33", "(0532) 1112233", "+905321112233",
    " 0532 111 22 33 ", "0532\u00a0111\u00a022\u00a033",
]
# How the same national number gets written; the fast path must treat all of them alike.
SHAPES = ["{n}", "0{n}", "90{n}", "+90{n}", "0090{n}", "0 ({a}) {b}-{c}", "+90.{a}.{b}.{c}"]


def reference(raw: str, region: str = "TR") -> str | None:
    """What phonenumbers alone says, for numbers without letters."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def shaped(national: str, shape: str) -> str:
    return shape.format(n=national, a=national[:3], b=national[3:6], c=national[6:])


@pytest.mark.parametrize("raw", SAME_PERSON)
def test_every_way_of_writing_a_turkish_mobile_gives_one_e164(raw):
    assert normalise_phone(raw) == "+905321112233"


@pytest.mark.parametrize(("raw", "expected"), [
    ("0212 555 12 12", "+902125551212"),
    ("(0312) 444 55 66", "+903124445566"),
    ("+49 151 23456789", "+4915123456789"),
    ("0049 151 23456789", "+4915123456789"),
    ("+44 7911 123456", "+447911123456"),
    ("0561 011 00 00", "+905610110000"),  # mobile range decided by six digits
    ("0592 211 00 00", "+905922110000"),  # personal number
    ("0512 000 00 00", "+905120000000"),  # pager
])
def test_landlines_and_foreign_numbers_are_accepted(raw, expected):
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "abc", "5,32111E+09", "5.32111E+09", "5,32E+9", "0532-CALL-NOW",
    "0532 111 22 3", "0532 111 22 333", "+90 532 111 22 33 44", "532", "0511 111 11 11",
    "0561 012 00 00", "0826 111 22 33", "+49 151", "0532 111 22 33 dahili 5", "١٢٣",
])
def test_letters_excel_notation_and_impossible_numbers_are_rejected(raw):
    assert normalise_phone(raw) is None


def test_fast_path_agrees_with_phonenumbers_on_random_mobile_range_numbers():
    rng = random.Random(20240901)
    for _ in range(3000):
        national = "5" + "".join(rng.choices("0123456789", k=9))
        shape = rng.choice(SHAPES)
        assert normalise_phone(shaped(national, shape)) == reference(national), national


def test_fast_path_agrees_with_phonenumbers_for_every_six_digit_mobile_prefix():
    # TR validity is decided by at most six leading digits (561011, 592211…); checking each
    # six-digit prefix once with a random tail covers every rule in the metadata.
    rng = random.Random(7)
    for prefix in range(500000, 600000):
        national = f"{prefix}{rng.randrange(10000):04d}"
        number = phonenumbers.PhoneNumber(country_code=90, national_number=int(national))
        expected = "+90" + national if phonenumbers.is_valid_number(number) else None
        assert normalise_phone(national) == expected, national


@given(national=st.from_regex(r"5[0-9]{9}", fullmatch=True), shape=st.sampled_from(SHAPES))
def test_shapes_of_one_number_normalise_alike(national, shape):
    assert normalise_phone(shaped(national, shape)) == normalise_phone(national)
    assert normalise_phone(national) == reference(national)


@given(raw=st.text(alphabet="0123456789+-.() 9054", max_size=20))
def test_digit_strings_agree_with_phonenumbers(raw):
    assert normalise_phone(raw) == reference(raw)


@given(raw=st.text(max_size=40))
def test_any_text_gives_none_or_a_valid_e164(raw):
    result = normalise_phone(raw)
    assert result is None or phonenumbers.is_valid_number(phonenumbers.parse(result))


def test_default_region_applies_to_national_forms():
    assert normalise_phone("030 1234567", "DE") == "+49301234567"
    assert normalise_phone("0532 111 22 33", "DE") == "+495321112233"  # a German landline
    assert normalise_phone("+90 532 111 22 33", "DE") == "+905321112233"


@pytest.mark.parametrize(("raw", "expected"), [
    ("123456789", "123456789"), ("-1001234567890", "-1001234567890"), (" 42 ", "42"),
    ("+42", "42"), ("007", "7"), (str(2**52 - 1), str(2**52 - 1)),
    (str(-(2**52 - 1)), str(-(2**52 - 1))),
])
def test_telegram_chat_ids_are_canonical_integers(raw, expected):
    assert normalise_telegram_chat_id(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "0", "-0", "abc", "1.5", "1e5", "12 34", str(2**52), str(-(2**52)), "١٢٣", "--1",
])
def test_telegram_rejects_non_integers_and_out_of_range(raw):
    assert normalise_telegram_chat_id(raw) is None


@pytest.mark.parametrize(("channel", "raw", "expected"), [
    ("telegram", "-1001234567890", "-1001234567890"),
    ("telegram", "0532 111 22 33", None),
    ("whatsapp", "0532 111 22 33", "+905321112233"),
    ("sms", "0532 111 22 33", "+905321112233"),
    ("sandbox", "0532 111 22 33", "+905321112233"),
    ("whatsapp", "-1001234567890", None),
])
def test_address_follows_the_channel(channel, raw, expected):
    assert normalise_address(raw, channel) == expected


@pytest.mark.parametrize(("address", "expected"), [
    ("+905321112233", "+90532*****33"),
    ("+4915123456789", "+49151******89"),
    ("+12025550123", "+1202*****23"),
    ("-1001234567890", "-100********90"),
    ("123456789", "123****89"),
    ("12345", "***45"),
    ("12", "**"),
    ("+1", "+*"),  # a country code alone is not kept whole
    ("", ""),
])
def test_mask_keeps_country_code_head_and_tail(address, expected):
    assert mask(address) == expected


@given(address=st.text(max_size=30))
def test_mask_hides_at_least_three_characters_of_anything(address):
    masked = mask(address)
    assert len(masked) == len(address)
    assert masked.count("*") >= min(3, len(address.lstrip("+-")))


def test_numbers_excel_saved_as_floats_are_still_numbers():
    assert normalise_phone("5321112233.0") == "+905321112233"
    assert normalise_phone("905321112233.0") == "+905321112233"
    assert normalise_phone("12.0") is None
