"""Contact CSV import: the files Turkish businesses export from Excel come out as contact rows."""

import codecs
import csv
import io
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.csvparse import (
    MAX_LINE_CHARS,
    ContactRow,
    CsvFormatError,
    NoPhoneColumnError,
    RowError,
    detect_encoding,
    parse,
    sniff_delimiter,
)


def parsed(text: str, encoding: str = "utf-8"):
    return parse(io.BytesIO(text.encode(encoding)))


def rows(text: str, encoding: str = "utf-8") -> list:
    return list(parsed(text, encoding).rows)


def only(text: str) -> ContactRow:
    (row,) = rows(text)
    assert isinstance(row, ContactRow), row
    return row


def test_windows_1254_semicolon_file_with_turkish_headers_and_names():
    text = ("TELEFON;Ad;İzin\r\n0532 111 22 33;Şükrü Çağlayan;Evet\r\n"
            "0533 111 22 33;Işıl Ünlü;HAYIR\r\n0534 111 22 33;İsmail Göğüş;\r\n")
    result = parsed(text, "cp1254")
    assert (result.encoding, result.delimiter) == ("cp1254", ";")
    got = [(r.phone, r.name, r.consent) for r in result.rows]
    assert got == [("+905321112233", "Şükrü Çağlayan", "granted"),
                   ("+905331112233", "Işıl Ünlü", "revoked"),
                   ("+905341112233", "İsmail Göğüş", None)]


def test_utf8_with_bom_and_commas():
    result = parse(io.BytesIO(codecs.BOM_UTF8 + "Phone,Name\n5321112233,Gülşen\n".encode()))
    assert (result.encoding, result.delimiter) == ("utf-8-sig", ",")
    assert [c.field for c in result.columns] == ["phone", "name"]
    assert [(r.phone, r.name) for r in result.rows] == [("+905321112233", "Gülşen")]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_excel_unicode_text_is_utf16_with_tabs(encoding):
    text = "Cep Telefonu\tAd Soyad\tŞehir\r\n0532 111 22 33\tÇağrı Öz\tİzmir\r\n"
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    result = parse(io.BytesIO(bom + text.encode(encoding)))
    assert (result.encoding, result.delimiter) == ("utf-16", "\t")
    (row,) = result.rows
    assert (row.phone, row.name, row.attributes) == ("+905321112233", "Çağrı Öz",
                                                     {"sehir": "İzmir"})


def test_utf8_without_bom_is_recognised():
    assert parsed("telefon;ad\n5321112233;Ümran\n").encoding == "utf-8"


def test_a_single_cp1254_byte_at_the_end_of_a_large_file_is_noticed(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"telefon;ad\n" + b"5321112233;Ali\n" * 20000 + "5331112233;Ağa\n"
                     .encode("cp1254"))
    with path.open("rb") as f:
        assert detect_encoding(f) == "cp1254"
        assert f.tell() == 0
        assert [r.name for r in parse(f).rows][-1] == "Ağa"


def test_a_utf8_header_over_windows_1254_rows_reads_both():
    # Typed in a UTF-8 editor above rows exported from Excel (Windows-1254): each part is read
    # in its own encoding, so the column is "sehir" and the names keep their letters.
    data = ("telefon;ad soyad;şehir;izin\n0532 111 22 33;Şükrü Çağlayan;İzmir;evet\n".encode()
            + "0532 111 22 34;Ayşe Işık;Iğdır;hayır\n".encode("cp1254"))
    result = parse(io.BytesIO(data))
    assert result.encoding == "utf-8+cp1254"
    assert [c.key for c in result.columns if c.field == "attribute"] == ["sehir"]
    assert [(r.name, r.attributes, r.consent) for r in result.rows] == [
        ("Şükrü Çağlayan", {"sehir": "İzmir"}, "granted"),
        ("Ayşe Işık", {"sehir": "Iğdır"}, "revoked")]


@given(st.lists(st.text(alphabet="abcçdefgğhıijklmnoöprsştuüvyzABCÇDEFGĞHIİJKLMNOÖPRSŞTUÜVYZ "
                                 "'-.,0123456789", min_size=1, max_size=30),
                min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_a_windows_1254_file_is_never_taken_for_a_mix(names):
    text = "telefon;ad\n" + "".join(f"0532 111 22 {i % 100:02d};{n.strip() or 'x'}\n"
                                     for i, n in enumerate(names))
    result = parse(io.BytesIO(text.encode("cp1254")))
    assert result.encoding in ("cp1254", "utf-8")  # utf-8 when it is all ASCII
    assert [r.name for r in result.rows if isinstance(r, ContactRow)] == [
        " ".join((n.strip() or "x").split()) for n in names]


def test_quoted_delimiter_and_newline_shift_later_line_numbers():
    text = ('telefon;ad;not\n05321112233;"Yılmaz; Ahmet\nikinci satır";"a\n\nb"\n'
            "05331112233;Ayşe;x\n")
    first, second = rows(text)
    assert (first.line, first.name, first.attributes) == (2, "Yılmaz; Ahmet ikinci satır",
                                                          {"not": "a\n\nb"})
    assert (second.line, second.name) == (6, "Ayşe")


def test_duplicates_are_all_yielded():
    result = rows("telefon\n05321112233\n+90 532 111 22 33\n")
    assert [r.phone for r in result] == ["+905321112233", "+905321112233"]


def test_the_forms_of_one_number_in_a_file_give_one_e164():
    text = "telefon\n0532 111 22 33\n+90 (532) 111-22-33\n905321112233\n5321112233\n"
    assert {r.phone for r in rows(text)} == {"+905321112233"}


def test_bad_rows_get_reasons_and_line_numbers_while_good_rows_flow():
    text = ("telefon;izin;tip\n0532 111 22 33;evet;bireysel\n;evet;\n5,32111E+09;;\n"
            "0533 111 22 33;belki;\n\n0534 111 22 33;;kooperatif\n0535 111 22 33;;esnaf\n")
    got = [(r.line, r.reason) if isinstance(r, RowError) else (r.line, r.phone) for r in rows(text)]
    assert got == [(2, "+905321112233"), (3, "missing_phone"), (4, "invalid_phone"),
                   (5, "invalid_consent"), (7, "invalid_recipient_type"), (8, "+905351112233")]


def test_no_phone_column_names_the_columns_found():
    with pytest.raises(NoPhoneColumnError) as caught:
        parsed("Ad Soyad;E-posta;;Şehir\nAli;a@b.c;;Ankara\n")
    message = str(caught.value)
    assert message.startswith("no phone column: expected one of phone, telefon, gsm, cep")
    assert "Ad Soyad, E-posta, Şehir" in message
    assert isinstance(caught.value, CsvFormatError) and isinstance(caught.value, ValueError)
    assert caught.value.columns == ("Ad Soyad", "E-posta", "Şehir")


@pytest.mark.parametrize("data", [
    b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, b"\r\n\r\n  \n", "\ufeff\n".encode("utf-16"),
])
def test_empty_file(data):
    with pytest.raises(CsvFormatError, match=r"^file is empty$"):
        parse(io.BytesIO(data))


def test_attribute_keys_become_template_identifiers():
    text = ("Telefon;Doğum Günü;Şehir;E-posta;Şehir;;2024 Ciro;Город\n"
            "5321112233;1 Mayıs;Van;e@x;Muş;;5;М\n")
    result = parsed(text)
    assert only(text).attributes == {
        "dogum_gunu": "1 Mayıs", "sehir": "Van", "e_posta": "e@x", "sehir_2": "Muş",
        "column_2024_ciro": "5", "column_8": "М"}
    assert [c.index for c in result.columns] == [0, 1, 2, 3, 4, 6, 7]


def test_first_and_last_name_columns_are_combined():
    row = only("Soyadı;Adı;GSM;Ad Soyad\nÇelik;  Zeynep  Su ;5321112233;x\n")
    assert row.name == "Zeynep Su Çelik"
    assert row.attributes == {"ad_soyad": "x"}


def test_a_lone_first_name_column_is_the_name():
    assert only("isim;gsm no\nİpek;5321112233\n").name == "İpek"


@pytest.mark.parametrize(("header", "field"), [
    ("TELEFON NUMARASI", "phone"), ("Gsm_No", "phone"), ("Cep Tel.", "phone"),
    ("WhatsApp Numarası", "phone"), ("MSISDN", "phone"), ("Müşteri Adı", "name"),
    ("İletişim İzni", "consent"), ("KVKK ONAYI", "consent"), ("consent_source", "consent_source"),
    ("İzin Kaynağı", "consent_source"), ("İZİN TARİHİ", "consent_date"),
    ("Alıcı Tipi", "recipient_type"), ("MÜŞTERİ TİPİ", "recipient_type"),
])
def test_header_aliases_are_case_and_turkish_insensitive(header, field):
    columns = parsed(f"numara;{header}\n5321112233;x\n").columns
    if field == "phone":
        assert [c.field for c in columns] == ["phone", "attribute"]
    else:
        assert columns[1].field == field


@pytest.mark.parametrize(("value", "consent"), [
    ("granted", "granted"), ("EVET", "granted"), ("E", "granted"), ("1", "granted"),
    ("Onaylı", "granted"), ("ONAYLI", "granted"), ("izin  var", "granted"), ("X", "granted"),
    ("✓", "granted"), ("Kabul", "granted"), ("HAYIR", "revoked"), ("hayir", "revoked"),
    ("0", "revoked"), ("İPTAL", "revoked"), ("İzin Yok", "revoked"), ("Red", "revoked"),
    ("", None), ("   ", None),
])
def test_consent_values(value, consent):
    assert only(f"telefon,izin\n5321112233,{value}\n").consent == consent


@pytest.mark.parametrize(("value", "kind"), [
    ("", "individual"), ("Bireysel", "individual"), ("KİŞİ", "individual"), ("b", "individual"),
    ("TACİR", "merchant"), ("Şirket", "merchant"), ("sirket", "merchant"), ("T", "merchant"),
    ("Kurumsal", "merchant"), ("esnaf", "merchant"),
])
def test_recipient_types(value, kind):
    assert only(f"telefon,tip\n5321112233,{value}\n").recipient_type == kind


def test_consent_source_and_date_are_kept_as_written_but_trimmed():
    row = only("telefon;kaynak;tarih\n5321112233;  Mağaza formu ;01.02.2024 \n")
    assert (row.consent_source, row.consent_date) == ("Mağaza formu", "01.02.2024")
    assert only("telefon;kaynak;tarih\n5321112233;;\n").consent_source is None


def test_blank_lines_short_rows_and_extra_cells():
    text = "telefon;ad;şehir\n\n;;\n 5321112233 ;  Ali   Veli \n5331112233;Can;Rize;fazla;hücre\n"
    first, second = rows(text)
    assert (first.line, first.name, first.attributes) == (4, "Ali Veli", {"sehir": ""})
    assert (second.line, second.attributes) == (5, {"sehir": "Rize"})


def test_leading_blank_lines_count_towards_line_numbers():
    assert only("\n\ntelefon\n5321112233\n").line == 4


@pytest.mark.parametrize(("header", "delimiter"), [
    ("telefon;ad", ";"), ("telefon,ad", ","), ("telefon\tad", "\t"), ("telefon|ad", "|"),
    ('"ad; soyad",telefon', ","), ("a,b;c", ";"), ("a,b\tc", ","), ("a\tb|c", "\t"),
    ("telefon", ";"), ('"a,b,c";"d|e"|f|g', "|"),
])
def test_delimiter_is_sniffed_from_the_header_outside_quotes(header, delimiter):
    assert sniff_delimiter(header) == delimiter


def test_a_line_over_one_mebibyte_is_a_format_error_with_its_line_number():
    text = "telefon;ad\n5321112233;a\n5321112233;" + "x" * MAX_LINE_CHARS + "\n"
    with pytest.raises(CsvFormatError, match=r"^line 3: ") as caught:
        rows(text)
    assert caught.value.line == 3


def test_an_oversized_field_is_a_format_error_with_its_line_number():
    limit = csv.field_size_limit()
    text = 'telefon;ad\n5321112233;a\n5321112233;"unclosed\n' + ("y" * 1000 + "\n") * (
        limit // 1000 + 1)
    result = parsed(text)
    assert isinstance(next(result.rows), ContactRow)
    with pytest.raises(CsvFormatError, match=r"^line 3: field larger than field limit"):
        next(result.rows)


def test_the_callers_file_is_left_open():
    f = io.BytesIO(b"telefon\n5321112233\n")
    result = parse(f)
    del result
    assert not f.closed
    assert len(list(parse(f).rows)) == 1


def test_a_large_file_is_streamed_not_held(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("w", encoding="cp1254", newline="") as f:
        f.write("Telefon;Ad Soyad;İzin;Şehir\r\n")
        for i in range(40_000):
            f.write(f"0532 {i // 10000:03d} {i // 100 % 100:02d} {i % 100:02d};"
                    f"Şükrü Çağlayan {i};evet;İstanbul\r\n")
    tracemalloc.start()
    try:
        with path.open("rb") as f:
            count = sum(isinstance(r, ContactRow) for r in parse(f).rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 40_000
    assert path.stat().st_size > 2_000_000
    # Holding these rows would take about 23 MB (measured); streamed, the peak is ~0.2 MB.
    assert peak < 5 * 1024 * 1024


def test_excel_separator_hint_line_is_honoured_and_skipped():
    parsed = parse(io.BytesIO(b"sep=;\nTelefon Numaras\xfd;Ad\xfd Soyad\xfd\n05321112233;\xdeule\n"
                              b"abc;x\n"))
    assert parsed.delimiter == ";"
    rows = list(parsed.rows)
    assert rows[0].phone == "+905321112233" and rows[0].name == "Şule" and rows[0].line == 3
    assert (rows[1].line, rows[1].reason) == (4, "invalid_phone")


def test_a_row_with_nul_is_invalid_and_a_header_with_nul_is_refused():
    """No text column (PostgreSQL) holds NUL: the row is reported, the others still land."""
    rows = list(parse(io.BytesIO(b"phone,name,sehir\n05321112233,A\x00li,x\n"
                                 b"05321112234,Veli,Bur\x00sa\n05321112235,Can,x\n")).rows)
    assert [(r.line, r.reason) for r in rows[:2]] == [(2, "invalid_characters"),
                                                       (3, "invalid_characters")]
    assert rows[2].phone == "+905321112235"
    with pytest.raises(CsvFormatError):
        parse(io.BytesIO(b"phone,na\x00me\n05321112233,Ali\n"))
