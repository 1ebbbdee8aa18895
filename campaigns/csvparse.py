"""Streaming parser for the contact CSV files Turkish businesses export from Excel."""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from campaigns.render import field_key
from optout.addresses import normalise_phone
from optout.keywords import fold

MAX_LINE_CHARS = 1024 * 1024
_CHUNK = 64 * 1024
# Sniffing order doubles as the tie-break: Turkish Excel writes ";" (the decimal mark is ",").
_DELIMITERS = (";", ",", "\t", "|")
_QUOTED = re.compile(r'"[^"]*"')
_NON_IDENTIFIER = re.compile(r"[^a-z0-9_]+")

# Readable source lists; case and Turkish spellings need not be listed because headers and
# cell values go through optout.keywords.fold() before lookup.
FIELD_ALIASES = {
    "phone": ("phone", "telefon", "gsm", "cep", "tel", "telefon no", "telefon numarası",
              "gsm no", "cep telefonu", "cep tel", "cep no", "mobile", "mobile phone",
              "phone number", "msisdn", "numara", "whatsapp", "whatsapp numarası"),
    "name": ("name", "ad", "adı", "isim", "ad soyad", "adı soyadı", "adsoyad", "isim soyisim",
             "full name", "müşteri adı", "müşteri"),
    "consent": ("consent", "izin", "onay", "iletişim izni", "ticari ileti izni", "kvkk onayı"),
    "consent_source": ("consent_source", "izin kaynağı", "kaynak", "source"),
    "consent_date": ("consent_date", "izin tarihi", "onay tarihi", "tarih"),
    "recipient_type": ("recipient_type", "alıcı tipi", "müşteri tipi", "tip"),
}
FIRST_NAME_HEADERS = ("ad", "adı", "isim", "first name")
LAST_NAME_HEADERS = ("soyad", "soyadı", "soyisim", "last name", "surname")
CONSENT_VALUES = {
    "granted": ("granted", "grant", "yes", "y", "true", "1", "evet", "e", "var", "onay",
                "onaylı", "izinli", "izin var", "kabul", "ok", "x", "✓", "✔"),
    "revoked": ("revoked", "revoke", "no", "n", "false", "0", "hayır", "h", "yok", "ret", "red",
                "reddetti", "izinsiz", "izin yok", "iptal"),
}
RECIPIENT_TYPE_VALUES = {
    "individual": ("individual", "bireysel", "birey", "kişi", "b"),
    "merchant": ("merchant", "tacir", "kurumsal", "şirket", "esnaf", "t"),
}


def _by_folded_word(groups: dict[str, tuple[str, ...]]) -> dict[str, str]:
    # Raw spellings stay as keys too: fold() drops symbols, and "✓" must still mean granted.
    return {key: target for target, words in groups.items() for word in words
            for key in (word, fold(word))}


_FIELD_OF_HEADER = _by_folded_word(FIELD_ALIASES)
_FIRST_NAMES = frozenset(map(fold, FIRST_NAME_HEADERS))
_LAST_NAMES = frozenset(map(fold, LAST_NAME_HEADERS))
_VOCABULARY = {"consent": _by_folded_word(CONSENT_VALUES),
               "recipient_type": _by_folded_word(RECIPIENT_TYPE_VALUES)}


class CsvFormatError(ValueError):
    """The file as a whole cannot be imported; `line` says where, when one line is to blame."""

    code = "csv_format"

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line

    def __reduce__(self):
        # As it was, whatever a subclass's constructor takes: an import's worker process
        # (campaigns.forked) hands it back to the server through pickle.
        return _restored, (type(self), self.args, self.__dict__)


def _restored(cls: type[CsvFormatError], args: tuple, state: dict) -> CsvFormatError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class NoPhoneColumnError(CsvFormatError):
    code = "no_phone_column"

    def __init__(self, columns: Iterable[str]):
        self.columns = tuple(columns)
        expected = ", ".join(FIELD_ALIASES["phone"][:4])
        found = ", ".join(self.columns) or "none"
        super().__init__(f"no phone column: expected one of {expected}, …; found: {found}")


@dataclass(frozen=True, slots=True)
class ContactRow:
    """One contact as the file states it; `attributes` holds every other column by template
    key ("" for an empty cell), and consent_date is the raw text for the caller to parse."""

    line: int
    phone: str
    name: str
    attributes: dict[str, str]
    consent: str | None
    consent_source: str | None
    consent_date: str | None
    recipient_type: str


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Column:
    """What one header cell became: a contact field, part of the name, or an attribute."""

    index: int
    header: str
    field: str  # a FIELD_ALIASES key, "first_name", "last_name" or "attribute"
    key: str | None = None  # the template variable, for attributes


@dataclass(frozen=True, slots=True)
class ParsedFile:
    encoding: str
    delimiter: str
    columns: tuple[Column, ...]
    rows: Iterator[ContactRow | RowError]


def parse(fileobj: BinaryIO, default_region: str = "TR") -> ParsedFile:
    """Read the header of a seekable binary file now, and its rows lazily from `rows`.

    Raises CsvFormatError for an empty file and NoPhoneColumnError before any row is read;
    a malformed line later raises CsvFormatError from the iterator.
    """
    encoding = detect_encoding(fileobj)
    text = _text_of(fileobj, encoding)
    lines = _physical_lines(text)
    skipped, header_line = _first_non_blank(lines)
    delimiter = _excel_separator_hint(header_line)
    if delimiter is not None:  # "sep=;" — Excel's hint line; the header follows it
        hint_line = skipped + 1
        skipped, header_line = _first_non_blank(lines)
        skipped += hint_line
    else:
        delimiter = sniff_delimiter(header_line)
    reader = csv.reader(itertools.chain([header_line], lines), delimiter=delimiter)
    header = _next_row(reader, skipped + 1) or []
    if any("\x00" in cell for cell in header):  # column names are stored as plain text
        raise CsvFormatError("the header row holds a NUL character", skipped + 1)
    columns = map_columns(header)
    plan = _RowPlan(columns, default_region)
    return ParsedFile(encoding, delimiter, columns, _rows(reader, skipped, plan))


# A file that is not UTF-8 as a whole but holds UTF-8 Turkish letters is a mix: an Excel
# export (Windows-1254) with rows or a header pasted from a UTF-8 source. Each valid UTF-8
# sequence is read as UTF-8 and every other byte as Windows-1254. The lead bytes of these
# sequences are Ã, Ä and Å in Windows-1254, letters a Turkish file does not use, so a file
# that is Windows-1254 throughout is read exactly as before.
MIXED = "utf-8+cp1254"
_UTF8_TURKISH = re.compile(b"|".join(re.escape(c.encode()) for c in "çğıöşüÇĞİÖŞÜ"))


def _cp1254_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("cp1254", errors="replace"), exc.end


codecs.register_error("izinli-cp1254", _cp1254_fallback)


def detect_encoding(fileobj: BinaryIO) -> str:
    """utf-8-sig or utf-16 by BOM, else utf-8 if the whole file decodes, else MIXED if it
    holds UTF-8 Turkish letters, else cp1254."""
    fileobj.seek(0)
    head = fileobj.read(3)
    fileobj.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _is_utf8(fileobj):
        return "utf-8"
    return MIXED if _holds_utf8_turkish(fileobj) else "cp1254"


def _is_utf8(fileobj: BinaryIO) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in iter(functools.partial(fileobj.read, _CHUNK), b""):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    finally:
        fileobj.seek(0)
    return True


def _holds_utf8_turkish(fileobj: BinaryIO) -> bool:
    tail = b""  # a letter's two bytes may straddle two chunks
    try:
        for chunk in iter(functools.partial(fileobj.read, _CHUNK), b""):
            if _UTF8_TURKISH.search(tail + chunk):
                return True
            tail = chunk[-1:]
    finally:
        fileobj.seek(0)
    return False


def _text_of(fileobj: BinaryIO, encoding: str) -> io.TextIOWrapper:
    if encoding == MIXED:
        return io.TextIOWrapper(_Borrowed(fileobj), encoding="utf-8", errors="izinli-cp1254",
                                newline="")
    return io.TextIOWrapper(_Borrowed(fileobj), encoding=encoding, errors="replace", newline="")


def _excel_separator_hint(line: str) -> str | None:
    """The delimiter named by Excel's optional first line "sep=;" (or None)."""
    stripped = line.strip().strip('"').replace("\ufeff", "")
    if stripped.lower().startswith("sep=") and len(stripped) == 5:
        return stripped[4]
    return None


def sniff_delimiter(header_line: str) -> str:
    """The most frequent of ; , tab | outside quotes in the header line (ties in that order)."""
    unquoted = _QUOTED.sub("", header_line)
    return max(_DELIMITERS, key=lambda d: (unquoted.count(d), -_DELIMITERS.index(d)))


def map_columns(header: list[str]) -> tuple[Column, ...]:
    """Decide what each non-empty header cell becomes (see FIELD_ALIASES)."""
    cells = [(i, cell.replace("\ufeff", "").strip()) for i, cell in enumerate(header)]
    cells = [(i, cell, fold(cell)) for i, cell in cells if cell]
    split_name = (any(f in _FIRST_NAMES for _, _, f in cells)
                  and any(f in _LAST_NAMES for _, _, f in cells))
    fields: set[str] = set()
    keys: set[str] = set()
    columns = []
    for index, cell, folded in cells:
        field = _field_of(folded, split_name)
        # The first column claiming a field wins; a second "Telefon" is kept as an attribute.
        if field in fields or field == "attribute":
            columns.append(Column(index, cell, "attribute", _attribute_key(index, folded, keys)))
        else:
            fields.add(field)
            columns.append(Column(index, cell, field))
    if "phone" not in fields:
        raise NoPhoneColumnError(cell for _, cell, _ in cells)
    return tuple(columns)


def _field_of(folded: str, split_name: bool) -> str:
    if split_name and folded in _FIRST_NAMES:
        return "first_name"
    if split_name and folded in _LAST_NAMES:
        return "last_name"
    field = _FIELD_OF_HEADER.get(folded, "attribute")
    # With first and last name columns, a full-name column would be a second, competing name.
    return "attribute" if split_name and field == "name" else field


def _attribute_key(index: int, folded: str, keys: set[str]) -> str:
    # Template variables: "Doğum Günü" → dogum_gunu; non-Latin headers get their position.
    key = field_key(folded) or f"column_{index + 1}"
    unique, n = key, 1
    while unique in keys:
        n += 1
        unique = f"{key}_{n}"
    keys.add(unique)
    return unique


class _RowPlan:
    """Column positions resolved once, so each row is a handful of list lookups."""

    def __init__(self, columns: tuple[Column, ...], default_region: str):
        by_field = {c.field: c.index for c in columns if c.field != "attribute"}
        self.width = max(c.index for c in columns) + 1
        self.phone = by_field["phone"]
        parts = ("first_name", "last_name") if "first_name" in by_field else ("name",)
        self.name = tuple(by_field[f] for f in parts if f in by_field)
        self.optional = tuple(by_field.get(f) for f in
                              ("consent", "consent_source", "consent_date", "recipient_type"))
        self.attributes = tuple((c.key, c.index) for c in columns if c.field == "attribute")
        self.default_region = default_region

    def build(self, line: int, row: list[str]) -> ContactRow | RowError:
        raw_phone = row[self.phone].strip()
        if not raw_phone:
            return RowError(line, "missing_phone")
        phone = normalise_phone(raw_phone, self.default_region)
        if phone is None:
            return RowError(line, "invalid_phone")
        consent_at, source_at, date_at, type_at = self.optional
        consent_cell = "" if consent_at is None else row[consent_at].strip()
        source = "" if source_at is None else row[source_at].strip()
        date = "" if date_at is None else row[date_at].strip()
        type_cell = "" if type_at is None else row[type_at].strip()
        consent = _classify("consent", consent_cell) if consent_cell else None
        if consent_cell and consent is None:
            return RowError(line, "invalid_consent")
        recipient_type = _classify("recipient_type", type_cell or "individual")
        if recipient_type is None:
            return RowError(line, "invalid_recipient_type")
        name = " ".join(" ".join(row[i] for i in self.name).split())
        attributes = {key: row[i].strip() for key, i in self.attributes}
        return ContactRow(line, phone, name, attributes, consent, source or None, date or None,
                          recipient_type)


@functools.lru_cache(maxsize=4096)
def _classify(kind: str, raw: str) -> str | None:
    # A file repeats a handful of spellings; the cache keeps fold() off the per-row path.
    table = _VOCABULARY[kind]
    return table.get(raw) or table.get(fold(raw))


def _rows(reader, skipped: int, plan: _RowPlan) -> Iterator[ContactRow | RowError]:
    while True:
        # A row starts on the line after the ones the reader has consumed so far; quoted
        # newlines make it consume several.
        line = skipped + reader.line_num + 1
        row = _next_row(reader, line)
        if row is None:
            return
        joined = "".join(row)
        if not joined.strip():
            continue
        if "\x00" in joined:  # no text column (PostgreSQL) can hold NUL: the row is invalid
            yield RowError(line, "invalid_characters")
            continue
        if len(row) < plan.width:
            row += [""] * (plan.width - len(row))
        yield plan.build(line, row)


def _next_row(reader, line: int) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise CsvFormatError(str(exc), line) from exc


def _physical_lines(text: io.TextIOBase) -> Iterator[str]:
    # readline(limit) keeps memory bounded even when a file has no line breaks at all.
    for number in itertools.count(1):
        line = text.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            raise CsvFormatError("line is longer than 1 MiB", number)
        yield line


def _first_non_blank(lines: Iterator[str]) -> tuple[int, str]:
    for skipped, line in enumerate(lines):
        # A second BOM (a file saved twice over) is not content either.
        if line.replace("\ufeff", "").strip():
            return skipped, line
    raise CsvFormatError("file is empty")


class _Borrowed(io.BufferedIOBase):
    """The caller's file seen through TextIOWrapper, which would otherwise close it when done."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(size)

    read1 = read
