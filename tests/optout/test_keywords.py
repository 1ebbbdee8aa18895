"""Keywords: Turkish-aware folding and whole-message STOP/START/HELP classification."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.keywords import (
    COURTESY_WORDS,
    HELP_PHRASES,
    HELP_WORDS,
    NOT_REFUSAL_WORDS,
    START_PHRASES,
    START_WORDS,
    STOP_PHRASES,
    STOP_WORDS,
    Intent,
    classify,
    fold,
)

BRAND = "Çiçekçi Ayşe"
STOP, START, HELP = Intent.STOP, Intent.START, Intent.HELP

EXAMPLES = [
    ("STOP", STOP),
    ("stop", STOP),
    ("Stop.", STOP),
    ("STOPALL", STOP),
    ("DUR", STOP),
    ("dur", STOP),
    ("İPTAL", STOP),
    ("IPTAL", STOP),
    ("iptal", STOP),
    ("ıptal", STOP),
    ("İptal", STOP),
    ("  iptal!!! 🙏 ", STOP),
    ("Ret.", STOP),
    ("RET", STOP),
    ("ret 😡", STOP),
    ("UNSUBSCRIBE", STOP),
    ("Cancel", STOP),
    ("end", STOP),
    ("QUIT!", STOP),
    ("ABONELİK İPTAL", STOP),
    ("abonelik iptal", STOP),
    ("Aboneliği iptal et", STOP),
    ("ABONELIGI IPTAL ET", STOP),
    ("Listeden çık", STOP),
    ("LISTEDEN CIK", STOP),
    ("İSTEMİYORUM", STOP),
    ("istemiyorum...", STOP),
    ("Mesaj istemiyorum", STOP),
    ("opt out", STOP),
    ("Opt-Out", STOP),
    ("OPTOUT", STOP),
    ("Stop promotions", STOP),
    ("STOP PROMOTIONS", STOP),
    ("/stop", STOP),
    ("/stop@SomeBot", STOP),
    ("Çiçekçi Ayşe RET", STOP),
    ("CICEKCI AYSE ret", STOP),
    ("ret çiçekçi ayşe!", STOP),
    ("START", START),
    ("Başla", START),
    ("BASLA", START),
    ("BAŞLA!", START),
    ("unstop", START),
    ("Abone ol", START),
    ("KATIL", START),
    ("katıl", START),
    ("/start", START),
    ("/start ref-42_campaign", START),
    ("/start@SomeBot", START),
    ("HELP", HELP),
    ("help?", HELP),
    ("YARDIM", HELP),
    ("yardım", HELP),
    ("BİLGİ", HELP),
    ("BILGI", HELP),
    ("bilgi", HELP),
    ("Info", HELP),
    ("/help", HELP),
    ("dur bir dakika, sipariş nerede?", None),
    ("stop sending me this please", None),
    ("yes", None),
    ("evet", None),
    ("", None),
    ("   ", None),
    ("🙏", None),
    ("...", None),
    ("iptal edildi mi?", None),
    ("Ayşe RET", STOP),  # part of the brand, or the sender's name: still a refusal
    ("Çiçekçi RET", STOP),
    ("/stopx", None),
    ("/", None),
    ("başlamak istiyorum", None),
    ("yardım eder misiniz siparişim gelmedi", None),
]


@pytest.mark.parametrize(("text", "intent"), EXAMPLES)
def test_classify_examples(text, intent):
    assert classify(text, brand_names=[BRAND]) == intent


def test_a_brand_name_longer_than_two_words_needs_to_be_configured():
    long_brand = "Çiçekçi Ayşe Çiçek Evi"
    assert classify(f"{long_brand} RET") is None
    assert classify(f"{long_brand} RET", brand_names=["Başka Marka", long_brand]) == STOP
    assert classify(f"RET {long_brand.upper()} lütfen", brand_names=[long_brand]) == STOP


def test_empty_brand_names_change_nothing():
    for text in ("RET", "RET ret", "ret bir dakika", "Çiçekçi Ayşe Çiçek Evi RET"):
        assert classify(text, brand_names=["", "!!!"]) == classify(text)


# Item 6 of issue 14: STOP as people type it.
SHORT_STOPS = [
    "KARDEŞLER RET",
    "RET Örnek Market",
    "iptal lütfen",
    "Lütfen İPTAL",
    "ret kardesler",
    "Kardeşler Market ret",
    "ÖRNEK MARKET İPTAL",
    "Örnek Market'e RET",
    "Ahmet Yılmaz RET",
    "RET Ayşe",
    "DUR lütfen artık",
    "Mesaj istemiyorum Örnek Market",
    "abonelik iptal lütfen",
    "RET - Kardeşler Ltd. Şti.",
    "ret ORNEK",
    "mesaj iptal",
    "SMS iptal",
    "iptal et",
    "iptal istiyorum",
    "Ret ediyorum",
    "RET RET",
    "stop please",
    "STOP Example Shop",
    "unsubscribe me",
    "cancel thanks",
    "Örnek Eczanesi STOP 🙏",
]
NOT_STOPS = [
    "iptal edildi mi?",
    "ret mi oldu?",
    "neden ret?",
    "ret değil",
    "iptal etmeyin",
    "dur bir dakika",
    "dur biraz",
    "randevu iptal",
    "Siparişimi iptal",
    "kargo iptal mi",
    "cancel my order",
    "don't stop",
    "why stop?",
    "iptal edilecek mi",
    "Kartımı iptal",
    "dur bir dakika, sipariş nerede?",
    "Örnek Market ile görüştüm, iptal edeceklermiş",
    "Aboneliğimi iptal etmek için ne yapmalıyım?",
    "stop sending me this please",
]


@pytest.mark.parametrize("text", SHORT_STOPS)
def test_short_stop_with_unknown_brand_is_a_stop(text):
    # No brand configured, or another one: the refusal must not depend on the settings.
    assert classify(text) == STOP
    assert classify(text, brand_names=["Başka Firma"]) == STOP


@pytest.mark.parametrize("text", NOT_STOPS)
def test_a_sentence_that_contains_a_stop_word_is_not_a_stop(text):
    assert classify(text) is None
    assert classify(text, brand_names=["Örnek Market"]) is None


@pytest.mark.parametrize(
    ("spellings", "folded"),
    [
        (["IPTAL", "iptal", "ıptal", "İptal", "İPTAL"], "iptal"),
        (["BAŞLA", "BASLA", "başla"], "basla"),
        (["DUR", "dur"], "dur"),
        (["YARDIM", "yardım"], "yardim"),
        (["BİLGİ", "BILGI", "bilgi"], "bilgi"),
        (["ABONELİK İPTAL", "abonelik  iptal", "abonelik\tiptal!"], "abonelik iptal"),
        (["/stop", " /STOP "], "/stop"),
    ],
)
def test_fold_makes_spellings_equal(spellings, folded):
    assert {fold(spelling) for spelling in spellings} == {folded}


# --- properties ------------------------------------------------------------------------------

TURKISH_LETTERS = "abcçdefgğhıijklmnoöprsştuüvyzABCÇDEFGĞHIİJKLMNOÖPRSŞTUÜVYZqwxQWX"
PHRASES = [(phrase, STOP) for phrase in STOP_PHRASES]
PHRASES += [(phrase, START) for phrase in START_PHRASES]
PHRASES += [(phrase, HELP) for phrase in HELP_PHRASES]
PHRASES += [(BRAND + " RET", STOP), ("RET " + BRAND, STOP)]
# Words used inside any keyword phrase: "promotions" after "stop" would make a keyword.
KEYWORD_TOKENS = {
    token
    for phrase in (*STOP_PHRASES, *START_PHRASES, *HELP_PHRASES, BRAND)
    for token in fold(phrase).split()
}
ASCIIFY = str.maketrans("şŞğĞıçÇöÖüÜİ", "sSgGicCoOuUI")
NOISE = st.text(alphabet=" \t\n.,;:!?-…'\"()🙏😡👍❤️✋", max_size=6)


def turkish_upper(ch: str) -> str:
    return {"i": "İ", "ı": "I"}.get(ch, ch.upper())


def turkish_lower(ch: str) -> str:
    return {"İ": "i", "I": "ı"}.get(ch, ch.lower())


@st.composite
def respelled(draw, text: str) -> str:
    """The same text as a person might type it: random Turkish case and ASCII-fication."""
    out = []
    for ch in text:
        change = draw(st.sampled_from(["keep", "upper", "lower", "ascii"]))
        if change == "upper":
            ch = turkish_upper(ch)
        elif change == "lower":
            ch = turkish_lower(ch)
        elif change == "ascii":
            ch = ch.translate(ASCIIFY)
        out.append(ch)
    return "".join(out)


@given(st.text())
def test_fold_is_idempotent(text):
    assert fold(fold(text)) == fold(text)


@given(st.data(), st.sampled_from(PHRASES))
def test_keywords_survive_turkish_case_and_ascii_spelling(data, phrase_and_intent):
    phrase, intent = phrase_and_intent
    typed = data.draw(respelled(phrase))
    assert classify(typed, brand_names=[BRAND]) == intent


@given(st.data(), st.text(alphabet=TURKISH_LETTERS + " ", max_size=20))
def test_classify_is_invariant_under_respelling(data, text):
    typed = data.draw(respelled(text))
    assert classify(typed, brand_names=[BRAND]) == classify(text, brand_names=[BRAND])


@given(st.sampled_from(PHRASES), NOISE, NOISE)
def test_classify_ignores_surrounding_whitespace_punctuation_and_emoji(phrase, before, after):
    text, intent = phrase
    assert classify(before + text + after, brand_names=[BRAND]) == intent


COURTESY = {fold(w) for w in COURTESY_WORDS}
other_words = st.text(alphabet=TURKISH_LETTERS, min_size=1, max_size=10).filter(
    lambda word: fold(word) not in KEYWORD_TOKENS | COURTESY
)


@given(st.sampled_from(STOP_PHRASES), st.lists(other_words, min_size=3, max_size=5), st.data())
def test_keyword_with_three_other_words_is_not_a_stop(keyword, words, data):
    at = data.draw(st.integers(min_value=0, max_value=len(words)))
    text = " ".join([*words[:at], keyword, *words[at:]])
    assert classify(text, brand_names=[BRAND]) is None


NOT_REFUSAL = {fold(w.rstrip("*")) for w in NOT_REFUSAL_WORDS}
plain_words = other_words.filter(
    lambda word: not any(fold(word).startswith(w) for w in NOT_REFUSAL))


@given(st.sampled_from(STOP_PHRASES), st.lists(plain_words, min_size=1, max_size=2), st.data())
def test_keyword_with_one_or_two_plain_words_is_a_stop(keyword, words, data):
    # Plain words: a name, a brand, anything that is not a question, a negation, a wait or
    # a thing to cancel. Under doubt the person's refusal wins.
    at = data.draw(st.integers(min_value=0, max_value=len(words)))
    text = " ".join([*words[:at], keyword, *words[at:]])
    assert classify(text) == STOP


def test_keyword_sets_are_folded_and_disjoint():
    sets = [STOP_WORDS, START_WORDS, HELP_WORDS]
    assert all(fold(word) == word for words in sets for word in words)
    assert not (STOP_WORDS & START_WORDS or STOP_WORDS & HELP_WORDS or START_WORDS & HELP_WORDS)
