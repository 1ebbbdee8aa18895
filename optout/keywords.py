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
    # Opt-out quick-reply buttons of WhatsApp templates ("Durdur", Meta's Turkish label).
    "DURDUR", "PROMOSYONLARI DURDUR",
)
START_PHRASES = ("START", "BAŞLA", "BASLA", "UNSTOP", "ABONE OL", "KATIL")
HELP_PHRASES = ("HELP", "YARDIM", "BİLGİ", "INFO")
# A short reply made of a STOP phrase and at most this many other words is still a refusal:
# people add the shop's name in any spelling, their own name, or "lütfen" ("KARDEŞLER RET",
# "RET Örnek Market", "iptal lütfen"), and they cannot know which brand names are configured.
SHORT_STOP_OTHER_WORDS = 2
# Added to a refusal without changing it, and not counted among those other words: courtesy,
# urgency, thanks, company forms ("Ltd. Şti.").
COURTESY_WORDS = (
    "lütfen", "rica", "ederim", "artık", "hemen", "acilen", "derhal", "kesinlikle", "hepsi",
    "tüm", "teşekkürler", "teşekkür", "sağolun", "sağol", "please", "pls", "plz", "now",
    "thanks", "thank", "all", "ltd", "şti", "inc", "llc",
)
# Words that make the reply a sentence about something else, whatever else it holds: a
# question ("iptal edildi mi?"), a negation ("ret değil", "iptal etmeyin", "don't stop"), a
# request to wait ("dur bir dakika", "dur biraz"), a report in the past or passive ("iptal
# edildi", "iptal olmuş"), or a thing a customer cancels that is not the messages ("randevu
# iptal", "siparişimi iptal", "cancel my order"). A "*" ends a stem (Turkish adds suffixes).
NOT_REFUSAL_WORDS = (
    # questions
    "mi", "mı", "mu", "mü", "misin", "misiniz", "musun", "musunuz", "miyim", "miyiz", "muyum",
    "muyuz", "midir", "mudur", "ne", "neden", "niye", "niçin", "nasıl", "nerede", "nereye",
    "nereden", "hangi", "kim", "kaç", "kaçta", "why", "how", "what", "when", "where", "which",
    "who",
    # negations
    "değil", "etme", "etmeyin", "etmeyiniz", "yapma", "yapmayın", "not", "don", "dont",
    "never",
    # "wait a moment"
    "bir", "biraz", "dakika", "saniye", "bekle*", "wait", "minute",
    # reports, not requests
    "edildi*", "edilmiş*", "edilecek*", "edilir", "olmuş", "oldu", "olacak", "olur", "olmaz",
    "yapıldı", "edebilir*", "edemiyorum", "edemedim", "was", "been",
    # things a customer cancels or stops that are not the messages
    "sipariş*", "randevu*", "rezervasyon*", "kargo*", "teslimat*", "gönderi*", "paket*",
    "ödeme*", "fatura*", "işlem*", "talimat*", "kart*", "hesab*", "order*", "appointment*",
    "booking*", "reservation*", "delivery", "payment*",
)
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


def _stems(words: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Folded whole words, and folded stems (written with a trailing "*")."""
    whole = frozenset(fold(w) for w in words if not w.endswith("*"))
    return whole, tuple(fold(w[:-1]) for w in words if w.endswith("*"))


STOP_WORDS = _folded(STOP_PHRASES)
START_WORDS = _folded(START_PHRASES)
HELP_WORDS = _folded(HELP_PHRASES)
_COURTESY = _folded(COURTESY_WORDS)
_NOT_REFUSAL = _stems(NOT_REFUSAL_WORDS)
_LONGEST_STOP = max(len(phrase.split()) for phrase in STOP_WORDS)
# A suffix after an apostrophe ("Market'e", "Ayşe'den") belongs to the word before it.
_APOSTROPHE_SUFFIX = re.compile(r"(?<=\w)['’]\w+")


def classify(text: str, brand_names: Iterable[str] = ()) -> Intent | None:
    """The intent of a reply when the whole message is a keyword, else None.

    "Ret." and "  iptal!!! 🙏 " stop; "dur bir dakika, sipariş nerede?" does not. Bot commands
    ("/stop", "/stop@SomeBot", "/start <payload>") are explicit and classified by their name.
    A STOP phrase with one or two other words stops too, whatever `brand_names` holds
    ("KARDEŞLER RET", "iptal lütfen"), unless those words make it a sentence about something
    else (see NOT_REFUSAL_WORDS); a configured brand name may be longer.
    """
    folded = fold(text)
    if folded.startswith("/"):
        return _command_intent(folded)
    intent = _phrase_intent(folded)
    if intent is None and _is_short_refusal(text, brand_names):
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


def _is_short_refusal(text: str, brand_names: Iterable[str]) -> bool:
    """A STOP phrase plus a few words that do not turn it into a sentence. Under doubt this
    answers yes: a refusal read as a sentence keeps messaging someone who said no."""
    words = fold(_APOSTROPHE_SUFFIX.sub("", text)).split()
    others = _without_stop_phrases(words)
    if others is None:
        return False
    others = _without_brands(others, brand_names)
    others = [w for w in others if w not in _COURTESY]
    if len(others) > SHORT_STOP_OTHER_WORDS:
        return False
    whole, stems = _NOT_REFUSAL
    return not any(w in whole or w.startswith(stems) for w in others)


def _without_stop_phrases(words: list[str]) -> list[str] | None:
    """The words outside every STOP phrase, or None when there is no STOP phrase."""
    covered = [False] * len(words)
    for start in range(len(words)):
        for size in range(1, min(_LONGEST_STOP, len(words) - start) + 1):
            if " ".join(words[start:start + size]) in STOP_WORDS:
                covered[start:start + size] = [True] * size
    if not any(covered):
        return None
    return [w for w, inside in zip(words, covered, strict=True) if not inside]


def _without_brands(words: list[str], brand_names: Iterable[str]) -> list[str]:
    """Configured brand names, however long, are part of a refusal ("<BRAND> RET")."""
    text = f" {' '.join(words)} "
    for brand in brand_names:
        name = fold(brand)
        if name:
            text = text.replace(f" {name} ", " ")
    return text.split()
