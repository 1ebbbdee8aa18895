"""Recipient addresses: phone numbers to E.164, Telegram chat ids to canonical integers, masking."""

from __future__ import annotations

import re

import phonenumbers

from optout import channels

_TR = phonenumbers.PhoneMetadata.metadata_for_region("TR")
# Separators people and spreadsheets put inside numbers; removing them is all the fast path does
# before matching, so "+90 (532) 111-22-33" and "0532.111.22.33" look alike.
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f.-()")
# A Turkish mobile-range number in one of its usual shapes; the group is the national number.
_TR_MOBILE_SHAPE = re.compile(r"(?:\+?90|0090|0)?(5[0-9]{9})")
_LETTER = re.compile(r"[^\W\d_]")
_CHAT_ID = re.compile(r"[+-]?[0-9]{1,20}")
# Telegram: chat ids "have at most 52 significant bits".
_CHAT_ID_LIMIT = 2**52
_TYPE_DESCS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
               "uan", "voicemail", "fixed_line", "mobile")


def _tr_validity_pattern(length: int) -> re.Pattern[str]:
    """phonenumbers' validity test for a TR national number of `length` digits, as one regex.

    The library calls a number valid when it matches the general description and any type
    (mobile, pager, personal…). TR mobile validity is decided by up to six leading digits
    (561011…, 56161…, 592211…), not four, so a 4-digit prefix set would misjudge those; the
    metadata's own patterns are exact and as cheap as a set lookup (~0.2 µs).
    """
    def applies(desc) -> bool:
        return bool(desc and desc.national_number_pattern
                    and (not desc.possible_length or length in desc.possible_length))

    descs = [getattr(_TR, name) for name in _TYPE_DESCS]
    types = "|".join(f"(?:{d.national_number_pattern})" for d in descs if applies(d))
    general = _TR.general_desc.national_number_pattern if applies(_TR.general_desc) else "(?!)"
    return re.compile(rf"(?=(?:{general})\Z)(?:{types})\Z")


_TR_VALID_10 = _tr_validity_pattern(10)


def normalise_phone(raw: str, default_region: str = "TR") -> str | None:
    """E.164 form of a phone number ("+905321112233"), or None when it is not a valid number."""
    # A number column Excel saved as floats ("5321112233.0") is still the number.
    raw = _EXCEL_FLOAT.sub(r"\1", raw.strip())
    if default_region == "TR":
        shape = _TR_MOBILE_SHAPE.fullmatch(raw.translate(_SEPARATORS))
        if shape is not None:
            national = shape.group(1)
            return "+90" + national if _TR_VALID_10.match(national) else None
    return _normalise_with_library(raw, default_region)


_EXCEL_FLOAT = re.compile(r"^(\+?\d{7,15})\.0+$")


def _normalise_with_library(raw: str, default_region: str) -> str | None:
    # Letters mean a name in the wrong column or Excel's "5,32111E+09"; phonenumbers would
    # read them as a vanity number ("0532-CALL-NOW") and accept it.
    if _LETTER.search(raw):
        return None
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_telegram_chat_id(raw: str) -> str | None:
    """A Telegram chat id (negative for groups) as a canonical decimal string, or None."""
    text = raw.strip()
    if not _CHAT_ID.fullmatch(text):
        return None
    value = int(text)
    return str(value) if 0 < abs(value) < _CHAT_ID_LIMIT else None


def normalise_address(raw: str, channel: str) -> str | None:
    """The canonical address on `channel`, as its registered normaliser makes it (a chat id on
    Telegram); E.164 for a channel nobody registered."""
    facts = channels.facts(channel)
    return (facts.normalise if facts else normalise_phone)(raw)


def mask(address: str) -> str:
    """An address safe to show in logs: "+905321112233" → "+90532*****33"."""
    if address.startswith("+") and address[1:].isdigit():
        code = _country_code(address[1:])
        if code and len(address) - 1 - len(code) >= 3:  # "+1" alone would show whole
            return "+" + code + _mask_middle(address[1 + len(code):])
    sign = address[:1] if address[:1] in "+-" else ""
    return sign + _mask_middle(address[len(sign):])


def _country_code(digits: str) -> str:
    for size in (1, 2, 3):
        if int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:size]
    return ""


def _mask_middle(text: str, head: int = 3, tail: int = 2) -> str:
    # At least three characters stay hidden; short values lose their head first, then all.
    if len(text) - head - tail < 3:
        head = 0
    if len(text) - tail < 3:
        return "*" * len(text)
    return text[:head] + "*" * (len(text) - head - tail) + text[len(text) - tail:]
