"""How hard a vault passphrase is to guess, with feedback in Turkish and English.

The vault passphrase is the only thing between a stolen database and every customer's data, so
setting or changing it asks for more than a length: zxcvbn estimates the guesses an attacker
needs (dictionaries, names, keyboard rows, repeats, sequences, dates, l33t), with a list of
common Turkish passwords and the business's own name and e-mail as extra dictionaries. A
passphrase below `MIN_SCORE` (zxcvbn's 0–4 scale; 4 means at least 10¹⁰ guesses, centuries of
Argon2id work) is refused with what makes it weak and how to do better. Dashboard users' sign-in
passwords keep their own, milder rule (accounts.users.check_password)."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MIN_SCORE = 4
MAX_CHECKED = 72  # zxcvbn refuses longer input; a prefix's strength is a lower bound anyway

# Common in Turkish password leaks and easy to think of; zxcvbn's own lists are English.
TURKISH_WORDS = (
    "parola", "şifre", "sifre", "gizli", "gizlisifre", "parolam", "şifrem", "sifrem", "sifre123",
    "türkiye", "turkiye", "istanbul", "ankara", "izmir", "bursa", "antalya", "adana", "konya",
    "galatasaray", "fenerbahçe", "fenerbahce", "beşiktaş", "besiktas", "trabzonspor", "cimbom",
    "aşkım", "askim", "sevgilim", "canım", "canim", "hayatım", "hayatim", "annem", "babam",
    "allah", "bismillah", "mehmet", "ahmet", "mustafa", "ayşe", "ayse", "fatma", "emine",
    "ali", "veli", "hüseyin", "huseyin", "hasan", "ibrahim", "murat", "elif", "zeynep",
    "merhaba", "selam", "kasa", "mağaza", "magaza", "dükkan", "dukkan", "işyeri", "isyeri",
    "şirket", "sirket", "yönetici", "yonetici", "admin", "izinli", "deneme", "test",
    "qwerty", "asdfgh", "zxcvbn", "klavye", "bilgisayar", "internet", "telefon",
)

# zxcvbn's sentences (its English feedback) → Turkish.
_TURKISH = {
    "Use a few words, avoid common phrases.":
        "Birkaç kelime kullanın; bilinen sözlerden kaçının.",
    "No need for symbols, digits, or uppercase letters.":
        "Simge, rakam ya da büyük harf şart değil.",
    "Add another word or two. Uncommon words are better.":
        "Bir iki kelime daha ekleyin; az kullanılan kelimeler daha iyidir.",
    "Straight rows of keys are easy to guess.":
        "Klavyede yan yana tuşlar kolay tahmin edilir.",
    "Short keyboard patterns are easy to guess.":
        "Kısa klavye desenleri kolay tahmin edilir.",
    "Use a longer keyboard pattern with more turns.":
        "Klavye deseni yerine kelimeler kullanın.",
    'Repeats like "aaa" are easy to guess.':
        "\"aaa\" gibi tekrarlar kolay tahmin edilir.",
    'Repeats like "abcabcabc" are only slightly harder to guess than "abc".':
        "\"abcabcabc\" gibi tekrarlar \"abc\"den pek zor tahmin edilmez.",
    "Avoid repeated words and characters.": "Tekrarlanan kelime ve karakterlerden kaçının.",
    'Sequences like "abc" or "6543" are easy to guess.':
        "\"abc\" ya da \"6543\" gibi diziler kolay tahmin edilir.",
    "Avoid sequences.": "Dizilerden kaçının.",
    "Recent years are easy to guess.": "Yakın yıllar kolay tahmin edilir.",
    "Avoid recent years.": "Yakın yılları kullanmayın.",
    "Avoid years that are associated with you.": "Sizinle ilgili yıllardan kaçının.",
    "Dates are often easy to guess.": "Tarihler çoğu zaman kolay tahmin edilir.",
    "Avoid dates and years that are associated with you.":
        "Sizinle ilgili tarih ve yıllardan kaçının.",
    "This is a top-10 common password.": "Bu, en sık kullanılan 10 paroladan biri.",
    "This is a top-100 common password.": "Bu, en sık kullanılan 100 paroladan biri.",
    "This is a very common password.": "Bu çok yaygın bir parola.",
    "This is similar to a commonly used password.": "Bu, yaygın bir parolaya çok benziyor.",
    "A word by itself is easy to guess.": "Tek başına bir kelime kolay tahmin edilir.",
    "Names and surnames by themselves are easy to guess.":
        "Tek başına ad ve soyadlar kolay tahmin edilir.",
    "Common names and surnames are easy to guess.": "Yaygın ad ve soyadlar kolay tahmin edilir.",
    "Capitalization doesn't help very much.": "Büyük harf pek işe yaramaz.",
    "All-uppercase is almost as easy to guess as all-lowercase.":
        "Tamamı büyük harf, tamamı küçük harf kadar kolay tahmin edilir.",
    "Reversed words aren't much harder to guess.": "Ters yazılmış kelimeler pek zor değildir.",
    "Predictable substitutions like '@' instead of 'a' don't help very much.":
        "'a' yerine '@' gibi tahmin edilebilir değişiklikler pek işe yaramaz.",
}
_GENERIC = ("Bu parola kolay tahmin edilir.", "This passphrase is easy to guess.")
_ADVICE = ("Birbiriyle ilgisiz dört ya da daha fazla kelimeden oluşan bir cümle seçin "
           "(ör. \"bulut kapı limon yürüyüş\").",
           "Choose four or more unrelated words (e.g. \"cloud door lemon walk\").")


@dataclass(frozen=True)
class Strength:
    score: int  # 0 (guessed at once) to 4 (at least 10¹⁰ guesses)
    guesses_log10: float
    warning: tuple[str, str] | None  # (Turkish, English): what makes it weak
    suggestions: tuple[tuple[str, str], ...]  # (Turkish, English) each

    @property
    def strong(self) -> bool:
        return self.score >= MIN_SCORE

    def text(self, language: str = "tr") -> str:
        """The feedback as one paragraph in `language` (tr or en)."""
        i = 0 if language == "tr" else 1
        parts = [(self.warning or _GENERIC)[i], *(s[i] for s in self.suggestions)]
        if _ADVICE not in self.suggestions:
            parts.append(_ADVICE[i])
        return " ".join(parts)

    def feedback(self) -> dict:
        """For the API's `weak_passphrase` error: the score and the advice in both languages."""
        return {"score": self.score, "min_score": MIN_SCORE, "tr": self.text("tr"),
                "en": self.text("en")}


def _pair(sentence: str) -> tuple[str, str]:
    return (_TURKISH.get(sentence, _GENERIC[0]), sentence)


def _hints(hints: Iterable[str]) -> list[str]:
    """zxcvbn's extra dictionary, likeliest first: each hint whole (with and without its
    spaces), then its words, then the common Turkish words."""
    words: list[str] = []
    for hint in hints:
        folded = hint.strip().casefold()
        parts = [w for w in re.split(r"[\W_]+", folded) if len(w) >= 3]
        words.extend([folded, "".join(re.split(r"[\W_]+", folded)), *parts])
    return [w for w in words if w] + list(TURKISH_WORDS)


def estimate(passphrase: str, hints: Iterable[str] = ()) -> Strength:
    """How hard `passphrase` is to guess; `hints` (the business's name, the owner's e-mail)
    count as words an attacker tries first."""
    checked = unicodedata.normalize("NFC", passphrase)[:MAX_CHECKED]
    if not checked:
        return Strength(0, 0.0, ("Kasa parolası boş olamaz.", "The passphrase is empty."), ())
    from zxcvbn import zxcvbn  # ~10 MiB of word lists: loaded by the first estimate only
    found = zxcvbn(checked, user_inputs=_hints(hints))
    advice = found["feedback"]
    warning = _pair(advice["warning"]) if advice.get("warning") else None
    return Strength(found["score"], float(found["guesses_log10"]), warning,
                    tuple(_pair(s) for s in advice.get("suggestions", ())))
