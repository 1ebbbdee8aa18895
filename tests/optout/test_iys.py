"""The İYS client against a fake İYS server: tokens, uploads, polling, changes and retries."""
from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from fakes.iys import (
    BRAND_CODE,
    IYS_CODE,
    PASSWORD,
    USERNAME,
    IysState,
    create_iys_app,
)
from hypothesis import given
from hypothesis import strategies as st

from optout.deadlines import TZ
from optout.iys import (
    Accepted,
    AuthFailed,
    IysClient,
    IysCredentials,
    IysError,
    Rejected,
    Result,
    Retry,
    _Reply,
    backoff_delay,
    classify,
    may_have_been_taken,
    with_backoff,
)
from optout.iys_rules import IysConsent, check

PHONE = "+905321112233"
OTHER = "+905427654321"
# Friday 31 October 2025, noon in Istanbul; Wednesday 29 October is Republic Day.
NOW = datetime(2025, 10, 31, 12, 0, tzinfo=TZ)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeper:
    """Stands in for asyncio.sleep: records delays, moves the clock, runs a hook per sleep."""

    def __init__(self, clock: Clock, hook=None):
        self.clock, self.hook, self.delays = clock, hook, []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)
        if self.hook:
            self.hook(len(self.delays))


def consent(status: str = "ONAY", at: datetime | None = None, recipient: str = PHONE,
            **changes) -> IysConsent:
    record = IysConsent(recipient=recipient, recipient_type="BIREYSEL", type="MESAJ",
                        source="HS_WEB", status=status,
                        consent_date=at or NOW - timedelta(hours=1))
    return replace(record, **changes)


def token_requests(state: IysState) -> list:
    return [r for r in state.requests if r.path == "/oauth2/token"]


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW.timestamp())


@pytest.fixture
def state(clock) -> IysState:
    return IysState(clock=clock)


@pytest.fixture
async def iys_url(aiohttp_server, state) -> str:
    """The fake İYS, where the operator's providers.iys_url would point."""
    server = await aiohttp_server(create_iys_app(state))
    return str(server.make_url(""))


@pytest.fixture
def credentials() -> IysCredentials:
    return IysCredentials(USERNAME, PASSWORD, IYS_CODE, BRAND_CODE)


@pytest.fixture
async def client(credentials, clock, iys_url):
    async with IysClient(credentials, clock=clock, base_url=iys_url) as iys:
        yield iys


# --- tokens ---------------------------------------------------------------------------------

async def test_token_is_fetched_once_and_reused(client, state):
    assert (await client.add(consent())).outcome.__class__ is Accepted
    assert (await client.add(consent(recipient=OTHER))).outcome.__class__ is Accepted
    assert len(token_requests(state)) == 1


async def test_token_is_renewed_before_it_expires(client, state, clock):
    await client.add(consent())
    clock.advance(7200 - 30)  # inside the renewal margin, still valid on the server
    await client.add(consent(recipient=OTHER))
    assert len(token_requests(state)) == 2
    assert all(r.status != 401 for r in state.requests)


async def test_token_is_renewed_once_on_401(client, state):
    await client.add(consent())
    state.revoke_tokens()  # İYS forgot it, e.g. after a restart
    result = await client.add(consent(recipient=OTHER))
    assert isinstance(result.outcome, Accepted)
    assert [r.status for r in state.requests][-3:] == [401, 200, 200]
    assert len(token_requests(state)) == 2


async def test_a_second_401_is_auth_failed_without_a_loop(client, state):
    state.token_lifetime = 0  # every token is dead on arrival
    result = await client.add(consent())
    assert result == Result(0, AuthFailed("http_401"))
    assert len(token_requests(state)) == 2


async def test_wrong_password_is_auth_failed_and_not_retried(credentials, clock, state, iys_url):
    wrong = replace(credentials, password="yanlış-parola")
    sleeper = Sleeper(clock)
    async with IysClient(wrong, clock=clock, base_url=iys_url) as iys:
        result = await with_backoff(lambda: iys.add(consent()), sleep=sleeper)
    assert isinstance(result.outcome, AuthFailed)
    assert sleeper.delays == []
    assert state.entries == []


async def test_the_grant_is_sent_as_json_as_the_iys_documentation_shows(client, state):
    await client.add(consent())
    assert token_requests(state)[0].content_type == "application/json"


# --- single add and the rules -----------------------------------------------------------------

async def test_single_add_is_accepted_and_stored(client, state):
    result = await client.add(consent())
    assert isinstance(result.outcome, Accepted) and result.index == 0
    stored = state.current(PHONE, "MESAJ")
    assert stored.transaction_id == result.outcome.transaction_id
    assert stored.to_json()["consentDate"] == "2025-10-31 11:00:00"
    assert stored.source == "HS_WEB"


async def test_first_record_ret_is_rejected_per_record(client, state):
    result = await client.add(consent("RET"))
    assert result.outcome == Rejected("H174", "İlk defa kaydedilen alıcı için izin RET olamaz.")
    assert state.entries == []


async def test_repeated_state_is_rejected(client):
    await client.add(consent(at=NOW - timedelta(hours=2)))
    result = await client.add(consent())
    assert isinstance(result.outcome, Rejected) and result.outcome.code == "H175"


async def test_date_backwards_is_rejected(client):
    await client.add(consent(at=NOW - timedelta(hours=1)))
    result = await client.add(consent("RET", NOW - timedelta(hours=2)))
    assert isinstance(result.outcome, Rejected) and result.outcome.code == "H176"


async def test_date_in_future_is_rejected(client):
    result = await client.add(consent(at=NOW + timedelta(minutes=5)))
    assert isinstance(result.outcome, Rejected) and result.outcome.code == "H177"


async def test_too_old_counts_three_business_days_across_a_holiday(client, clock):
    monday = datetime(2025, 10, 27, 10, 0, tzinfo=TZ)
    clock.now = datetime(2025, 10, 31, 23, 0, tzinfo=TZ).timestamp()
    assert isinstance((await client.add(consent(at=monday))).outcome, Accepted)
    clock.now = datetime(2025, 11, 1, 0, 0, 1, tzinfo=TZ).timestamp()
    late = await client.add(consent(at=monday, recipient=OTHER))
    assert isinstance(late.outcome, Rejected) and late.outcome.code == "H178"


SCENARIOS = [  # (previous status or None, candidate status, candidate age in hours)
    (None, "ONAY", 1), (None, "RET", 1), ("ONAY", "ONAY", 1), ("ONAY", "RET", 1),
    ("ONAY", "RET", 3), ("RET", "ONAY", 1), (None, "ONAY", -1), (None, "ONAY", 24 * 8),
]


@pytest.mark.parametrize(("before", "status", "hours"), SCENARIOS)
async def test_fake_and_rules_agree(client, state, before, status, hours):
    previous = consent(before, NOW - timedelta(hours=2)) if before else None
    if before == "RET":
        await client.add(consent("ONAY", NOW - timedelta(hours=3)))
    if previous:
        assert isinstance((await client.add(previous)).outcome, Accepted)
    candidate = consent(status, NOW - timedelta(hours=hours))
    verdict = check(candidate, previous, NOW)
    assert isinstance((await client.add(candidate)).outcome, Accepted) == (verdict is None)


# --- bulk -----------------------------------------------------------------------------------

async def test_bulk_mixed_records_each_get_a_result_none_dropped(client, state, clock):
    records = [consent(at=NOW - timedelta(hours=2)),  # accepted
               consent("RET", recipient=OTHER),  # first record RET
               consent(recipient="+905001112233", source="HS_BILINMEYEN"),  # unknown source
               consent("RET", NOW - timedelta(hours=1)),  # RET after record 0: accepted
               consent("RET", NOW - timedelta(minutes=30))]  # repeated state after record 3
    request_id = await client.add_bulk(records)
    first = await client.bulk_result(request_id, expected=len(records))
    assert [r.outcome for r in first] == [Retry(None, "processing")] * 5
    sleeper = Sleeper(clock)
    results = await with_backoff(lambda: client.bulk_result(request_id, len(records)),
                                 sleep=sleeper)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    kinds = [(type(r.outcome).__name__, getattr(r.outcome, "code", None)) for r in results]
    assert kinds == [("Accepted", None), ("Rejected", "H174"), ("Rejected", "H113"),
                     ("Accepted", None), ("Rejected", "H175")]
    assert len(sleeper.delays) == 0  # the second poll was already complete


async def test_bulk_result_keeps_records_iys_did_not_report_as_pending(client, state):
    state.bulk_pending_polls = 0
    request_id = await client.add_bulk([consent(), consent(recipient=OTHER)])
    state.bulks[request_id]["results"].pop(0)
    results = await client.bulk_result(request_id, expected=2)
    assert results[0] == Result(0, Retry(None, "pending"))
    assert isinstance(results[1].outcome, Accepted)


async def test_bulk_result_numbered_from_zero_is_still_aligned(client, state):
    state.bulk_pending_polls, state.bulk_index_base = 0, 0
    request_id = await client.add_bulk([consent("RET"), consent(recipient=OTHER)])
    results = await client.bulk_result(request_id, expected=2)
    assert isinstance(results[0].outcome, Rejected) and isinstance(results[1].outcome, Accepted)


async def test_bulk_is_processed_later_and_holds_at_most_1000_records(client, state):
    state.bulk_delay, state.bulk_pending_polls = 0.2, 0
    request_id = await client.add_bulk([consent()])
    assert (await client.bulk_result(request_id, 1))[0].outcome == Retry(None, "processing")
    assert state.current(PHONE, "MESAJ") is None  # taken, not yet processed
    await asyncio.sleep(0.3)
    assert isinstance((await client.bulk_result(request_id, 1))[0].outcome, Accepted)
    many = [consent(recipient=f"+90532{i:07d}") for i in range(1001)]
    with pytest.raises(IysError) as raised:
        await client.add_bulk(many)
    assert isinstance(raised.value.outcome, Rejected) and raised.value.outcome.code == "H192"
    assert not may_have_been_taken(raised.value.outcome)


async def test_a_lost_bulk_answer_may_have_been_taken(client, state):
    state.lose_bulk_answers = 1
    with pytest.raises(IysError) as raised:
        await client.add_bulk([consent()])
    assert may_have_been_taken(raised.value.outcome)
    assert state.current(PHONE, "MESAJ") is not None  # İYS has the record all the same


async def test_a_request_turned_away_was_not_taken(client, state):
    state.rate_limit = 1
    await client.add(consent())
    with pytest.raises(IysError) as raised:
        await client.add_bulk([consent(recipient=OTHER)])
    assert raised.value.outcome == Retry(1.0, "rate_limited")
    assert not may_have_been_taken(raised.value.outcome)
    assert state.current(OTHER, "MESAJ") is None
    state.rate_limit, state.outage = None, True
    with pytest.raises(IysError) as raised:
        await client.add_bulk([consent(recipient=OTHER)])
    assert not may_have_been_taken(raised.value.outcome)


async def test_unknown_bulk_request_is_a_request_level_rejection(client):
    with pytest.raises(IysError) as raised:
        await client.bulk_result("yok-boyle-bir-istek")
    assert isinstance(raised.value.outcome, Rejected)


async def test_empty_bulk_is_a_programming_error(client):
    with pytest.raises(ValueError):
        await client.add_bulk([])


# --- status and changes ---------------------------------------------------------------------

async def test_status_returns_the_current_record_or_none(client, state):
    assert await client.status(PHONE, "MESAJ", "BIREYSEL") is None
    sent = consent(at=NOW - timedelta(minutes=42, microseconds=-1))
    await client.add(sent)
    found = await client.status(PHONE, "MESAJ", "BIREYSEL")
    assert found == replace(sent, consent_date=sent.consent_date.replace(microsecond=0))
    assert await client.status(PHONE, "ARAMA") is None


async def test_changes_pages_with_a_kept_cursor_and_include_citizen_refusals(client, state, clock):
    for recipient in (PHONE, OTHER, "+905051112233"):
        await client.add(consent(recipient=recipient, at=NOW - timedelta(hours=3)))
    for minutes, recipient in ((50, PHONE), (40, OTHER), (30, "+905051112233")):
        state.citizen_refuse(recipient, "MESAJ", NOW - timedelta(minutes=minutes))
        clock.advance(1)
    page, cursor = await client.changes(None, limit=2)
    assert [(c.recipient, c.status, c.source) for c in page] == [(PHONE, "RET", "IYS"),
                                                                 (OTHER, "RET", "IYS")]
    page, cursor2 = await client.changes(cursor, limit=2)
    assert [c.recipient for c in page] == ["+905051112233"] and cursor2 != cursor
    state.citizen_refuse(PHONE, "ARAMA", NOW)
    page, cursor3 = await client.changes(cursor2, limit=2)
    assert [(c.recipient, c.type) for c in page] == [(PHONE, "ARAMA")]
    assert await client.changes(cursor3, limit=2) == ([], cursor3)
    assert (await client.status(PHONE, "MESAJ")).status == "RET"


async def test_changes_of_our_own_uploads_are_a_separate_stream(client, state):
    await client.add(consent())
    state.citizen_refuse(OTHER, "MESAJ", NOW)
    ours, _ = await client.changes(source="HS")
    assert [(c.recipient, c.source) for c in ours] == [(PHONE, "HS_WEB")]


async def test_changes_keep_a_seven_day_window(client, state, clock):
    state.citizen_refuse(PHONE, "MESAJ", NOW)
    clock.advance(8 * 86400)
    assert await client.changes() == ([], None)


# --- transient failures and back-off ----------------------------------------------------------

async def test_outage_is_retry_then_success_with_backoff(client, state, clock):
    state.outage = True

    def end_outage(sleeps: int) -> None:
        state.outage = sleeps < 3

    sleeper = Sleeper(clock, end_outage)
    result = await with_backoff(lambda: client.add(consent()), sleep=sleeper,
                                jitter=lambda: 0.0)
    assert isinstance(result.outcome, Accepted)
    assert sleeper.delays == [0.25, 0.5, 1.0]
    assert [r.status for r in state.requests].count(503) == 3


async def test_outage_longer_than_the_attempts_returns_the_last_retry(client, state, clock):
    state.outage = True
    result = await with_backoff(lambda: client.add(consent()), attempts=3, sleep=Sleeper(clock))
    assert result == Result(0, Retry(None, "http_503"))


async def test_request_level_outage_raises_and_is_retried(client, state, clock):
    state.outage = True
    with pytest.raises(IysError) as raised:
        await client.changes()
    assert raised.value.outcome == Retry(None, "http_503")
    sleeper = Sleeper(clock, lambda n: setattr(state, "outage", False))
    assert await with_backoff(client.changes, sleep=sleeper) == ([], None)


async def test_429_retry_after_is_honoured(client, state, clock):
    await client.add(consent(at=NOW - timedelta(hours=2)))
    state.rate_limit = 1
    limited = await client.add(consent("RET"))
    assert limited == Result(0, Retry(1.0, "rate_limited"))
    sleeper = Sleeper(clock)
    result = await with_backoff(lambda: client.add(consent("RET")), base=0.01, sleep=sleeper)
    assert isinstance(result.outcome, Accepted)
    assert sleeper.delays and all(d >= 1.0 for d in sleeper.delays)


async def test_timeout_is_retry(credentials, clock, state, iys_url):
    state.latency = 0.5
    async with IysClient(credentials, clock=clock, timeout=0.05, base_url=iys_url) as iys:
        assert (await iys.add(consent())).outcome == Retry(None, "timeout")
    assert may_have_been_taken(Retry(None, "timeout"))  # it may be processed all the same


async def test_connection_error_is_retry(clock, credentials):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with IysClient(credentials, clock=clock, base_url=f"http://127.0.0.1:{port}") as iys:
        assert (await iys.add(consent())).outcome == Retry(None, "unreachable")
    assert not may_have_been_taken(Retry(None, "unreachable"))  # nothing left this machine


async def test_rejections_are_never_retried(client, clock):
    sleeper = Sleeper(clock)
    result = await with_backoff(lambda: client.add(consent("RET")), sleep=sleeper)
    assert isinstance(result.outcome, Rejected) and sleeper.delays == []


# --- classification and back-off arithmetic ---------------------------------------------------

@given(st.integers(min_value=100, max_value=599), st.none() | st.sampled_from(["0", "7", "x"]))
def test_every_status_lands_in_the_closed_set(status, retry_after):
    outcome = classify(_Reply(status, retry_after, {"errors": [{"code": "H1", "message": "m"}]}))
    if 200 <= status < 300:
        assert outcome is None
    elif status == 429 or status >= 500 or 300 <= status < 400:  # redirects are not followed
        assert isinstance(outcome, Retry)
    elif status in (401, 403):
        assert isinstance(outcome, AuthFailed)
    else:
        assert isinstance(outcome, Rejected)


def test_retry_after_is_read_in_seconds():
    assert classify(_Reply(429, "7", None)) == Retry(7.0, "rate_limited")
    assert classify(_Reply(503, None, "down")) == Retry(None, "http_503")
    assert classify(TimeoutError()) == Retry(None, "timeout")


@given(st.integers(min_value=0, max_value=12), st.floats(min_value=0, max_value=0.999),
       st.none() | st.floats(min_value=0, max_value=600))
def test_backoff_grows_with_jitter_caps_and_never_undercuts_retry_after(attempt, jitter, after):
    delay = backoff_delay(Retry(after, "x"), attempt, 0.5, jitter, max_delay=60.0)
    exponential = 0.5 * 2**attempt
    assert delay >= min(exponential * 0.5, 60.0)
    assert delay <= max(min(exponential, 60.0), after or 0.0)
    assert delay >= (after or 0.0)


# --- secrets and personal data ----------------------------------------------------------------

def test_credentials_hide_the_password_and_round_trip():
    creds = IysCredentials(USERNAME, PASSWORD, IYS_CODE, BRAND_CODE)
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    assert IysCredentials.from_json(creds.to_json()) == creds
    as_numbers = creds.to_json() | {"iys_code": 700100, "brand_code": 700101}
    assert IysCredentials.from_json(as_numbers).iys_code == "700100"


async def test_no_credentials_tokens_or_numbers_in_logs_or_errors(credentials, client, state,
                                                                  clock, caplog, iys_url):
    caplog.set_level(logging.DEBUG)
    seen: list[object] = []
    seen.append(await client.add(consent(at=NOW - timedelta(hours=2))))
    seen.append(await client.add(consent()))  # H175 quotes the number in its message
    seen.append(await client.add(consent("RET", recipient=OTHER)))
    state.outage = True
    seen.append(await client.add(consent(recipient=OTHER)))
    for call in (client.changes, lambda: client.status(PHONE, "MESAJ")):
        with pytest.raises(IysError) as raised:
            await call()
        seen.append(raised.value)
    state.outage = False
    async with IysClient(replace(credentials, password="Yanlış-Parola-9"), clock=clock,
                         base_url=iys_url) as bad:
        seen.append(await bad.add(consent()))
    text = caplog.text + " ".join(f"{s!r} {s}" for s in seen) + repr(client)
    assert "H175" in text  # the rejection is reported...
    for secret in (PASSWORD, "Yanlış-Parola-9", "5321112233", "5427654321", *state.tokens):
        assert secret not in text  # ...without the number, the password or a token
