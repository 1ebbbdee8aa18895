"""Does a message read as commercial? A maintained Turkish and English lexicon of what Law
6563's Regulation counts as a commercial electronic message — anything promoting goods or
services, and greetings and celebrations — matched on words folded the way STOP keywords are
(optout.keywords.fold: case, Turkish letters, marks and punctuation do not matter).

An `informational` campaign (orders, deliveries, appointments, debts: no consent needed, no
refusal footer) whose text matches is held until the owner confirms it. The lexicon errs
towards asking: a question costs the owner a tick, a greeting sent without consent costs a
fine. It is a pure function; campaigns.service applies it.

Writing entries: as people spell them; "*" ends a stem (Turkish adds suffixes: "indirim*"
matches indirimli, indirimde, indirimler); "?" stands for any one word ("? al ? öde" matches
"3 al 2 öde"). An entry of several words matches those words in a row.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from optout.keywords import fold

# Group → entries. Each group says why its words are commercial.
LEXICON: dict[str, tuple[str, ...]] = {
    # Price cuts and bargains are the plainest promotion of goods or services.
    "discounts": (
        "indirim*", "ucuzluk", "kelepir", "yarı fiyat*", "yarı yarıya", "özel fiyat*",
        "uygun fiyat*", "başlayan fiyat*", "tl yerine", "peşin fiyatına", "vade farksız",
        "faizsiz", "sezon sonu", "outlet", "discount*", "sale", "clearance", "bargain*",
        "half price", "deal", "deals", "save up to", "black friday", "cyber monday",
        "efsane cuma", "efsane kasım",
    ),
    # Campaigns, offers, raffles: a business inviting people to buy.
    "campaigns": (
        "kampanya*", "promo*", "fırsat", "fırsatı*", "fırsatlar*", "kaçırmayın",
        "kaçırmayınız", "kaçırma", "kaçırılmayacak", "çekiliş*", "sınırlı sayıda",
        "sınırlı süre*", "stoklarla sınırlı", "erken rezervasyon*", "özel teklif*",
        "special offer*", "limited time", "limited offer", "last chance",
        "don't miss", "dont miss", "while stocks last", "exclusive offer*",
    ),
    # Coupons, codes and gifts tied to a purchase.
    "coupons": (
        "kupon*", "hediye*", "puan kazan*", "? al ? öde", "alana ? bedava", "coupon*",
        "voucher*", "promo code", "free gift", "buy one get one", "bogo",
    ),
    # Free shipping and freebies are offers, however small.
    "free_shipping": (
        "ücretsiz kargo", "kargo ücretsiz*", "kargo bedava", "bedava", "free shipping",
        "free delivery",
    ),
    # Calls to buy, visit or browse.
    "calls_to_buy": (
        "satın alın", "hemen satın", "hemen alışveriş*", "alışverişe*", "sepete ekle*",
        "sepette", "hemen tıkla*", "yeni sezon", "yeni koleksiyon*", "yeni ürün*",
        "yeni şubemiz*", "yeni mağazamız*", "tüm ürünlerde", "seçili ürünlerde",
        "tüm ürünler", "seçili ürünler", "shop now", "buy now", "new collection*",
        "new arrival*", "just for you",
    ),
    # "Special for X" offers: for you, our members, the opening, the holiday, the month.
    "special_for": (
        "size özel", "sizlere özel", "sana özel", "üyelerimize özel", "müşterilerimize özel",
        "gününe özel", "günlerine özel", "ayına özel", "açılışa özel", "bayrama özel",
        "yılbaşına özel", "hafta sonuna özel", "haftasonuna özel", "yeni yıla özel",
        "kartınıza özel", "kart sahiplerine özel", "abonelerimize özel",
    ),
    # Greetings and celebrations: the Regulation counts them as commercial (a business
    # keeping itself in mind). A bare "bayram" or "yılbaşı" is not here: "Bayram tatili
    # nedeniyle kargo yapılmayacaktır" is a notice, and Bayram is also a first name.
    "greetings": (
        "bayramınız*", "bayramlar*", "bayramımız*", "kutlu olsun", "kutlarız", "kutlarım",
        "kutluyoruz", "kutlama*", "mübarek olsun", "hayırlı kandil*", "kandiliniz*",
        "hayırlı ramazan*", "ramazanınız*", "hayırlı cumalar", "evinize dolsun",
        "mutlu yıllar", "iyi yıllar", "nice yıllar*", "yeni yılınız*", "yılbaşınız*",
        "doğum günün*", "iyi ki doğdun*", "anneler gününüz*", "babalar gününüz*",
        "sevgililer gün*", "happy new", "happy holiday*", "merry christmas", "merry xmas",
        "season's greetings", "seasons greetings", "happy birthday", "happy mother*",
        "happy father*", "happy valentine*", "happy easter", "eid mubarak",
    ),
}
# Phrases of routine notices that hold a word above; inside them it is not commercial.
NOT_COMMERCIAL: tuple[str, ...] = (
    "hediye paket*",     # "Hediye paketli siparişiniz yola çıktı": gift wrapping an order
    "ilk fırsat*",       # "ilk fırsatta teslim edilecektir": at the first opportunity
)
# A percentage counts when a discount word is near it ("%20 indirim", "%50'ye varan",
# "ek %10", "up to 60% off"); alone it may be VAT or an interest rate on a bill.
PERCENT_CONTEXT = ("indirim*", "varan", "ek", "ekstra", "sepette", "ucuz*", "off", "up",
                   "save", "extra", "discount*")
PERCENT_WINDOW = 3  # words either side
# A link straight to a shop front (no page of an order or an account): "ornekmagaza.com".
SHOP_HOST_WORDS = ("shop", "store", "magaza", "butik", "outlet")

_PERCENT = re.compile(r"%\s?\d+(?:[.,]\d+)?|\b\d+(?:[.,]\d+)?\s?%|\by[üu]zde\s?\d+", re.I)
_PERCENT_TOKEN = "izinlipercent"  # stands for each percentage in the folded text
_URL = re.compile(r"\b(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+(?:com|net|org|shop|store|"
                  r"tr|co|io|app))\b(/\S*)?", re.I)


@dataclass(frozen=True, slots=True)
class _Entry:
    shown: str                             # as written in the lexicon, without "*"
    words: tuple[tuple[str, bool], ...]    # (folded word, is a stem); "" is any word


def _entry(written: str) -> _Entry:
    words: list[tuple[str, bool]] = []
    for word in written.split():
        if word == "?":
            words.append(("", False))
            continue
        parts = fold(word.rstrip("*")).split()  # "don't" folds to two words
        words += [(p, word.endswith("*") and i == len(parts) - 1) for i, p in enumerate(parts)]
    return _Entry(written.replace("*", ""), tuple(words))


class _Index:
    """Entries by their first word, so a text is read once (a 4,096-character template has
    some 600 words and the lexicon some 200 entries)."""

    def __init__(self, written: Iterable[str]):
        self.exact: dict[str, list[_Entry]] = {}
        self.stems: list[tuple[str, _Entry]] = []
        self.any_first: list[_Entry] = []
        for entry in map(_entry, written):
            first, stem = entry.words[0]
            if not first:
                self.any_first.append(entry)
            elif stem:
                self.stems.append((first, entry))
            else:
                self.exact.setdefault(first, []).append(entry)

    def found(self, words: list[str]) -> list[tuple[int, _Entry]]:
        hits = []
        for start, word in enumerate(words):
            candidates = [*self.exact.get(word, ()), *self.any_first,
                          *(entry for stem, entry in self.stems if word.startswith(stem))]
            hits += [(start, entry) for entry in candidates if _at(entry, words, start)]
        return hits


def _at(entry: _Entry, words: list[str], start: int) -> bool:
    return start + len(entry.words) <= len(words) and all(
        _matches(words[start + k], part) for k, part in enumerate(entry.words))


def _matches(word: str, part: tuple[str, bool]) -> bool:
    wanted, stem = part
    return not wanted or word == wanted or (stem and word.startswith(wanted))


_LEXICON = _Index(e for entries in LEXICON.values() for e in entries)
_EXEMPT = _Index(NOT_COMMERCIAL)
_CONTEXT = _Index(PERCENT_CONTEXT)


def commercial_words(*texts: str) -> list[str]:
    """The lexicon entries (and percentages, shop links) found in the texts, in order, each
    once; [] when they read as informational."""
    found: list[str] = []
    for text in texts:
        for word in _found_in(text):
            if word not in found:
                found.append(word)
    return found


def _found_in(text: str) -> list[str]:
    percents = _PERCENT.findall(text)
    links = [m.group(0) for m in _URL.finditer(text) if _is_shop_front(m)]
    words = fold(_PERCENT.sub(f" {_PERCENT_TOKEN} ", text)).split()
    exempt = {i for start, entry in _EXEMPT.found(words)
              for i in range(start, start + len(entry.words))}
    hits = [(start, -len(entry.words), entry.shown) for start, entry in _LEXICON.found(words)
            if exempt.isdisjoint(range(start, start + len(entry.words)))]
    at = [i for i, w in enumerate(words) if w == _PERCENT_TOKEN]
    # Not strict: a template may itself hold the marker word (then a percentage is misnamed).
    hits += [(i, -1, percent) for i, percent in zip(at, percents, strict=False)
             if _CONTEXT.found(words[max(0, i - PERCENT_WINDOW):i + PERCENT_WINDOW + 1])]
    return _outermost(sorted(hits)) + links


def _outermost(hits: list[tuple[int, int, str]]) -> list[str]:
    """One name per place: "kargo bedava", not also "bedava" inside it."""
    shown, end = [], 0
    for start, minus_size, name in hits:
        if start - minus_size > end:
            shown.append(name)
            end = start - minus_size
    return shown


def _is_shop_front(link: re.Match) -> bool:
    host, path = link.group(1).lower(), (link.group(2) or "").strip("/")
    return not path and any(word in host for word in SHOP_HOST_WORDS)


def texts_of(template: str, channel_template: dict | None) -> list[str]:
    """What a campaign's recipients may read: its template, and for a WhatsApp approved
    template its name (names tend to say what they are: "bayram_kutlama") and parameters.
    The approved template's own body is not stored here (issue 15 syncs templates)."""
    texts = [template]
    if channel_template:
        name = channel_template.get("name")
        parameters = channel_template.get("parameters") or []
        texts += [t for t in [name, *parameters] if isinstance(t, str)]
    return texts


def described(words: Iterable[str]) -> str:
    return ", ".join(f"«{w}»" for w in words)
