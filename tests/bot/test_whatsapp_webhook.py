"""WhatsApp webhooks: signatures, the hub handshake and parsing of realistic Cloud API payloads."""
from __future__ import annotations

import copy
import json

import pytest
from fakes.graph import (
    PHONE_NUMBER_ID,
    batch,
    button_body,
    signed_webhook,
    status_body,
    text_message_body,
    user_preferences_body,
)
from hypothesis import given
from hypothesis import strategies as st

from bot.whatsapp_webhook import (
    SIGNATURE_HEADER,
    InboundOther,
    InboundText,
    PreferenceChange,
    StatusUpdate,
    handshake,
    parse,
    verify_signature,
)

APP_SECRET = "app-secret-4f9c2b"
VERIFY_TOKEN = "verify-token-77aa"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="


# --- signature ------------------------------------------------------------------------------

def test_a_correctly_signed_body_verifies():
    body, headers = signed_webhook(APP_SECRET, text_message_body("+905321112233", "DUR"))
    assert verify_signature(APP_SECRET, body, headers[SIGNATURE_HEADER])


def test_a_signature_made_with_another_secret_is_refused():
    body, headers = signed_webhook("someone-else", text_message_body("+905321112233", "DUR"))
    assert not verify_signature(APP_SECRET, body, headers[SIGNATURE_HEADER])


def test_a_missing_or_malformed_signature_is_refused():
    body, headers = signed_webhook(APP_SECRET, text_message_body("+905321112233", "DUR"))
    hex_digest = headers[SIGNATURE_HEADER].removeprefix("sha256=")
    for header in (None, "", "sha256=", hex_digest, f"sha1={hex_digest}", "sha256=zz"):
        assert not verify_signature(APP_SECRET, body, header)


def test_a_tampered_body_is_refused():
    body, headers = signed_webhook(APP_SECRET, text_message_body("+905321112233", "Merhaba"))
    tampered = body.replace(b"Merhaba", b"RET")
    assert not verify_signature(APP_SECRET, tampered, headers[SIGNATURE_HEADER])
    # Re-serialising the same JSON changes the bytes too: the raw body must be used.
    reformatted = json.dumps(json.loads(body), indent=1).encode()
    assert not verify_signature(APP_SECRET, reformatted, headers[SIGNATURE_HEADER])


def test_an_empty_app_secret_never_verifies():
    body, headers = signed_webhook("", text_message_body("+905321112233", "DUR"))
    assert not verify_signature("", body, headers[SIGNATURE_HEADER])


def test_the_signature_hex_is_case_insensitive():
    body, headers = signed_webhook(APP_SECRET, text_message_body("+905321112233", "DUR"))
    assert verify_signature(APP_SECRET, body, headers[SIGNATURE_HEADER].upper()
                            .replace("SHA256=", "sha256="))


# --- handshake ------------------------------------------------------------------------------

def test_handshake_echoes_the_challenge_when_the_token_matches():
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
              "hub.challenge": "1158201444"}
    assert handshake(params, VERIFY_TOKEN) == "1158201444"


@pytest.mark.parametrize("params", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1158201444"},
    {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
    {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
    {},
])
def test_handshake_refuses_anything_else(params):
    assert handshake(params, VERIFY_TOKEN) is None


def test_handshake_refuses_when_no_verify_token_is_configured():
    assert handshake({"hub.mode": "subscribe", "hub.verify_token": "",
                      "hub.challenge": "1"}, "") is None


# --- parse ----------------------------------------------------------------------------------

def test_text_message():
    payload = text_message_body("905321112233", "İPTAL", message_id=WAMID,
                                   timestamp="1749416383")
    assert parse(payload) == [InboundText(PHONE_NUMBER_ID, "+905321112233", "İPTAL", WAMID,
                                          1749416383)]


@pytest.mark.parametrize("kind", ["quick_reply", "button_reply", "list_reply"])
def test_buttons_reach_the_keyword_classifier_as_text(kind):
    [event] = parse(button_body("+905321112233", "Stop promotions", kind=kind,
                                   message_id=WAMID))
    assert isinstance(event, InboundText)
    assert (event.from_address, event.text, event.message_id) == \
        ("+905321112233", "Stop promotions", WAMID)


def test_failed_status_carries_the_reference_and_error_code():
    payload = status_body(WAMID, "failed", "905321112233", reference="4711",
                             error_code=131050, timestamp="1750263773")
    assert parse(payload) == [StatusUpdate(PHONE_NUMBER_ID, WAMID, "failed", "+905321112233",
                                           "4711", 131050, 1750263773)]


def test_delivered_status_without_reference():
    [event] = parse(status_body(WAMID, "delivered", "905321112233"))
    assert (event.status, event.reference, event.error_code) == ("delivered", None, None)


@pytest.mark.parametrize("value", ["stop", "resume"])
def test_marketing_preference_change(value):
    payload = user_preferences_body("905321112233", value, timestamp=1731705721)
    assert parse(payload) == [PreferenceChange(PHONE_NUMBER_ID, "+905321112233", value,
                                               "marketing_messages", 1731705721)]


def test_a_batch_of_entries_and_kinds_yields_every_event_in_order():
    payload = batch(
        text_message_body("+905321112233", "RET", message_id="wamid.A"),
        status_body("wamid.B", "read", "+905551112233", reference="17"),
        button_body("+905551112233", "Stop promotions", message_id="wamid.C"),
        button_body("+905441112233", "Abonelik iptal", kind="list_reply",
                       message_id="wamid.D"),
        user_preferences_body("+905321112233", "stop"),
    )
    assert len(payload["entry"]) == 5
    events = parse(payload)
    assert [type(e).__name__ for e in events] == [
        "InboundText", "StatusUpdate", "InboundText", "InboundText", "PreferenceChange"]
    assert [getattr(e, "text", None) for e in events] == [
        "RET", None, "Stop promotions", "Abonelik iptal", None]


def test_several_items_in_one_change_are_all_parsed():
    payload = status_body("wamid.A", "sent", "905321112233", reference="1")
    payload["entry"][0]["changes"][0]["value"]["statuses"].append(
        status_body("wamid.B", "delivered", "905321112233", reference="2")
        ["entry"][0]["changes"][0]["value"]["statuses"][0])
    assert [e.reference for e in parse(payload)] == ["1", "2"]


def test_a_malformed_change_does_not_drop_the_good_ones():
    good = text_message_body("+905321112233", "DUR", message_id="wamid.GOOD")
    broken_items = text_message_body("+905551112233", "x")
    value = broken_items["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        {"from": "905551112233", "type": "text", "timestamp": "1"},  # no id, no text
        {"from": "not-a-number", "id": "wamid.X", "timestamp": "1", "type": "text",
         "text": {"body": "hi"}},
        {"from": "905551112233", "id": "wamid.Y", "timestamp": "soon", "type": "text",
         "text": {"body": "hi"}},
        "garbage",
        {"from": "905551112233", "id": "wamid.OK", "timestamp": "2", "type": "text",
         "text": {"body": "BAŞLA"}},
    ]
    no_metadata = copy.deepcopy(good)
    del no_metadata["entry"][0]["changes"][0]["value"]["metadata"]
    payload = batch(good, broken_items, no_metadata)
    payload["entry"].insert(1, {"id": "1", "changes": "nope"})
    payload["entry"].append("garbage")
    payload["entry"].append({"id": "2", "changes": [{"field": "messages", "value": None}]})
    assert [e.message_id for e in parse(payload)] == ["wamid.GOOD", "wamid.OK"]


def test_unknown_kinds_are_ignored():
    image = text_message_body("+905321112233", "x")
    message = image["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="image", image={"id": "1", "mime_type": "image/jpeg"})
    deleted = status_body(WAMID, "deleted", "905321112233")
    preference = user_preferences_body("905321112233", "maybe")
    templates = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "message_template_status_update",
        "value": {"event": "APPROVED", "message_template_id": 1}}]}]}
    # A photo has no words to classify, but it opens the person's 24 h window.
    assert [type(e) for e in parse(batch(image, deleted, preference, templates))] == [
        InboundOther]


def test_a_body_for_another_object_is_ignored():
    payload = text_message_body("+905321112233", "DUR")
    payload["object"] = "page"
    assert parse(payload) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["entry", "changes", "value", "metadata", "phone_number_id",
                         "messages", "statuses", "user_preferences", "type", "text", "body",
                         "from", "id", "timestamp", "status", "recipient_id", "wa_id",
                         "value", "category", "interactive", "button_reply", "errors",
                         "code"]), inner, max_size=4),
    max_leaves=25)


@given(json_values)
def test_parse_never_raises_on_arbitrary_json(value):
    parse({"object": "whatsapp_business_account", "entry": value})
    parse({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]})
    items = {"metadata": {"phone_number_id": "1"}, "messages": value, "statuses": value,
             "user_preferences": value}
    parse({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": items}]}]})
