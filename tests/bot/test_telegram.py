"""The Telegram channel against a fake Bot API server, and the pure update parsing."""
from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from fakes.telegram import (
    BOT_USERNAME,
    TOKEN,
    BotApiState,
    callback_update,
    create_bot_api_app,
    kicked_update,
    text_update,
    unblocked_update,
)
from hypothesis import given
from hypothesis import strategies as st

from bot import telegram
from bot.telegram import (
    TelegramChannel,
    TelegramCredentials,
    TelegramLineError,
    classify_exception,
    new_webhook_secret,
)
from bot.telegram_updates import (
    ChatBlocked,
    ChatText,
    ChatUnblocked,
    ConsentTap,
    command_of,
    parse_update,
    verify_secret,
)
from campaigns.ports import (
    Blocked,
    Line,
    MaybeSent,
    OutboundMessage,
    PermanentFailure,
    RateLimited,
    Sent,
    TemporaryFailure,
    Unavailable,
)

LINE = Line(id="line-1", tenant_id="tenant-1", channel="telegram", name="Mağaza botu",
            rate_per_second=25.0, state="active")
CHAT = 500_100_200
TEXT = "Kasım indirimi başladı! Mesaj almak istemiyorsanız RET yazıp yanıtlayın."
OTHER_TOKEN = "987654321:BBF-another-izinli-test-token_987654"


class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Credentials:
    """Stands in for the lines store: a line's credentials, changeable between sends."""

    def __init__(self):
        self.current = TelegramCredentials(TOKEN, "s3cret-webhook_token")

    async def __call__(self, line: Line) -> TelegramCredentials:
        return self.current


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock) -> BotApiState:
    return BotApiState(clock=clock)


@pytest.fixture
async def base_url(aiohttp_server, state) -> str:
    server = await aiohttp_server(create_bot_api_app(state))
    return str(server.make_url(""))


@pytest.fixture
def credentials() -> Credentials:
    return Credentials()


@pytest.fixture
async def channel(credentials, base_url):
    channel = TelegramChannel(credentials, base_url=base_url)
    yield channel
    await channel.close()


@pytest.fixture
async def nowhere(credentials):
    """A channel whose operator-configured Bot API address has nothing listening."""
    channel = TelegramChannel(credentials, base_url=closed_port_url())
    yield channel
    await channel.close()


async def send(channel: TelegramChannel, chat: int | str = CHAT, text: str = TEXT):
    return await channel.send(LINE, str(chat), OutboundMessage(text, reference="42"))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Sending through the fake Bot API


async def test_send_returns_sent_with_the_message_id(channel, state):
    outcome = await send(channel)
    assert outcome == Sent(str(state.sent[0].message_id))
    assert (state.sent[0].chat_id, state.sent[0].text) == (CHAT, TEXT)
    assert state.sent[0].reply_markup is None


async def test_text_is_sent_literally_without_markup_parsing(channel, state):
    assert isinstance(await send(channel, text="<b>%50</b> & *indirim*"), Sent)
    assert state.sent[0].text == "<b>%50</b> & *indirim*"


async def test_second_message_to_a_chat_within_a_second_is_rate_limited(channel, state, clock):
    assert isinstance(await send(channel), Sent)
    clock.now += 0.4
    assert await send(channel) == RateLimited(1.0)
    clock.now += 0.7
    assert isinstance(await send(channel), Sent)
    assert len(state.sent) == 2


async def test_thirty_messages_per_second_per_bot(channel, state, clock):
    outcomes = [await send(channel, chat=CHAT + i) for i in range(30)]
    assert all(isinstance(o, Sent) for o in outcomes)
    assert await send(channel, chat=CHAT + 30) == RateLimited(1.0)
    clock.now += 1.0
    assert isinstance(await send(channel, chat=CHAT + 30), Sent)


async def test_blocked_chat_is_blocked(channel, state):
    state.blocked.add(CHAT)
    assert await send(channel) == Blocked()
    assert state.sent == []


async def test_unknown_chat_is_a_permanent_failure(channel, state):
    state.missing.add(CHAT)
    assert await send(channel) == PermanentFailure("chat_not_found")


async def test_other_bad_requests_are_permanent_failures(channel):
    assert await send(channel, text=" ") == PermanentFailure("bad_request")
    assert await send(channel, text="x" * 4097) == PermanentFailure("bad_request")


async def test_address_that_is_no_chat_id_is_refused_before_any_call(channel, state):
    assert await send(channel, chat="@kanal") == PermanentFailure("invalid_address")
    assert state.sent == []


async def test_revoked_token_is_auth_failed(channel, credentials):
    credentials.current = TelegramCredentials(OTHER_TOKEN)
    assert await send(channel) == PermanentFailure("auth_failed")


async def test_malformed_token_is_auth_failed_without_a_request(channel, credentials, state):
    credentials.current = TelegramCredentials("not-a-token")
    assert await send(channel) == PermanentFailure("auth_failed")


async def test_server_down_is_unavailable(nowhere):
    # Nothing reached Telegram: the dispatcher backs off and tries again.
    assert await send(nowhere) == Unavailable("network_error")


async def test_server_error_is_unavailable(channel, state):
    state.failing = True
    assert await send(channel) == Unavailable("server_error")


async def test_slow_server_times_out_as_maybe_sent(channel, state, monkeypatch):
    # The request left: Telegram may have sent it, so it is never sent again by itself.
    monkeypatch.setattr(telegram, "REQUEST_TIMEOUT", 0.1)
    state.latency = 0.4
    assert await send(channel) == MaybeSent("timeout")


async def test_a_new_token_takes_effect_on_the_next_send(channel, credentials, state):
    # (The address is the operator's, fixed for the channel: a line has none of its own.)
    state.tokens.add(OTHER_TOKEN)
    assert isinstance(await send(channel), Sent)
    credentials.current = TelegramCredentials(OTHER_TOKEN)
    assert isinstance(await send(channel, chat=CHAT + 1), Sent)
    assert [m.token for m in state.sent] == [TOKEN, OTHER_TOKEN]


async def test_flush_does_nothing_and_close_can_repeat(channel):
    await channel.flush()
    await send(channel)
    await channel.close()
    await channel.close()


async def test_logs_and_errors_hold_neither_token_nor_text(channel, nowhere, state, caplog):
    caplog.set_level(logging.DEBUG, logger="bot.telegram")
    state.blocked.add(CHAT)
    await send(channel)
    state.blocked.clear()
    await send(nowhere)
    with pytest.raises(TelegramLineError) as raised:
        await nowhere.set_webhook(LINE, "https://example.com/hook", "s3cret")
    seen = [repr(vars(r)) for r in caplog.records] + [str(raised.value), repr(raised.value)]
    assert caplog.records
    for record in seen:
        assert TOKEN not in record and TOKEN.split(":")[1] not in record
        assert TEXT not in record and str(CHAT) not in record


# Consent offers, callbacks, webhooks and polling


async def test_consent_offer_carries_accept_and_decline_buttons(channel, state):
    offer = "Kampanyalarımızdan haberdar olmak ister misiniz?"
    outcome = await channel.send_consent_offer(LINE, str(CHAT), offer, "Evet", "Hayır")
    assert outcome == Sent(str(state.sent[0].message_id))
    assert state.sent[0].text == offer
    buttons = state.sent[0].reply_markup["inline_keyboard"]
    assert buttons == [[{"text": "Evet", "callback_data": "consent:yes"},
                        {"text": "Hayır", "callback_data": "consent:no"}]]


async def test_consent_offer_to_a_blocked_chat_is_blocked(channel, state):
    state.blocked.add(CHAT)
    assert await channel.send_consent_offer(LINE, str(CHAT), "?", "Evet", "Hayır") == Blocked()


async def test_answer_callback(channel, state):
    assert await channel.answer_callback(LINE, "4382bfdwdsb323b2d9", "Teşekkürler")
    assert state.answered == [{"callback_query_id": "4382bfdwdsb323b2d9",
                               "text": "Teşekkürler"}]


async def test_failed_answer_callback_is_false_not_an_error(channel, state):
    state.failing = True
    assert not await channel.answer_callback(LINE, "4382bfdwdsb323b2d9", "Teşekkürler")


async def test_set_and_delete_webhook(channel, state):
    secret = new_webhook_secret()
    await channel.set_webhook(LINE, "https://izinli.example.com/telegram/line-1", secret)
    assert state.webhooks[TOKEN] == {
        "url": "https://izinli.example.com/telegram/line-1", "secret_token": secret,
        "allowed_updates": ["message", "edited_message", "callback_query", "my_chat_member"]}
    await channel.delete_webhook(LINE)
    assert state.webhooks == {}


async def test_webhook_refused_by_telegram_raises_a_line_error(channel):
    with pytest.raises(TelegramLineError) as raised:
        await channel.set_webhook(LINE, "http://plain-http.example.com/hook", "s")
    assert raised.value.outcome == PermanentFailure("bad_request")
    assert raised.value.code == "bad_request"


async def test_poll_returns_raw_updates_and_the_offset_confirms_them(channel, state):
    state.pending_updates += [text_update(CHAT, "/start kampanya", 10),
                              callback_update(CHAT, "consent:yes", 11), kicked_update(CHAT, 12)]
    updates = await channel.poll(LINE, None, timeout=0)
    assert updates == state.pending_updates
    events = [e for u in updates for e in parse_update(u)]
    assert [type(e) for e in events] == [ChatText, ConsentTap, ChatBlocked]
    assert await channel.poll(LINE, 13, timeout=0) == []
    assert state.pending_updates == []


async def test_long_poll_waits_for_an_update(channel, state):
    async def arrive():
        await asyncio.sleep(0.1)
        state.pending_updates.append(text_update(CHAT, "DUR", 20))

    arrival = asyncio.create_task(arrive())
    updates = await channel.poll(LINE, None, timeout=2)
    await arrival
    assert [u["update_id"] for u in updates] == [20]


async def test_poll_while_a_webhook_is_set_is_a_conflict(channel):
    await channel.set_webhook(LINE, "https://izinli.example.com/telegram/line-1", "s")
    with pytest.raises(TelegramLineError) as raised:
        await channel.poll(LINE, None, timeout=0)
    assert raised.value.outcome == PermanentFailure("conflict")


async def test_poll_with_a_revoked_token_raises_auth_failed(channel, credentials):
    credentials.current = TelegramCredentials(OTHER_TOKEN)
    with pytest.raises(TelegramLineError) as raised:
        await channel.poll(LINE, None, timeout=0)
    assert raised.value.code == "auth_failed"


async def test_fake_accepts_json_and_form_bodies(base_url, state):
    async with aiohttp.ClientSession() as http:
        url = f"{base_url}/bot{TOKEN}/sendMessage"
        async with http.post(url, json={"chat_id": CHAT, "text": "json"}) as r:
            assert (r.status, (await r.json())["ok"]) == (200, True)
        async with http.post(url, data={"chat_id": str(CHAT + 1), "text": "form"}) as r:
            assert r.status == 200
        async with http.get(f"{base_url}/bot{TOKEN}/getMe") as r:
            assert (await r.json())["result"]["username"] == BOT_USERNAME
    assert [m.text for m in state.sent] == ["json", "form"]


# Credentials


def test_credentials_repr_hides_token_and_secret():
    credentials = TelegramCredentials(TOKEN, "s3cret")
    for shown in (repr(credentials), str(credentials), f"{credentials}"):
        assert TOKEN not in shown and "s3cret" not in shown


def test_credentials_json_round_trip():
    credentials = TelegramCredentials(TOKEN, "s3cret")
    assert TelegramCredentials.from_json(credentials.to_json()) == credentials
    assert TelegramCredentials.from_json(f'{{"bot_token": "{TOKEN}"}}'.encode()) == \
        TelegramCredentials(TOKEN, "")


def test_a_stored_base_url_is_ignored():
    # Written by versions that let a tenant choose the address: read, it names none.
    stored = (f'{{"bot_token": "{TOKEN}", "base_url": "http://127.0.0.1:1", '
              '"webhook_secret": "s"}')
    assert TelegramCredentials.from_json(stored) == TelegramCredentials(TOKEN, "s")
    assert "base_url" not in TelegramCredentials.from_json(stored).to_json()


@pytest.mark.parametrize("text", ['[]', '{}', '{"bot_token": 5}',
                                  f'{{"bot_token": "{TOKEN}", "webhook_secret": null}}'])
def test_malformed_credentials_raise_value_error_without_the_token(text):
    with pytest.raises(ValueError) as raised:
        TelegramCredentials.from_json(text)
    assert TOKEN not in str(raised.value)


def test_new_webhook_secret_uses_only_allowed_characters():
    secret = new_webhook_secret()
    assert 32 <= len(secret) <= 256
    assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


# Error classification

_METHOD = SendMessage(chat_id=CHAT, text=TEXT)


@pytest.mark.parametrize(("exc", "outcome"), [
    (TelegramRetryAfter(_METHOD, "Too Many Requests: retry after 7", 7), RateLimited(7.0)),
    (TelegramForbiddenError(_METHOD, "Forbidden: bot was blocked by the user"), Blocked()),
    (TelegramForbiddenError(_METHOD, "Forbidden: user is deactivated"), Blocked()),
    (TelegramForbiddenError(_METHOD, "Forbidden: bot was kicked from the group chat"),
     Blocked()),
    (TelegramForbiddenError(_METHOD, "Forbidden: bot can't initiate conversation with a user"),
     PermanentFailure("forbidden")),
    (TelegramBadRequest(_METHOD, "Bad Request: chat not found"),
     PermanentFailure("chat_not_found")),
    (TelegramBadRequest(_METHOD, "Bad Request: can't parse entities"),
     PermanentFailure("bad_request")),
    (TelegramUnauthorizedError(_METHOD, "Unauthorized"), PermanentFailure("auth_failed")),
    (TelegramServerError(_METHOD, "Internal Server Error"), Unavailable("server_error")),
    (TelegramNetworkError(_METHOD, "ClientConnectorError"), Unavailable("network_error")),
    (TelegramNetworkError(_METHOD, "redirect refused"), Unavailable("network_error")),
    (aiohttp.ConnectionTimeoutError(), Unavailable("network_error")),
    (TimeoutError(), MaybeSent("timeout")),
    (aiohttp.SocketTimeoutError(), MaybeSent("timeout")),
    (aiohttp.ServerDisconnectedError(), MaybeSent("connection_lost")),
    (aiohttp.ClientPayloadError(), MaybeSent("unreadable_answer")),
    (ClientDecodeError("Failed to decode object", ValueError(), "<html>"),
     MaybeSent("bad_response")),
    (TelegramAPIError(_METHOD, "Unexpected"), TemporaryFailure("telegram_error")),
])
def test_classify_exception(exc, outcome):
    assert classify_exception(exc) == outcome


# Parsing updates (pure)


def test_message_is_chat_text():
    assert parse_update(text_update(CHAT, "DUR", 7, message_id=55, date=1_732_000_000)) == [
        ChatText(str(CHAT), str(CHAT), "DUR", 7, 55, "tr", date=1_732_000_000)]


def test_message_without_language_code():
    [event] = parse_update(text_update(CHAT, "START", 8, language_code=None))
    assert event.language_code is None


def test_edited_message_is_chat_text_marked_edited():
    # An edit into "RET" is still the person refusing; edits repeat the message_id.
    [event] = parse_update(text_update(CHAT, "RET", 9, message_id=55, edited=True,
                                       date=1_732_000_000))
    assert (event.text, event.message_id, event.update_id, event.edited) == ("RET", 55, 9, True)
    assert event.date == 1_732_000_060  # when it became "RET": the edit, not the original


def test_photo_caption_is_text_and_stickers_are_ignored():
    update = text_update(CHAT, "x", 10)
    del update["message"]["text"]
    assert parse_update(update) == []
    update["message"]["caption"] = "İPTAL"
    assert parse_update(update)[0].text == "İPTAL"


@pytest.mark.parametrize(("data", "accepted"), [("consent:yes", True), ("consent:no", False)])
def test_consent_tap(data, accepted):
    assert parse_update(callback_update(CHAT, data, 11, query_id="q1")) == [ConsentTap(
        str(CHAT), str(CHAT), accepted, "q1", 11,
        "Kampanyalarımızdan haberdar olmak ister misiniz?", message_id=7)]


def test_consent_tap_on_an_inaccessible_message_has_no_text():
    [event] = parse_update(callback_update(CHAT, "consent:yes", 12, message_text=None))
    assert event.message_text is None and event.accepted


def test_other_callback_data_is_ignored():
    assert parse_update(callback_update(CHAT, "menu:prices", 13)) == []


def test_kicked_is_chat_blocked_and_member_again_is_unblocked():
    assert parse_update(kicked_update(CHAT, 14, date=1_732_000_000)) == [
        ChatBlocked(str(CHAT), 14, 1_732_000_000)]
    assert parse_update(unblocked_update(CHAT, 15, date=1_732_000_001)) == [
        ChatUnblocked(str(CHAT), 15, 1_732_000_001)]


def test_bot_added_to_a_group_is_ignored():
    update = kicked_update(-100_200_300, 16)
    member = update["my_chat_member"]
    member["old_chat_member"]["status"], member["new_chat_member"]["status"] = "left", "member"
    assert parse_update(update) == []


def test_channel_posts_and_unknown_kinds_are_ignored():
    post = {"message_id": 3, "sender_chat": {"id": -1001, "type": "channel"},
            "chat": {"id": -1001, "type": "channel", "title": "Duyurular"}, "date": 1,
            "text": "STOP"}
    assert parse_update({"update_id": 17, "channel_post": post}) == []
    assert parse_update({"update_id": 18, "poll": {"id": "p"}}) == []


@pytest.mark.parametrize("update", [
    None, [], "update", 5, {}, {"update_id": "1", "message": {}},
    {"update_id": True, "message": text_update(CHAT, "x", 1)["message"]},
    {"update_id": 1, "message": "DUR"},
    {"update_id": 1, "message": {"chat": {"id": True}, "from": {"id": 1}, "text": "DUR",
                                 "message_id": 1}},
    {"update_id": 1, "message": {"chat": [], "from": None, "text": 5}},
    {"update_id": 1, "callback_query": {"id": 5, "data": "consent:yes"}},
    {"update_id": 1, "callback_query": {"id": "q", "data": "consent:yes", "message": {},
                                        "from": {"id": 1}}},
    {"update_id": 1, "my_chat_member": {"chat": {"id": "1"}, "new_chat_member": "kicked"}},
])
def test_malformed_updates_give_no_events(update):
    assert parse_update(update) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["update_id", "message", "edited_message", "callback_query",
                         "my_chat_member", "chat", "from", "id", "text", "data", "status",
                         "message_id", "new_chat_member", "old_chat_member", "caption"]),
        inner, max_size=6),
    max_leaves=30)


@given(_json)
def test_parse_update_never_raises(update):
    assert isinstance(parse_update(update), list)


@pytest.mark.parametrize(("text", "expected"), [
    ("/start", ("start", "")),
    ("/start kampanya_42", ("start", "kampanya_42")),
    ("  /STOP  ", ("stop", "")),
    ("/stop@izinli_test_bot", ("stop", "")),
    ("/help@izinli_test_bot bir soru\nikinci satır", ("help", "bir soru\nikinci satır")),
    ("STOP", None), ("/", None), ("/ start", None), ("//start", None), ("/start@", None),
    ("", None), ("a /start", None),
])
def test_command_of(text, expected):
    assert command_of(text) == expected


def test_command_for_another_bot_is_not_ours():
    assert command_of("/stop@izinli_test_bot", bot_username="@Izinli_Test_Bot") == ("stop", "")
    assert command_of("/stop@other_bot", bot_username=BOT_USERNAME) is None
    assert command_of("/stop", bot_username=BOT_USERNAME) == ("stop", "")


@given(st.text())
def test_command_of_never_raises(text):
    result = command_of(text)
    assert result is None or result[0].isascii()


@pytest.mark.parametrize(("expected", "header", "ok"), [
    ("s3cret", "s3cret", True), ("s3cret", "s3creT", False), ("s3cret", None, False),
    ("s3cret", "", False), ("", "", False), ("", None, False), ("s3cret", "şifre", False),
])
def test_verify_secret(expected, header, ok):
    assert verify_secret(expected, header) is ok
