"""WhatsApp templates (issue 15 item 2): synced from the (fake) Graph API with paging, offered
in the campaign form only when APPROVED, checked at campaign creation (parameters, sender
identity and refusal path for commercial campaigns), and followed by the status webhook."""
from __future__ import annotations

import asyncio
import time

import pytest
from conftest import ApiTenant, with_providers
from fakes.graph import (
    PHONE_NUMBER_ID,
    WABA_ID,
    GraphState,
    create_graph_app,
    quick_reply,
    signed_webhook,
    template,
    template_status_body,
)

APP_SECRET, VERIFY = "app-secret-123", "verify-me"
RET_FOOTER = "Örnek Mağaza — Mesaj almak istemiyorsanız RET yazıp yanıtlayın."
SUMMER = template("yaz_indirimi", body="Merhaba {{1}}, Örnek Mağaza'da {{2}} indirim sizi "
                                       "bekliyor!", footer=RET_FOOTER)
PENDING = template("yeni_sezon", "PENDING", body="Yeni sezon geldi {{1}}!",
                   footer=RET_FOOTER)
PAUSED = template("eski_kampanya", "PAUSED", body="Son gün {{1}}!", footer=RET_FOOTER)
NOTICE = template("kargo_bildirimi", category="UTILITY",
                  body="Siparişiniz {{1}} numarasıyla kargoya verildi.")


@pytest.fixture
async def graph(aiohttp_server):
    state = GraphState(pair_interval=0.0)
    server = await aiohttp_server(create_graph_app(state))
    return state, str(server.make_url("/v21.0"))


@pytest.fixture
def config(config, graph):
    return with_providers(config, whatsapp=graph[1])


async def _wa_line(tenant: ApiTenant, state: GraphState, **extra) -> dict:
    r = await tenant.call("POST", "/lines", json={
        "channel": "whatsapp", "name": "Mağaza WhatsApp", "phone_number_id": PHONE_NUMBER_ID,
        "access_token": state.access_token, "app_secret": APP_SECRET, "verify_token": VERIFY,
        "waba_id": WABA_ID, "messaging_tier": 1, **extra})
    assert r.status == 201, await r.text()
    return await r.json()


async def _list(tenant: ApiTenant, rows: list[str]) -> str:
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "l"})).json())["id"]
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data=("phone,name,consent\n" + "\n".join(rows) + "\n").encode(),
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    return list_id


async def _sync(tenant: ApiTenant, line_id: str):
    return await tenant.call("POST", f"/lines/{line_id}/templates/sync")


async def _names(tenant: ApiTenant, line_id: str, status: str | None = None) -> list[str]:
    r = await tenant.call("GET", f"/lines/{line_id}/templates",
                          params={"status": status} if status else {})
    assert r.status == 200, await r.text()
    return [t["name"] for t in (await r.json())["templates"]]


async def _post_wa(tenant: ApiTenant, line_id: str, payload: dict):
    body, headers = signed_webhook(APP_SECRET, payload)
    return await tenant.client.post(f"/webhooks/whatsapp/{line_id}", data=body, headers=headers)


async def _campaign(tenant: ApiTenant, cid: str) -> dict:
    return await (await tenant.call("GET", f"/campaigns/{cid}")).json()


async def test_template_sync_and_picker(tenant, graph, owner):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    state, _ = graph
    state.templates = [SUMMER, PENDING, PAUSED, NOTICE]
    state.template_page_limit = 2  # two pages
    line = await _wa_line(tenant, state, rate_per_second=1.0)
    assert line["waba_id"] == WABA_ID

    r = await _sync(tenant, line["id"])
    assert r.status == 200, await r.text()
    synced = await r.json()
    assert synced["templates"] == 4
    assert synced["by_status"] == {"APPROVED": 2, "PENDING": 1, "PAUSED": 1}
    first, second = state.template_requests
    assert "after" not in first and second["after"] and first["fields"].startswith("name,")
    assert sorted(await _names(tenant, line["id"])) == [
        "eski_kampanya", "kargo_bildirimi", "yaz_indirimi", "yeni_sezon"]
    assert await _names(tenant, line["id"], "APPROVED") == ["kargo_bildirimi", "yaz_indirimi"]

    # The form's picker offers only the approved ones, with one input per body variable.
    page = await (await owner.get("/campaigns/whatsapp-templates",
                                  params={"line_id": line["id"]})).text()
    assert "yaz_indirimi|tr" in page and "kargo_bildirimi|tr" in page
    assert "yeni_sezon" not in page and "eski_kampanya" not in page
    page = await (await owner.get("/campaigns/whatsapp-templates", params={
        "line_id": line["id"], "wa_template": "yaz_indirimi|tr"})).text()
    assert 'name="wa_param_1"' in page and 'name="wa_param_2"' in page
    assert 'name="wa_param_3"' not in page
    page = await (await owner.post("/campaigns/whatsapp-templates/sync", {
        "line_id": line["id"]})).text()  # the form's refresh button
    assert "Meta&#39;dan yenilendi: 4" in page and "yaz_indirimi|tr" in page
    form = {"line_id": line["id"], "wa_template": "yaz_indirimi|tr", "purpose": "commercial",
            "wa_param_1": "{{name}}", "wa_param_2": "{{indirim|%10}}"}
    preview = await (await owner.post("/campaigns/preview", form)).text()
    assert "Merhaba Ayşe Yılmaz, Örnek Mağaza&#39;da %10 indirim" in preview
    assert "RET yazıp" in preview and "template-problem" not in preview
    # Even a hand-made request cannot pick one that is not approved.
    preview = await (await owner.post("/campaigns/preview", {
        **form, "wa_template": "yeni_sezon|tr", "wa_param_2": ""})).text()
    assert "template-problem" in preview and "PENDING" in preview

    # A campaign created in the form sends the template, its variables from contact fields.
    list_id = await _list(tenant, [f"0537000000{i},Kişi{i},evet" for i in range(1, 4)])
    await tenant.unlock()
    r = await owner.post("/campaigns", {**form, "name": "Yaz", "list_id": list_id,
                                        "template": "", "start_now": "1"},
                         allow_redirects=False)
    assert r.status == 303, await r.text()
    cid = r.headers["Location"].rsplit("/", 1)[1]
    campaign = await _campaign(tenant, cid)
    assert campaign["whatsapp_template"] == {"name": "yaz_indirimi", "language": "tr",
                                             "parameters": ["{{name}}", "{{indirim|%10}}"]}
    deadline = time.monotonic() + 5
    while not state.sent:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    params = [p["text"] for p in state.sent[0]["template"]["components"][0]["parameters"]]
    assert params[1] == "%10" and params[0].startswith("Kişi")

    # Meta pauses the template mid-campaign: the campaign is paused with the reason.
    r = await _post_wa(tenant, line["id"], template_status_body(
        "yaz_indirimi", "PAUSED", template_id=SUMMER["id"], title="FIRST_PAUSE",
        description="Your template has been paused for 3 hours due to low quality."))
    assert r.status == 200 and (await r.json())["handled"] == 2  # the template + 1 campaign
    campaign = await _campaign(tenant, cid)
    assert campaign["state"] == "paused", campaign
    assert campaign["state_reason"].startswith("template_paused: WhatsApp template "
                                               "'yaz_indirimi' (tr) is PAUSED")
    assert "FIRST_PAUSE" in campaign["state_reason"]
    await asyncio.sleep(1.1)  # one send already under way (1/s) may finish; none after
    sent = len(state.sent)
    assert sent < 3
    await asyncio.sleep(0.7)
    assert len(state.sent) == sent
    assert await _names(tenant, line["id"], "APPROVED") == ["kargo_bildirimi"]
    page = await (await owner.get("/campaigns/whatsapp-templates",
                                  params={"line_id": line["id"]})).text()
    assert "yaz_indirimi" not in page
    # It resumes only once Meta approves the template again.
    r = await tenant.call("POST", f"/campaigns/{cid}/resume")
    assert r.status == 409 and (await r.json())["error"]["code"] == "template_not_approved"
    await _post_wa(tenant, line["id"], template_status_body("yaz_indirimi", "APPROVED"))
    r = await tenant.call("POST", f"/campaigns/{cid}/resume")
    assert r.status == 200, await r.text()


async def test_commercial_template_without_opt_out_is_refused(tenant, graph):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    state, _ = graph
    body = "Merhaba {{1}}, Örnek Mağaza'da bu hafta indirim var!"
    state.templates = [
        template("firsat", body=body),  # no way to refuse
        template("firsat_dugmeli", body=body, buttons=[quick_reply("Durdur")]),
        template("firsat_ret", body=body, footer="Mesaj almak istemiyorsanız RET yazın."),
        template("isimsiz", body="Merhaba {{1}}, bu hafta indirim var!",
                 footer="Mesaj almak istemiyorsanız RET yazın."),  # no sender named
        template("bekleyen", "PENDING", body=body, footer=RET_FOOTER),
        NOTICE]
    line = await _wa_line(tenant, state)
    assert (await _sync(tenant, line["id"])).status == 200
    list_id = await _list(tenant, ["05370000001,Ayşe,evet"])

    async def create(name: str, purpose: str = "commercial", parameters=("{{name}}",),
                     text: str = "Merhaba {{name}}"):
        return await tenant.call("POST", "/campaigns", json={
            "name": name, "line_id": line["id"], "list_id": list_id, "purpose": purpose,
            "template": text, "whatsapp_template": {
                "name": name, "language": "tr", "parameters": list(parameters)}})

    r = await create("firsat")
    error = (await r.json())["error"]
    assert (r.status, error["code"]) == (400, "template_lacks_opt_out"), error
    assert "RET" in error["message"]
    r = await create("isimsiz")
    assert (r.status, (await r.json())["error"]["code"]) == (400, "template_lacks_sender")
    for refused, code in (("bekleyen", "template_not_approved"),
                          ("yok_boyle", "unknown_template")):
        r = await create(refused)
        assert (r.status, (await r.json())["error"]["code"]) == (400, code)
    r = await create("firsat_ret", parameters=("{{name}}", "{{sehir|şehriniz}}"))
    assert (r.status, (await r.json())["error"]["code"]) == (400, "template_parameters")
    # A refusal path in the footer or an opt-out quick-reply button is enough.
    for accepted in ("firsat_ret", "firsat_dugmeli"):
        r = await create(accepted)
        assert r.status == 201, (accepted, await r.text())
    # A marketing template cannot go out as informational; a notice needs no refusal path.
    r = await create("firsat_ret", purpose="informational", text="Siparişiniz hazır.")
    assert (r.status, (await r.json())["error"]["code"]) == (400, "marketing_template")
    r = await create("kargo_bildirimi", purpose="informational", parameters=("{{name}}",),
                     text="Siparişiniz kargoya verildi.")
    assert r.status == 201, await r.text()


async def test_template_sync_errors_change_nothing(tenant, graph):
    state, _ = graph
    state.templates = [SUMMER, NOTICE, PENDING]
    line = await _wa_line(tenant, state)
    assert (await _sync(tenant, line["id"])).status == 200
    before = await _names(tenant, line["id"])

    # Graph fails on the second page: nothing of the first page is stored.
    state.templates = [NOTICE, template("yeni", body="Merhaba {{1}}")]
    state.template_page_limit = 1
    state.template_error_on_page = {len(state.template_requests) + 1: 2}
    r = await _sync(tenant, line["id"])
    assert (r.status, (await r.json())["error"]["code"]) == (502, "provider_unavailable")
    assert await _names(tenant, line["id"]) == before
    state.template_error_on_page = {}

    # A bad token (Graph's 190 OAuthException): a clear error, the old listing kept.
    state.access_token = "EAAG-rotated"
    r = await _sync(tenant, line["id"])
    error = (await r.json())["error"]
    assert (r.status, error["code"]) == (502, "whatsapp_auth_failed")
    assert "190" in error["message"] and "EAAG" not in error["message"]
    assert await _names(tenant, line["id"]) == before

    # A WABA id Graph does not know, and a line without one.
    other = await _wa_line(tenant, state, waba_id="999999999")
    r = await _sync(tenant, other["id"])
    assert (r.status, (await r.json())["error"]["code"]) == (502, "whatsapp_unknown_account")
    no_waba = await _wa_line(tenant, state, waba_id=None)
    r = await _sync(tenant, no_waba["id"])
    assert (r.status, (await r.json())["error"]["code"]) == (400, "no_waba_id")
    sandbox = next(x for x in (await (await tenant.call("GET", "/lines")).json())["lines"]
                   if x["channel"] == "sandbox")
    r = await _sync(tenant, sandbox["id"])
    assert (r.status, (await r.json())["error"]["code"]) == (400, "not_whatsapp")
    r = await tenant.call("GET", f"/lines/{line['id']}/templates", params={"status": "x;y"})
    assert r.status == 400
    r = await tenant.call("POST", "/lines/no-such-line/templates/sync")
    assert r.status == 404
