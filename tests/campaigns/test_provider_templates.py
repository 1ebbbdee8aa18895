"""The pure rules for WhatsApp templates (campaigns.provider_templates) and Graph's listing
and status webhook shapes (bot.whatsapp_templates, bot.whatsapp_webhook)."""
import pytest
from fakes.graph import quick_reply, template, template_status_body

from bot.whatsapp_templates import TemplateSyncError, parse_page, refused
from bot.whatsapp_webhook import TemplateStatusChange, parse
from campaigns.provider_templates import (
    ProviderTemplateError,
    StoredTemplate,
    body_parameter_count,
    check_for_campaign,
    filled,
    has_refusal_path,
    names_sender,
    unsupported,
)

NAMES = ["Örnek Mağaza", "ÖRNEK"]


def _components(**kw) -> tuple[dict, ...]:
    return tuple(template("t", **kw)["components"])


def test_parameters_are_the_body_slots():
    assert body_parameter_count(_components(body="Merhaba {{1}}, {{2}} ve yine {{1}}")) == 2
    assert body_parameter_count(_components(body="Sabit metin")) == 0
    assert unsupported(_components(body="Merhaba {{first_name}}")) == "named variables in " \
                                                                      "the body"
    assert unsupported(_components(header="Fırsat {{1}}")) == "a variable in the header"
    url = {"type": "URL", "text": "Bak", "url": "https://ornek.com/{{1}}"}
    assert unsupported(_components(buttons=[url])) == "a variable in a URL button"
    media = ({"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "x"})
    assert unsupported(media) == "a media header (image)"
    assert unsupported(_components(header="Fırsat", buttons=[quick_reply("RET")])) is None


@pytest.mark.parametrize("footer, buttons, expected", [
    ("Mesaj almak istemiyorsanız RET yazıp yanıtlayın.", (), True),
    ("İstemiyorsanız ret yazın", (), True),
    ("To stop, reply STOP", (), True),
    (None, [quick_reply("Stop promotions")], True),
    (None, [quick_reply("Durdur")], True),
    (None, [quick_reply("İptal")], True),
    (None, [quick_reply("Hemen al")], False),
    ("Bizi takip edin", (), False),
    ("Retro koleksiyon", (), False),  # "ret" only as a whole word
    (None, [{"type": "URL", "text": "RET", "url": "https://ornek.com"}], False),
])
def test_refusal_path(footer, buttons, expected):
    components = _components(body="Merhaba {{1}}", footer=footer, buttons=buttons)
    assert has_refusal_path(components, NAMES) is expected


def test_sender_is_named_as_whole_words_any_spelling():
    assert names_sender(_components(body="ORNEK MAGAZA'dan merhaba {{1}}"), NAMES)
    assert names_sender(_components(body="Merhaba", footer="Örnek — RET"), NAMES)
    assert not names_sender(_components(body="Örnekler burada {{1}}"), NAMES)
    assert not names_sender(_components(body="Merhaba {{1}}"), [" "])


def test_check_for_campaign_codes():
    good = StoredTemplate("t", "tr", "APPROVED", _components(
        body="Örnek Mağaza: merhaba {{1}}", footer="RET yazın"))

    def code(stored, params=("{{name}}",), commercial=True):
        try:
            check_for_campaign(stored, list(params), commercial=commercial, names=NAMES,
                               name="t", language="tr")
        except ProviderTemplateError as exc:
            return exc.code
        return None
    assert code(good) is None
    assert code(None) == "unknown_template"
    assert code(StoredTemplate("t", "tr", "PAUSED", good.components)) == "template_not_approved"
    assert code(good, params=()) == "template_parameters"
    bare = StoredTemplate("t", "tr", "APPROVED", _components(body="Merhaba {{1}}"),
                          category="MARKETING")
    assert code(bare) == "template_lacks_opt_out"
    assert code(bare, commercial=False) == "marketing_template"
    notice = StoredTemplate("t", "tr", "APPROVED", bare.components, category="UTILITY")
    assert code(notice, commercial=False) is None


def test_filled_preview_shows_values_and_buttons():
    components = _components(body="Merhaba {{1}}, {{2}}!", footer="RET yazın",
                             buttons=[quick_reply("Durdur")])
    assert filled(components, ["Ayşe", "Van"]) == "Merhaba Ayşe, Van!\n\nRET yazın\n\n[Durdur]"
    assert filled(components, ["Ayşe"]).startswith("Merhaba Ayşe, {{2}}!")


def test_listing_page_and_errors():
    page = {"data": [template("a"), {"name": "bozuk"}, "x", template("b", "REJECTED",
                                                                      rejected_reason="ABUSIVE")],
            "paging": {"cursors": {"before": "QQ", "after": "Qg"},
                       "next": "https://graph.facebook.com/v21.0/1/message_templates?after=Qg"}}
    found, after = parse_page(page)
    assert [(t.name, t.status, t.reason) for t in found] == [
        ("a", "APPROVED", None), ("b", "REJECTED", "ABUSIVE")]
    assert after == "Qg"
    del page["paging"]["next"]  # the last page
    assert parse_page(page)[1] is None
    with pytest.raises(TemplateSyncError) as caught:
        parse_page({"error": {}})
    assert caught.value.code == "provider_malformed"
    token = {"error": {"message": "Invalid OAuth access token", "type": "OAuthException",
                       "code": 190, "fbtrace_id": "Axyz"}}
    assert refused(401, token).code == "whatsapp_auth_failed"
    assert "Axyz" in str(refused(401, token))
    assert refused(400, {"error": {"code": 100, "error_subcode": 33}}).code == \
        "whatsapp_unknown_account"
    assert refused(400, {"error": {"code": 80007}}).code == "provider_rate_limited"
    assert refused(502, None).code == "provider_unavailable"


def test_status_webhook_is_parsed():
    payload = template_status_body("yaz", "PAUSED", language="en_US", template_id=42,
                                      title="FIRST_PAUSE", description="3 saat")
    (event,) = parse(payload)
    assert event == TemplateStatusChange(waba_id=payload["entry"][0]["id"], event="PAUSED",
                                         name="yaz", language="en_US", template_id="42",
                                         reason="FIRST_PAUSE: 3 saat")
    rejected = template_status_body("yaz", "REJECTED", reason="INCORRECT_CATEGORY")
    assert parse(rejected)[0].reason == "INCORRECT_CATEGORY"
    broken = template_status_body("yaz", "PAUSED")
    del broken["entry"][0]["changes"][0]["value"]["message_template_name"]
    assert parse(broken) == []
