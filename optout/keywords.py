"""Inbound keywords: folding Turkish spellings and classifying a reply as STOP, START or HELP."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable


class Intent(enum.StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


# Readable source lists; spelling variants (case, dotted/dotless i, ş/s…) need not be listed
# because both sides go through fold(). Extend these, not the folded sets below.
STOP_PHRASES = (
    "STOP", "STOPALL", "STOP ALL", "DUR", "İPTAL", "IPTAL", "RET", "UNSUBSCRIBE", "CANCEL",
    "END", "QUIT", "ABONELİK İPTAL", "ABONELİĞİ İPTAL ET", "ABONELIGI IPTAL ET",
    "LİSTEDEN ÇIK", "LISTEDEN CIK", "İSTEMİYORUM", "ISTEMIYORUM", "MESAJ İSTEMİYORUM",
    "MESAJ ISTEMIYORUM", "OPT OUT", "OPTOUT", "STOP PROMOTIONS",
)
START_PHRASES = ("START", "BAŞLA", "BASLA", "UNSTOP", "ABONE OL", "KATIL")
HELP_PHRASES = ("HELP", "YARDIM", "BİLGİ", "INFO")
# The refusal word of the legal "<BRAND> RET" form.
BRAND_REFUSAL_WORD = "RET"

# Only ı has no Unicode decomposition; ş ğ ç ö ü lose their marks after NFKD.
_ASCII_DOTLESS_I = str.maketrans({"ı": "i"})
# A bot command: "/" directly followed by a letter or digit.
_BOT_COMMAND = re.compile(r"/[^\W_]")


def fold(text: str) -> str:
    """Fold case, Turkish letters, marks, punctuation and emoji so that spellings compare equal.

    "İPTAL", "ıptal" and "iptal!!! 🙏" all fold to "iptal"; "BAŞLA" and "basla" to "basla".
    Punctuation and symbols separate words; a leading "/" of a bot command is kept.
    """
    # Turkish casing first (İ→i, I→ı): casefold() would turn İ into "i" + combining dot.
    text = text.replace("İ", "i").replace("I", "ı")
    # NFKD before casefold so compatibility letters (ℌ, Ｉ) get folded too; NFKD again
    # after, because casefold may produce precomposed letters.
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    text = text.translate(_ASCII_DOTLESS_I)
    kept = "".join(
        ch if ch.isalnum() or ch == "/" else " " for ch in text if not unicodedata.combining(ch)
    ).strip()
    prefix = "/" if _BOT_COMMAND.match(kept) else ""
    return prefix + " ".join(kept.replace("/", " ").split())


def _folded(phrases: Iterable[str]) -> frozenset[str]:
    return frozenset(fold(phrase) for phrase in phrases)


STOP_WORDS = _folded(STOP_PHRASES)
START_WORDS = _folded(START_PHRASES)
HELP_WORDS = _folded(HELP_PHRASES)
_REFUSAL = fold(BRAND_REFUSAL_WORD)


def classify(text: str, brand_names: Iterable[str] = ()) -> Intent | None:
    """The intent of a reply when the whole message is a keyword, else None.

    "Ret." and "  iptal!!! 🙏 " stop; "dur bir dakika, sipariş nerede?" does not. Bot commands
    ("/stop", "/stop@SomeBot", "/start <payload>") are explicit and classified by their name.
    `brand_names` enables "<brand> RET" and "RET <brand>".
    """
    folded = fold(text)
    if folded.startswith("/"):
        return _command_intent(folded)
    intent = _phrase_intent(folded)
    if intent is None and _is_brand_refusal(folded, brand_names):
        return Intent.STOP
    return intent


def _phrase_intent(folded: str) -> Intent | None:
    if folded in STOP_WORDS:
        return Intent.STOP
    if folded in START_WORDS:
        return Intent.START
    if folded in HELP_WORDS:
        return Intent.HELP
    return None


def _command_intent(folded: str) -> Intent | None:
    # Whatever follows the name ("@SomeBot" folds to a word, a deep-link payload, arguments)
    # does not change what the user explicitly invoked.
    name = folded[1:].split(" ", 1)[0]
    return _phrase_intent(name)


def _is_brand_refusal(folded: str, brand_names: Iterable[str]) -> bool:
    for brand in brand_names:
        name = fold(brand)
        if name and folded in (f"{name} {_REFUSAL}", f"{_REFUSAL} {name}"):
            return True
    return False
