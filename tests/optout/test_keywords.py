"""Keywords: Turkish-aware folding and whole-message STOP/START/HELP classification."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.keywords import (
    HELP_PHRASES,
    HELP_WORDS,
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
    ("Ayşe RET", None),
    ("Çiçekçi RET", None),
    ("/stopx", None),
    ("/", None),
    ("başlamak istiyorum", None),
    ("yardım eder misiniz siparişim gelmedi", None),
]


@pytest.mark.parametrize(("text", "intent"), EXAMPLES)
def test_classify_examples(text, intent):
    assert classify(text, brand_names=[BRAND]) == intent


def test_brand_refusal_needs_the_brand_to_be_known():
    assert classify("Çiçekçi Ayşe RET") is None
    assert classify("Çiçekçi Ayşe RET", brand_names=["Başka Marka", BRAND]) == STOP
    assert classify("Başka Marka RET", brand_names=[BRAND]) is None


def test_empty_brand_names_do_not_make_ret_variants_stop():
    assert classify("RET", brand_names=["", "!!!"]) == STOP
    assert classify("RET ret", brand_names=[""]) is None


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


other_words = st.text(alphabet=TURKISH_LETTERS, min_size=1, max_size=10).filter(
    lambda word: fold(word) not in KEYWORD_TOKENS
)


@given(st.sampled_from(STOP_PHRASES), st.lists(other_words, min_size=1, max_size=4), st.data())
def test_keyword_with_another_word_is_not_a_stop(keyword, words, data):
    at = data.draw(st.integers(min_value=0, max_value=len(words)))
    text = " ".join([*words[:at], keyword, *words[at:]])
    assert classify(text, brand_names=[BRAND]) is None


def test_keyword_sets_are_folded_and_disjoint():
    sets = [STOP_WORDS, START_WORDS, HELP_WORDS]
    assert all(fold(word) == word for words in sets for word in words)
    assert not (STOP_WORDS & START_WORDS or STOP_WORDS & HELP_WORDS or START_WORDS & HELP_WORDS)
