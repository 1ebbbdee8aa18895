"""Message templates: placeholders fill per contact, and commercial messages carry the footer."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.csvparse import map_columns
from campaigns.render import (
    DEFAULT_FIELDS,
    MAX_TEMPLATE_CHARS,
    Template,
    TemplateError,
    check_placeholders,
    compile_template,
    compose,
    field_key,
    footer,
    render,
)

TR_REFUSAL = "Mesaj almak istemiyorsanız RET yazıp yanıtlayın."


def fill(text: str, **fields: str) -> str:
    return render(compile_template(text), fields)


def invalid(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert caught.value.code == "invalid_template"
    return caught.value


# Syntax


def test_placeholder_is_replaced_by_the_field_value():
    assert fill("Merhaba {{name}}!", name="Ayşe") == "Merhaba Ayşe!"


def test_spaces_inside_the_braces_are_allowed():
    assert fill("Merhaba {{ name }} / {{phone  }}", name="Ayşe", phone="+90532") == (
        "Merhaba Ayşe / +90532")


def test_text_without_placeholders_is_kept_as_written():
    template = compile_template("Kampanya başladı!")
    assert isinstance(template, Template)
    assert template.placeholders == frozenset()
    assert template.source == "Kampanya başladı!"
    assert render(template, {}) == "Kampanya başladı!"


def test_placeholders_lists_every_field_once():
    template = compile_template("{{name}} {{Şehir|?}} {{NAME}}")
    assert template.placeholders == {"name", "sehir"}


def test_lone_closing_braces_and_single_braces_are_literal_text():
    assert fill("Hoş geldin }} {x} {{name}} :-}}", name="Ali") == "Hoş geldin }} {x} Ali :-}}"


def test_empty_template_is_refused():
    assert "empty" in str(invalid(""))
    invalid("  \n ")


def test_template_over_the_length_limit_is_refused():
    compile_template("x" * MAX_TEMPLATE_CHARS)
    assert "4096" in str(invalid("x" * (MAX_TEMPLATE_CHARS + 1)))


@pytest.mark.parametrize("text", ["Merhaba {{name", "{{", "a }} {{", "{{ hi {{name}}"])
def test_unclosed_placeholder_is_refused(text):
    assert "unclosed" in str(invalid(text))


@pytest.mark.parametrize("text", ["{{}}", "{{ }}", "{{|x}}", "{{ | Değerli müşterimiz}}"])
def test_placeholder_without_a_name_is_refused(text):
    assert "no field name" in str(invalid(text))


@pytest.mark.parametrize("name", ["na me", "a.b", "name.__class__", "a-b", "x[0]", "{name"])
def test_name_with_other_characters_is_refused(name):
    error = invalid(f"Merhaba {{{{{name}}}}}")
    assert error.placeholder == name
    assert "letters, digits and underscores" in str(error)


def test_doubled_braces_are_not_an_escape():
    invalid("{{{{name}}}}")


# Fallbacks


def test_fallback_fills_a_missing_field():
    assert fill("Merhaba {{name|Değerli müşterimiz}},") == "Merhaba Değerli müşterimiz,"


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_fallback_fills_a_blank_field(blank):
    assert fill("{{ name | Değerli müşterimiz }}", name=blank) == "Değerli müşterimiz"


def test_value_wins_over_fallback():
    assert fill("{{name|Değerli müşterimiz}}", name="Ayşe") == "Ayşe"


def test_missing_field_without_fallback_renders_empty():
    assert fill("Merhaba {{name}}, {{sehir}}.", name=" ") == "Merhaba , ."


def test_fallback_text_after_the_first_bar_is_literal():
    assert fill("{{name|a|b {x} ğüşiöç}}") == "a|b {x} ğüşiöç"


def test_empty_fallback_renders_nothing():
    assert fill("Merhaba{{name|}}!") == "Merhaba!"


# Turkish field names


@pytest.mark.parametrize(("written", "key"), [
    ("Şehir", "sehir"), ("İsim", "isim"), ("ISIM", "isim"), ("ısım", "isim"),
    ("Doğum_Günü", "dogum_gunu"), ("ÇÖÜĞ_İı", "coug_ii"), ("2024_Puan", "column_2024_puan"),
    ("NAME", "name"), ("__x__", "x"),
])
def test_field_names_fold_like_column_keys(written, key):
    assert field_key(written) == key
    assert compile_template(f"{{{{{written}}}}}").placeholders == {key}


def test_field_keys_match_csv_column_keys():
    headers = ["Telefon", "Doğum Günü", "Şehir", "İlçe", "Meslek_Grubu", "2024 Puan"]
    keys = [column.key for column in map_columns(headers) if column.field == "attribute"]
    assert keys == [field_key(header) for header in headers[1:]]


def test_field_keys_in_the_mapping_are_folded_too():
    template = compile_template("{{şehir}} {{Doğum_Günü}}")
    assert render(template, {"ŞEHİR": "İzmir", "doğum günü": "12 Mart"}) == "İzmir 12 Mart"


# Unknown placeholders


def test_unknown_placeholder_is_named_with_the_available_fields():
    template = compile_template("Merhaba {{name}}, {{sehirr}} ve {{ilcee}}")
    with pytest.raises(TemplateError) as caught:
        check_placeholders(template, [*DEFAULT_FIELDS, "Şehir"])
    assert caught.value.code == "unknown_placeholder"
    assert caught.value.placeholder == "sehirr"
    assert str(caught.value) == "unknown placeholder {{sehirr}}; available: name, phone, sehir"


def test_known_placeholders_pass_whatever_their_spelling():
    template = compile_template("{{NAME}} {{İsim}} {{ŞEHİR}}")
    check_placeholders(template, ["name", "isim", "sehir"])


def test_placeholder_with_fallback_may_be_unknown():
    template = compile_template("Merhaba {{unvan|Değerli müşterimiz}}")
    check_placeholders(template, DEFAULT_FIELDS)
    assert render(template, {"name": "Ayşe"}) == "Merhaba Değerli müşterimiz"


def test_no_available_fields_says_none():
    with pytest.raises(TemplateError, match=r"available: none$"):
        check_placeholders(compile_template("{{name}}"), [])


# Values are data, never code


def test_values_are_not_expanded_again():
    template = compile_template("Merhaba {{name}}")
    assert render(template, {"name": "{{phone}}", "phone": "+905321112233"}) == (
        "Merhaba {{phone}}")


@pytest.mark.parametrize("value", ["{0.__class__}", "%(name)s", "${name}", "{name!r}"])
def test_values_go_in_verbatim(value):
    assert fill("[{{name}}]", name=value) == f"[{value}]"


def test_dunder_placeholder_is_just_a_missing_field():
    template = compile_template("x{{__class__}}y{{__init__|z}}")
    assert render(template, {"name": "Ayşe"}) == "xyz"
    with pytest.raises(TemplateError) as caught:
        check_placeholders(template, DEFAULT_FIELDS)
    assert caught.value.code == "unknown_placeholder"


def test_attribute_access_is_a_syntax_error():
    invalid("{{name.__class__}}")
    invalid("{{name.__class__.__mro__|x}}")


# Footer


def test_turkish_footer_names_sender_contact_and_refusal():
    assert footer("Acme Ltd", "0212 555 00 00") == f"Acme Ltd (0212 555 00 00) — {TR_REFUSAL}"


def test_footer_without_contact_has_no_parentheses():
    assert footer("Acme Ltd") == f"Acme Ltd — {TR_REFUSAL}"
    assert footer("Acme Ltd", "  ") == f"Acme Ltd — {TR_REFUSAL}"


@pytest.mark.parametrize("language", ["en", "EN", "en-GB", "en_US"])
def test_english_footer(language):
    assert footer("Acme", "info@acme.com.tr", language) == (
        "Acme (info@acme.com.tr) — To stop receiving messages, reply STOP.")


def test_unknown_language_gets_the_turkish_footer():
    assert footer("Acme", language="de").endswith(TR_REFUSAL)


def test_tenant_wording_replaces_only_the_instruction():
    wording = "Listeden çıkmak için İPTAL yazın, ücretsizdir."
    assert footer("Acme", "0850", opt_out_text=wording) == f"Acme (0850) — {wording}"
    assert footer("Acme", opt_out_text="  ") == f"Acme — {TR_REFUSAL}"


def test_footer_requires_the_sender_name():
    with pytest.raises(ValueError, match="trade name"):
        footer("  ", "0850")


# Compose


def test_commercial_message_always_ends_with_the_footer():
    template = compile_template("Merhaba {{name}}, %20 indirim! RET yazıp yanıtlayın.")
    message = compose(template, {"name": "Ayşe"}, commercial=True, sender_name="Acme",
                      sender_contact="0850 000 00 00")
    assert message == ("Merhaba Ayşe, %20 indirim! RET yazıp yanıtlayın.\n\n"
                       f"Acme (0850 000 00 00) — {TR_REFUSAL}")


def test_commercial_footer_follows_language_and_tenant_wording():
    template = compile_template("Hi {{name}}")
    english = compose(template, {"name": "Jo"}, commercial=True, sender_name="Acme",
                      language="en")
    assert english == "Hi Jo\n\nAcme — To stop receiving messages, reply STOP."
    worded = compose(template, {}, commercial=True, sender_name="Acme", opt_out_text="Yaz: RET")
    assert worded == "Hi \n\nAcme — Yaz: RET"


def test_informational_message_has_no_footer():
    template = compile_template("Siparişiniz {{siparis_no}} kargoya verildi.")
    message = compose(template, {"siparis_no": "A-17"}, commercial=False, sender_name="Acme")
    assert message == "Siparişiniz A-17 kargoya verildi."


# Properties

literal_text = st.text(min_size=1, max_size=MAX_TEMPLATE_CHARS).filter(
    lambda text: "{{" not in text and text.strip())
field_maps = st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=8)


@given(literal_text, field_maps)
def test_literal_text_renders_unchanged(text, fields):
    assert render(compile_template(text), fields) == text


@given(field_maps)
def test_render_never_raises(fields):
    template = compile_template("{{name|Değerli müşterimiz}} {{ Şehir }} {{__class__}} {{x}}}}")
    assert isinstance(render(template, fields), str)


@given(st.lists(st.sampled_from(["name", "Şehir", "İsim", "a_1"]), min_size=1, max_size=5),
       field_maps)
def test_render_puts_values_in_order(names, fields):
    template = compile_template("|".join(f"{{{{{name}|-}}}}" for name in names))
    values = {field_key(key): value for key, value in fields.items()}
    filled = [values.get(field_key(name), "") for name in names]
    assert render(template, fields) == "|".join(value if value.strip() else "-"
                                                for value in filled)
