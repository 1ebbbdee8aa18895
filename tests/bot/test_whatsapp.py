"""The WhatsApp channel against a fake Graph API: sends, error classification, limits, secrecy."""
from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest
from fakes.graph import PHONE_NUMBER_ID, GraphState, create_graph_app
from hypothesis import given
from hypothesis import strategies as st

from bot.whatsapp import (
    WhatsAppChannel,
    WhatsAppCredentials,
    WhatsAppCredentialsError,
    classify,
    classify_exception,
    outcome_for_error,
    template_body,
)
from campaigns.ports import (
    LINE_PAUSE_CODES,
    Blocked,
    Line,
    MaybeSent,
    OptedOut,
    OutboundMessage,
    PermanentFailure,
    RateLimited,
    Sent,
    TemporaryFailure,
    Unavailable,
)

LINE = Line(id="line-wa-1", tenant_id="tenant-1", channel="whatsapp", name="WhatsApp",
            rate_per_second=80.0, state="active")
TOKEN = "EAAG-s3cr3t-access-token-0123456789"
APP_SECRET = "app-secret-4f9c2b"
VERIFY_TOKEN = "verify-token-77aa"
ADDRESS = "+905321112233"
TEXT = "Merhaba Ayşe, kampanyamız başladı. RET yazıp yanıtlayın."


class Clock:
    """The fake's time, moved by hand so rate limits are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> GraphState:
    return GraphState(access_token=TOKEN, clock=clock)


@pytest.fixture
async def graph(aiohttp_server, state: GraphState):
    return await aiohttp_server(create_graph_app(state), host="127.0.0.1")


def credentials_at(base_url: str, token: str = TOKEN) -> tuple[str, WhatsAppCredentials]:
    """Where the channel sends (the operator's providers.whatsapp_url) and the line's secrets."""
    return base_url, WhatsAppCredentials(phone_number_id=PHONE_NUMBER_ID, access_token=token,
                                         app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)


@pytest.fixture
def credentials(graph) -> tuple[str, WhatsAppCredentials]:
    return credentials_at(str(graph.make_url("/v21.0")))


async def open_channel(located: tuple[str, WhatsAppCredentials], timeout: float = 5.0):
    base_url, credentials = located

    async def credentials_for(line: Line) -> WhatsAppCredentials:
        assert line.id == LINE.id
        return credentials
    return WhatsAppChannel(credentials_for, base_url=base_url, timeout=timeout)


@pytest.fixture
async def channel(credentials):
    channel = await open_channel(credentials)
    yield channel
    await channel.close()


def number(i: int) -> str:
    return f"+90532{i:07d}"


async def test_send_returns_sent_with_the_wamid(channel, state):
    result = await channel.send(LINE, ADDRESS, OutboundMessage(TEXT, reference="4711"))
    assert isinstance(result, Sent)
    assert result.provider_id.startswith("wamid.")
    [sent] = state.sent
    assert sent["id"] == result.provider_id
    assert (sent["to"], sent["text"], sent["reference"]) == ("905321112233", TEXT, "4711")
    await channel.flush()  # nothing buffered, nothing to do


async def test_request_body_is_a_text_message_with_biz_opaque_callback_data(channel, state):
    await channel.send(LINE, ADDRESS, OutboundMessage(TEXT, reference="4711"))
    assert state.requests == [{
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "905321112233",
        "type": "text", "text": {"preview_url": False, "body": TEXT},
        "biz_opaque_callback_data": "4711"}]


@pytest.mark.parametrize(("code", "expected"), [
    (130429, RateLimited(1.0)),
    (131056, RateLimited(6.0)),
    (131048, PermanentFailure("spam_rate_limited")),
    (368, PermanentFailure("policy_blocked")),
    (131050, OptedOut()),
    (131026, PermanentFailure("undeliverable")),
    (131047, PermanentFailure("outside_window")),
    (131049, TemporaryFailure("marketing_cap")),
    (4, RateLimited(60.0)),
    (80007, RateLimited(60.0)),
    (613, RateLimited(60.0)),
    (100, PermanentFailure("invalid_request")),
    (131000, Unavailable("provider_unavailable")),
    (2, Unavailable("provider_unavailable")),
    (10, PermanentFailure("graph_10")),
    (133010, PermanentFailure("graph_133010")),
])
async def test_each_graph_error_code_maps_to_its_outcome(channel, state, code, expected):
    state.fail["905321112233"] = code
    assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == expected
    assert state.sent == []


def test_spam_and_policy_errors_pause_the_line():
    assert outcome_for_error(131048).code in LINE_PAUSE_CODES
    assert outcome_for_error(368).code in LINE_PAUSE_CODES
    assert outcome_for_error(131026).code not in LINE_PAUSE_CODES


async def test_retry_after_header_overrides_the_default_wait(channel, state):
    state.retry_after = "2.5"
    state.fail["905321112233"] = 130429
    assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == RateLimited(2.5)


async def test_burst_beyond_80_per_second_is_rate_limited_130429(channel, state, clock):
    results = await asyncio.gather(*(
        channel.send(LINE, number(i), OutboundMessage(TEXT)) for i in range(100)))
    assert sum(isinstance(r, Sent) for r in results) == 80
    assert [r for r in results if not isinstance(r, Sent)] == [RateLimited(1.0)] * 20
    clock.now += 1.0  # the number's bucket refills at 80/s
    assert isinstance(await channel.send(LINE, number(100), OutboundMessage(TEXT)), Sent)


async def test_two_quick_sends_to_one_user_hit_the_pair_limit_131056(channel, state, clock):
    assert isinstance(await channel.send(LINE, ADDRESS, OutboundMessage("bir")), Sent)
    assert await channel.send(LINE, ADDRESS, OutboundMessage("iki")) == RateLimited(6.0)
    assert isinstance(await channel.send(LINE, number(1), OutboundMessage("üç")), Sent)
    clock.now += 6.0
    assert isinstance(await channel.send(LINE, ADDRESS, OutboundMessage("dört")), Sent)
    assert [m["text"] for m in state.sent] == ["bir", "üç", "dört"]


async def test_wrong_token_is_auth_failed(graph, state):
    channel = await open_channel(credentials_at(str(graph.make_url("/v21.0")), "EAAG-wrong"))
    try:
        assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == \
            PermanentFailure("auth_failed")
    finally:
        await channel.close()
    assert state.sent == []


async def test_unknown_phone_number_id_is_invalid_request(graph):
    credentials = WhatsAppCredentials("999", TOKEN, APP_SECRET, VERIFY_TOKEN)
    channel = await open_channel((str(graph.make_url("/v21.0")), credentials))
    try:
        assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == \
            PermanentFailure("invalid_request")
    finally:
        await channel.close()


async def test_an_address_that_is_not_a_phone_number_is_refused_before_sending(channel, state):
    assert await channel.send(LINE, "@ayse", OutboundMessage(TEXT)) == \
        PermanentFailure("invalid_address")
    assert state.requests == []


@pytest.mark.parametrize("body", [
    {"messaging_product": "whatsapp", "to": "905321112233", "type": "text"},
    {"messaging_product": "whatsapp", "to": "905321112233", "type": "text",
     "text": {"body": ""}},
    {"to": "905321112233", "type": "text", "text": {"body": "x"}},
    {"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}},
    {"messaging_product": "whatsapp", "to": "905321112233", "type": "template",
     "template": {"name": "kampanya"}},
])
async def test_a_body_missing_required_fields_is_invalid_request(channel, state, body):
    assert await channel.send_body(LINE, body) == PermanentFailure("invalid_request")
    assert state.sent == []


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_unavailable():
    # Nothing reached Graph: the dispatcher backs off and sends it again.
    channel = await open_channel(credentials_at(f"http://127.0.0.1:{unused_port()}/v21.0"))
    try:
        assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == \
            Unavailable("connection_error")
    finally:
        await channel.close()


async def test_a_slow_provider_is_maybe_sent(credentials, state):
    state.latency = 2.0
    channel = await open_channel(credentials, timeout=0.2)
    try:
        assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == \
            MaybeSent("timeout")
    finally:
        await channel.close()


async def test_an_answer_slower_than_the_timeout_after_graph_kept_the_message_is_maybe_sent(
        credentials, state):
    state.answer_delay = 2.0  # Graph keeps the message, then answers late
    channel = await open_channel(credentials, timeout=0.2)
    try:
        assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT, reference="7")) == \
            MaybeSent("timeout")
        assert [m["reference"] for m in state.sent] == ["7"]  # it was in fact accepted
    finally:
        await channel.close()


@pytest.mark.parametrize(("status", "expected"), [
    (500, Unavailable("provider_unavailable")),  # Graph's JSON error, code 1
    (503, Unavailable("provider_unavailable")),  # code 2
    (502, Unavailable("http_502")),  # a gateway's page, no Graph body
])
async def test_an_outage_is_unavailable_and_keeps_nothing(channel, state, clock, status,
                                                         expected):
    state.outage_status, state.outage_until = status, clock.now + 1
    assert await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)) == expected
    assert state.sent == []
    clock.now += 1
    assert isinstance(await channel.send(LINE, ADDRESS, OutboundMessage(TEXT)), Sent)


async def test_template_body_is_accepted_by_graph(channel, state):
    body = template_body("+905321112233", "kampanya_duyuru", "tr", ["Ayşe", "%20"],
                            reference="4712")
    assert body["template"] == {
        "name": "kampanya_duyuru", "language": {"code": "tr"},
        "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "Ayşe"}, {"type": "text", "text": "%20"}]}]}
    result = await channel.send_body(LINE, body)
    assert isinstance(result, Sent)
    assert state.sent[0]["type"] == "template"
    assert state.sent[0]["reference"] == "4712"


async def test_one_session_is_reused_and_close_disposes_it(channel):
    await channel.send(LINE, number(1), OutboundMessage(TEXT))
    session = channel._session
    await channel.send(LINE, number(2), OutboundMessage(TEXT))
    assert channel._session is session
    await channel.close()
    assert session.closed
    assert isinstance(await channel.send(LINE, number(3), OutboundMessage(TEXT)), Sent)


async def test_token_and_text_never_reach_logs_or_results(caplog, graph, state):
    caplog.set_level(logging.DEBUG)
    base = str(graph.make_url("/v21.0"))
    seen = []
    for credentials, fail in [(credentials_at(base, TOKEN + "x"), None),
                              (credentials_at(base), 130429), (credentials_at(base), 131026),
                              (credentials_at(f"http://127.0.0.1:{unused_port()}/v21.0"), None)]:
        state.fail = {"905321112233": fail} if fail else {}
        channel = await open_channel(credentials)
        try:
            seen.append(repr(await channel.send(LINE, ADDRESS, OutboundMessage(TEXT))))
        finally:
            await channel.close()
        seen.append(repr(credentials))
    assert caplog.records, "failures are logged"
    seen += [str(vars(record)) for record in caplog.records]
    for text in seen:
        for secret in (TOKEN, APP_SECRET, VERIFY_TOKEN, TEXT, "5321112233"):
            assert secret not in text


def test_credentials_round_trip_through_json_and_hide_secrets_in_repr():
    _, credentials = credentials_at("http://127.0.0.1:1/v21.0")
    assert WhatsAppCredentials.from_json(credentials.to_json()) == credentials
    for secret in (TOKEN, APP_SECRET, VERIFY_TOKEN):
        assert secret not in repr(credentials)
    assert PHONE_NUMBER_ID in repr(credentials)


def test_a_stored_base_url_is_ignored():
    # Written by versions that let a tenant choose the address: read, it names none.
    raw = (b'{"phone_number_id": "1", "access_token": "a", "app_secret": "b", '
           b'"verify_token": "c", "base_url": "http://127.0.0.1:1/steal"}')
    assert WhatsAppCredentials.from_json(raw) == WhatsAppCredentials("1", "a", "b", "c")
    assert "base_url" not in WhatsAppCredentials.from_json(raw).to_json().decode()


@pytest.mark.parametrize("raw", [
    b'{"phone_number_id": "1", "access_token": "EAAG-s3cr3t-access-token-0123456789"',
    b'["EAAG-s3cr3t-access-token-0123456789"]',
    b'{"phone_number_id": "1", "access_token": "EAAG-s3cr3t-access-token-0123456789"}',
    b'{"phone_number_id": 1, "access_token": "a", "app_secret": "b", "verify_token": "c"}',
    b"\xff\xfe",
])
def test_bad_credentials_json_is_refused_without_echoing_it(raw):
    with pytest.raises(WhatsAppCredentialsError) as caught:
        WhatsAppCredentials.from_json(raw)
    assert TOKEN not in str(caught.value)
    error = caught.value
    # A chained JSONDecodeError would carry the whole document, secrets included.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize(("status", "body", "retry_after", "expected"), [
    (200, {"messages": [{"id": "wamid.X"}]}, None, Sent("wamid.X")),
    # Graph took the request and said something we cannot read: it may have kept it.
    (200, {"messages": []}, None, MaybeSent("malformed_response")),
    (200, None, None, MaybeSent("malformed_response")),
    (400, {"error": {"code": 130429}}, 3.0, RateLimited(3.0)),
    (400, {"error": {"code": "131056"}}, None, RateLimited(6.0)),
    (401, {"error": {"code": 190, "type": "OAuthException"}}, None,
     PermanentFailure("auth_failed")),
    (401, None, None, PermanentFailure("auth_failed")),
    (403, {"error": {"code": 200}}, None, PermanentFailure("graph_200")),
    (403, None, None, PermanentFailure("http_403")),
    (429, None, None, RateLimited(1.0)),
    (429, None, 7.0, RateLimited(7.0)),
    (500, {"error": {"code": 424242}}, None, Unavailable("graph_424242")),
    (502, None, None, Unavailable("http_502")),
    (503, {"error": "down"}, None, Unavailable("http_503")),
    (503, None, 5.0, Unavailable("http_503", 5.0)),
    (504, None, None, MaybeSent("gateway_timeout")),
])
def test_classify(status, body, retry_after, expected):
    assert classify(status, body, retry_after) == expected


@pytest.mark.parametrize(("exc", "expected"), [
    # Raised before the request left: nothing reached Graph, so it is sent again later.
    (aiohttp.ClientConnectorError(None, OSError(111, "refused")),
     Unavailable("connection_error")),
    (aiohttp.ConnectionTimeoutError(), Unavailable("connection_error")),
    # Raised after: Graph may have kept it (it keeps a message the moment it answers).
    (TimeoutError(), MaybeSent("timeout")),
    (aiohttp.SocketTimeoutError(), MaybeSent("timeout")),
    (aiohttp.ServerDisconnectedError(), MaybeSent("connection_lost")),
    (aiohttp.ClientOSError(104, "reset"), MaybeSent("connection_lost")),
    (aiohttp.ClientPayloadError("cut off"), MaybeSent("unreadable_answer")),
])
def test_classify_exception_tells_not_sent_from_maybe_sent(exc, expected):
    assert classify_exception(exc) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10)


@given(status=st.integers(100, 599),
       body=st.none() | st.dictionaries(st.sampled_from(["error", "messages"]), json_values)
       | st.fixed_dictionaries({"error": st.dictionaries(
           st.sampled_from(["code", "error_subcode", "message"]), json_values)}))
def test_classify_always_answers_with_one_closed_outcome(status, body):
    outcome = classify(status, body)
    assert isinstance(outcome, Sent | RateLimited | Blocked | OptedOut | TemporaryFailure
                      | PermanentFailure | Unavailable | MaybeSent)
