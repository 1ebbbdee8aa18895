"""Send faults (issue 12 item 6): a send that may have reached the provider is `unknown` and
never resent by itself; retry takes `failed` only unless `unknown` is asked for by name;
provider errors back off and are retried without failing anyone; the error-run and opt-out-rate
pauses are separate; the sandbox keeps each delivery before it answers Sent."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import pytest
import sqlalchemy as sa
from conftest import PASSPHRASE, ApiTenant, make_web_user, open_window, with_providers
from fakes.graph import (
    PHONE_NUMBER_ID,
    GraphState,
    create_graph_app,
    signed_webhook,
    status_body,
)

from campaigns.ports import Line, OutboundMessage, Sent
from dashboard.keys import db_key, directory_key, sandbox_key
from store.tables import lines, outbox, sandbox_messages

APP_SECRET, VERIFY = "app-secret-123", "verify-me"
MAX_ERRORS, FIRST_SENDS = 8, 20


@pytest.fixture
async def graph(aiohttp_server):
    state = GraphState(pair_interval=0.3)
    server = await aiohttp_server(create_graph_app(state))
    return state, str(server.make_url("/v21.0"))


@pytest.fixture
def whatsapp_timeout() -> float:
    return 15.0  # the default; a test shortens it by parametrizing this name


@pytest.fixture
def config(config, graph, whatsapp_timeout):
    """Pointed at the fake Graph API; guard thresholds small enough for a few messages."""
    config = with_providers(config, whatsapp=graph[1])
    return dataclasses.replace(
        config, campaigns=dataclasses.replace(
            config.campaigns, max_consecutive_errors=MAX_ERRORS, spam_first_sends=FIRST_SENDS),
        providers=dataclasses.replace(config.providers,
                                      whatsapp_timeout_seconds=whatsapp_timeout))


def _phones(n: int, start: int = 0) -> list[str]:
    return [f"+9053500{i:05d}" for i in range(start, start + n)]


async def _campaign(t: ApiTenant, line_id: str, phones: list[str]) -> str:
    await open_window(t, line_id, phones)  # WhatsApp free text needs the 24 h window
    list_id = (await (await t.call("POST", "/lists", json={"name": "l"})).json())["id"]
    r = await t.call("POST", f"/contacts/import?list_id={list_id}",
                     data=("phone,name,consent\n" + "".join(f"{p},N,evet\n" for p in phones)
                           ).encode(), headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    r = await t.call("POST", "/campaigns", json={"name": "c", "line_id": line_id,
                                                 "list_id": list_id, "template": "Merhaba"})
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _state(t: ApiTenant, cid: str) -> dict:
    return await (await t.call("GET", f"/campaigns/{cid}")).json()


async def _until(t: ApiTenant, cid: str, states=("completed",), timeout=30.0,
                 seen: list | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = await _state(t, cid)
        if seen is not None:
            seen.append(c["state_reason"])
        if c["state"] in states:
            return c
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign did not reach {states}: {c}")


async def _sandbox_line(t: ApiTenant, rate: float, **simulate) -> str:
    body = {"channel": "sandbox", "name": f"line-{rate}", "rate_per_second": rate}
    if simulate:
        body["simulate"] = simulate
    r = await t.call("POST", "/lines", json=body)
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


async def _simulate(t: ApiTenant, line_id: str, **simulate) -> None:
    """Changes how the simulated provider behaves (there is no API for it)."""
    async with t.client.app[db_key].begin() as conn:
        await conn.execute(lines.update().where(lines.c.id == line_id).values(
            options={"simulate": simulate} if simulate else None))


async def _wa_line(t: ApiTenant, graph, rate: float | None = None) -> str:
    body = {"channel": "whatsapp", "name": "WhatsApp", "phone_number_id": PHONE_NUMBER_ID,
            "access_token": graph[0].access_token, "app_secret": APP_SECRET,
            "verify_token": VERIFY, "messaging_tier": 1}
    if rate is not None:
        body["rate_per_second"] = rate
    r = await t.call("POST", "/lines", json=body)
    assert r.status == 201, await r.text()
    return (await r.json())["id"]


@pytest.mark.parametrize("whatsapp_timeout", [0.3])  # providers.whatsapp_timeout_seconds
async def test_timeout_after_send_is_unknown(tenant, graph, client):
    state, _ = graph
    state.answer_delay = 1.0  # Graph keeps each message, then answers after our timeout
    await tenant.unlock()
    line_id = await _wa_line(tenant, graph)
    phones = _phones(2)
    cid = await _campaign(tenant, line_id, phones)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    c = await _until(tenant, cid)
    assert (c["counts"]["unknown"], c["counts"]["failed"], c["counts"]["sent"]) == (2, 0, 0)
    assert sorted(m["to"] for m in state.sent) == [p[1:] for p in phones]  # both accepted
    # Never resent by itself, nor by a plain retry.
    r = await tenant.call("POST", f"/campaigns/{cid}/retry")
    assert (await r.json())["counts"]["unknown"] == 2
    await _until(tenant, cid)
    await asyncio.sleep(0.5)
    assert len(state.sent) == 2
    # The status webhook that arrives later reconciles the row by its reference.
    first = state.sent[0]
    body, headers = signed_webhook(APP_SECRET, status_body(
        first["id"], "delivered", "+" + first["to"], reference=first["reference"]))
    r = await client.post(f"/webhooks/whatsapp/{line_id}", data=body, headers=headers)
    assert r.status == 200
    c = await _state(tenant, cid)
    assert (c["counts"]["delivered"], c["counts"]["unknown"]) == (1, 1)


async def test_retry_takes_failed_only(tenant, client):
    await tenant.unlock()
    line_id = await _sandbox_line(tenant, 100, failure_rate=1)
    phones = _phones(6, 100)
    cid = await _campaign(tenant, line_id, phones)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    c = await _until(tenant, cid)
    assert c["counts"]["failed"] == 6 and c["failed_by_reason"] == {"simulated_failure": 6}, c
    # Two of them ended `unknown` (as a crash or a timeout leaves them): they may have been
    # delivered, so a retry must not send them again unless the owner says so.
    async with client.app[db_key].begin() as conn:
        ids = [r.id for r in await conn.execute(sa.select(outbox.c.id).where(
            outbox.c.campaign_id == cid).order_by(outbox.c.id).limit(2))]
        await conn.execute(outbox.update().where(outbox.c.id.in_(ids)).values(
            state="unknown", reason="interrupted"))
    await _simulate(tenant, line_id)  # the provider works again
    r = await tenant.call("POST", f"/campaigns/{cid}/retry")
    assert r.status == 200
    counts = (await r.json())["counts"]
    assert (counts["pending"], counts["unknown"], counts["failed"]) == (4, 2, 0)
    c = await _until(tenant, cid)
    assert (c["counts"]["sent"], c["counts"]["unknown"]) == (4, 2)
    inbox = (await (await tenant.call("GET", "/sandbox/messages")).json())["messages"]
    assert len(inbox) == 4
    r = await tenant.call("POST", f"/campaigns/{cid}/retry", json={"include_unknown": "yes"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_field"

    # The dashboard says what resending unknown messages means before it does it.
    owner = await make_web_user(client, tenant, "owner")
    page = await (await owner.get(f"/campaigns/{cid}")).text()
    assert "kişi aynı mesajı iki kez alabilir" in page and 'name="include_unknown"' in page
    r = await owner.post(f"/campaigns/{cid}/retry", allow_redirects=False)
    assert r.status == 303
    assert (await _until(tenant, cid))["counts"]["unknown"] == 2  # box not ticked: kept
    r = await owner.post(f"/campaigns/{cid}/retry", {"include_unknown": "yes"},
                         allow_redirects=False)
    assert r.status == 303
    c = await _until(tenant, cid)
    assert (c["counts"]["sent"], c["counts"]["unknown"]) == (6, 0)
    page = await (await owner.get(f"/campaigns/{cid}")).text()
    assert 'name="include_unknown"' not in page  # nothing unknown left to warn about


@pytest.mark.parametrize(("status", "seconds"), [(500, 1.5), (502, 0.5)])
async def test_provider_5xx_backs_off_and_retries(tenant, graph, status, seconds):
    state, _ = graph
    rate, n = 20.0, 60
    await tenant.unlock()
    cid = await _campaign(tenant, await _wa_line(tenant, graph, rate), _phones(n, 200))
    await tenant.call("POST", f"/campaigns/{cid}/start")
    while len(state.sent) < 10:  # past the first burst, sending at the line's rate
        await asyncio.sleep(0.01)
    began = time.monotonic()
    state.outage_status, state.outage_until = status, began + seconds
    reasons: list = []
    c = await _until(tenant, cid, seen=reasons)

    # Nobody failed, nobody got it twice, and the campaign says nothing is wrong any more.
    assert (c["counts"]["sent"], c["counts"]["failed"], c["counts"]["unknown"]) == (n, 0, 0), c
    assert len({m["to"] for m in state.sent}) == len(state.sent) == n
    assert c["state_reason"] is None
    assert any((r or "").startswith("provider_errors") for r in reasons), reasons
    # The line slowed down during the outage: a few calls, not `rate` per second of it. The
    # calls already under way when the first error came back (more of them if the loop
    # stalled and the bucket let a burst go) fail together; after that first answer the line
    # waits out its back-off (2 s, longer than the outage) and asks at most once more.
    errors = [at for at, code in state.answers if code >= 500]
    assert errors and len(errors) < rate * seconds, errors
    assert len([at for at in errors if at > errors[0] + 0.25]) <= 1, errors
    # ...and is back at its configured rate within seconds after it.
    accepted = [at for at, code in state.answers if code == 200 and at > began + seconds]
    last_second = [at for at in accepted if at > accepted[-1] - 1.0]
    assert len(last_second) >= 0.6 * rate, (len(last_second), accepted)
    assert accepted[-1] - (began + seconds) < 2.0 + 1.0 + (n - 10) / rate  # back-off + sends


@pytest.fixture
async def quick_retries(config, aiohttp_client) -> ApiTenant:
    """A tenant of a service that gives up on a failing provider quickly: 3 tries, 0.1 s
    apart at first."""
    import accounts
    from dashboard.keys import master_key
    from izinli.app import create_app
    config = dataclasses.replace(config, campaigns=dataclasses.replace(
        config.campaigns, provider_attempts=3, provider_backoff_seconds=0.1,
        provider_backoff_max_seconds=0.2))
    client = await aiohttp_client(create_app(config))
    tenant_id, api_key = await accounts.create_tenant(
        client.app[db_key], client.app[master_key], "Örnek Mağaza", PASSPHRASE, kdf="min")
    return ApiTenant(client, tenant_id, api_key)


async def test_provider_errors_fail_a_message_only_after_its_retries(quick_retries, graph):
    state, _ = graph
    tenant = quick_retries
    await tenant.unlock()
    state.outage_until = time.monotonic() + 60
    cid = await _campaign(tenant, await _wa_line(tenant, graph), _phones(4, 500))
    await tenant.call("POST", f"/campaigns/{cid}/start")
    c = await _until(tenant, cid, states=("completed", "paused"))
    # Each tried 3 times: 12 errors in all, more than MAX_ERRORS, yet no error-run pause,
    # since only a message's last failure counts; and the campaign says why they failed.
    assert [code for _, code in state.answers] == [500] * 12
    assert c["state"] == "completed", c
    assert (c["counts"]["failed"], c["failed_by_reason"]) == (4, {"provider_unavailable": 4})


async def test_error_pause_resume_keeps_optout_guard(tenant, client):
    await tenant.unlock()
    line_id = await _sandbox_line(tenant, 5, failure_rate=1)
    phones = _phones(40, 300)
    cid = await _campaign(tenant, line_id, phones)
    await tenant.call("POST", f"/campaigns/{cid}/start")
    c = await _until(tenant, cid, states=("paused",))
    assert c["state_reason"] == f"error_run: {MAX_ERRORS} send errors in a row", c

    # The owner fixes the line and resumes: the opt-out guard is still armed.
    await _simulate(tenant, line_id)
    assert (await tenant.call("POST", f"/campaigns/{cid}/resume")).status == 200
    inbox: list = []
    while not inbox:
        await asyncio.sleep(0.05)
        inbox = (await (await tenant.call("GET", "/sandbox/messages")).json())["messages"]
    r = await tenant.call("POST", "/sandbox/inbound", json={"line_id": line_id,
                                                            "from": inbox[0]["to"],
                                                            "text": "DUR"})
    assert r.status == 200
    c = await _until(tenant, cid, states=("paused", "completed"))
    assert c["state"] == "paused" and c["state_reason"].startswith("optout_rate"), c

    # Resuming after the opt-out pause acknowledges that one only: errors still pause it.
    await _simulate(tenant, line_id, failure_rate=1)
    assert (await tenant.call("POST", f"/campaigns/{cid}/resume")).status == 200
    c = await _until(tenant, cid, states=("paused", "completed"))
    assert c["state"] == "paused" and c["state_reason"].startswith("error_run"), c


async def test_sandbox_keeps_each_delivery_before_it_answers_sent(tenant, client):
    """Like a real provider: once Sent is returned the delivery is durable, so a crash right
    after leaves an `unknown` row for a message the simulated phone did get."""
    await tenant.unlock()
    app = client.app
    row = (await (await tenant.call("GET", "/lines")).json())["lines"][0]
    line = Line(row["id"], tenant.id, "sandbox", row["name"], 100.0, "active")
    sandbox, db = app[sandbox_key], app[db_key]
    async with db.connect() as conn:
        index = await app[directory_key].indexer(conn, tenant.id)

    async def send(phone: str) -> None:
        assert isinstance(await sandbox.send(line, phone, OutboundMessage("Merhaba")), Sent)
        async with db.connect() as conn:  # no flush: a fresh connection already sees it
            found = (await conn.execute(sa.select(sa.func.count()).where(
                sandbox_messages.c.to_index == index(phone)))).scalar()
        assert found == 1

    await asyncio.gather(*(send(p) for p in _phones(30, 400)))  # sends in flight share commits


async def test_sandbox_holds_a_delivery_while_the_database_is_unavailable(tenant, client,
                                                                          monkeypatch):
    """Our database down is not the provider down: the sandbox keeps the message once the
    database is back, and a commit whose answer was lost is not written twice."""
    from store.faults import DatabaseUnavailableError
    await tenant.unlock()
    app = client.app
    row = (await (await tenant.call("GET", "/lines")).json())["lines"][0]
    line = Line(row["id"], tenant.id, "sandbox", row["name"], 100.0, "active")
    db = app[db_key]
    real_begin = db.begin

    @contextlib.asynccontextmanager
    async def answer_lost():
        async with real_begin() as conn:
            yield conn
        raise DatabaseUnavailableError("unreachable")  # committed; the answer never came

    def refused():
        raise DatabaseUnavailableError("disk_full")

    class Flaky:
        """The sandbox's view of the database: refused, then a lost commit answer, then fine."""
        attempts = iter([refused, answer_lost])

        def begin(self):
            return next(self.attempts, real_begin)()

        def __getattr__(self, name):
            return getattr(db, name)

    sandbox = app[sandbox_key]
    await sandbox.send(line, "+905350000998", OutboundMessage("Merhaba"))  # keys, caches
    monkeypatch.setattr(sandbox, "_db", Flaky())
    result = await sandbox.send(line, "+905350000999", OutboundMessage("Merhaba"))
    monkeypatch.undo()
    assert isinstance(result, Sent)
    async with db.connect() as conn:
        kept = (await conn.execute(sa.select(sa.func.count()).select_from(
            sandbox_messages))).scalar()
    assert kept == 2


async def test_an_optout_among_the_first_sends_pauses_after_more_were_sent(tenant):
    """The spam guard keeps who the first FIRST_SENDS recipients were once the campaign is
    past them, and reads their opt-outs every round: one of them stopping later, while the
    campaign is well past them, still pauses it."""
    await tenant.unlock()
    line_id = await _sandbox_line(tenant, 40)
    cid = await _campaign(tenant, line_id, _phones(200, 800))
    await tenant.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 30
    while (await _state(tenant, cid))["counts"]["sent"] < 2 * FIRST_SENDS:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    first = (await (await tenant.call("GET", "/sandbox/messages")).json())["messages"][0]["to"]
    r = await tenant.call("POST", "/sandbox/inbound", json={"line_id": line_id, "from": first,
                                                            "text": "DUR"})
    assert r.status == 200
    c = await _until(tenant, cid, states=("paused", "completed"))
    assert c["state"] == "paused", c
    assert c["state_reason"] == f"optout_rate: 1 of the first {FIRST_SENDS} recipients opted out"
