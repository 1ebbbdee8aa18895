"""Dashboard pages: contacts (import, phone search), consents, sandbox, lines and vault."""
import asyncio
import html
import time

import aiohttp
from conftest import PASSPHRASE, ApiTenant, WebUser, make_web_user

XSS = "<img src=x onerror=alert(1)>"
MESSY = ("telefon;ad soyad;şehir;consent\n"
         "0532 444 55 66;Gülşen Ağaoğlu;Rize;evet\n"
         "bozuk numara;Ahmet Çınar;Muş;evet\n"
         f"0533 111 22 33;{XSS};İzmir;evet\n")


async def _upload(user: WebUser, content: bytes, list_id: str = "", new_list: str = "yaz",
                  csrf: str | None = None, headers: dict | None = None):
    data = aiohttp.FormData()
    data.add_field("csrf", user.csrf if csrf is None else csrf)
    data.add_field("list_id", list_id)
    data.add_field("new_list", new_list)
    data.add_field("file", content, filename="kisiler.csv", content_type="text/csv")
    return await user.client.post("/contacts/import", data=data, headers=headers)


async def _campaign(t: ApiTenant, list_name: str = "yaz") -> str:
    """Sends "Merhaba {{name}}" to the list on the sandbox line; returns the line id."""
    lists = (await (await t.call("GET", "/lists")).json())["lists"]
    list_id = next(item["id"] for item in lists if item["name"] == list_name)
    line = (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await t.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": "Merhaba {{name}}"})
    ).json())["id"]
    await t.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 20
    while (await (await t.call("GET", f"/campaigns/{cid}")).json())["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    return line


async def test_import_a_messy_cp1254_csv_through_the_form(owner, tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    page = await (await owner.get("/contacts")).text()
    assert 'id="import-form"' in page and 'name="new_list"' in page
    assert 'accept=".csv,text/csv"' in page and "İçe aktar" in page
    r = await _upload(owner, MESSY.encode("cp1254"))
    assert r.status == 200, await r.text()
    text = await r.text()
    assert 'data-testid="import-result"' in text
    assert 'data-testid="imported">2<' in text and 'data-testid="invalid">1<' in text
    assert "<td>3</td>" in text  # the bad row, by its line number
    lists = (await (await tenant.call("GET", "/lists")).json())["lists"]
    assert [(item["name"], item["members"]) for item in lists] == [("yaz", 2)]
    # Again into the existing list: the same people are updated, not duplicated.
    r = await _upload(owner, MESSY.encode("cp1254"), list_id=lists[0]["id"])
    assert 'data-testid="updated">2<' in await r.text()
    r = await _upload(owner, "ad;şehir\nAli;Rize\n".encode("cp1254"))
    assert r.status == 400 and 'data-testid="import-error"' in await r.text()
    # Under htmx (upload progress) the same page comes back, as a 200 htmx will swap in.
    r = await _upload(owner, "ad;şehir\nAli;Rize\n".encode("cp1254"),
                      headers={"HX-Request": "true"})
    assert r.status == 200 and 'data-testid="import-error"' in await r.text()


async def test_phone_search_shows_details_only_while_unlocked(owner, tenant):
    await tenant.unlock()  # importing needs the tenant's number key (issue 17)
    await _upload(owner, MESSY.encode("cp1254"))
    await tenant.call("POST", "/vault/lock")
    r = await owner.get("/contacts?phone=0533 111 22 33")
    text = await r.text()  # locked: not even whether the number is known can be looked up
    assert 'href="/vault"' in text and "izin verdi" not in text and "Gülşen" not in text
    await tenant.unlock()
    text = await (await owner.get("/contacts?phone=0532 444 55 66")).text()
    assert "Gülşen Ağaoğlu" in text and "Rize" in text and "yaz" in text
    text = await (await owner.get("/contacts?phone=0533 111 22 33")).text()
    assert XSS not in text and html.escape(XSS, quote=False) in text
    r = await owner.get("/contacts?phone=bozuk")
    assert r.status == 200 and "notice error" in await r.text()


async def test_stop_reply_in_the_sandbox_shows_in_the_consent_history(owner, tenant):
    page = await (await owner.get("/sandbox")).text()
    assert 'data-testid="sandbox-locked"' in page
    await tenant.unlock()
    await _upload(owner, MESSY.encode("cp1254"))
    line = await _campaign(tenant)
    page = await (await owner.get("/sandbox")).text()
    inbox = page.split('data-testid="inbox"', 1)[1]
    assert "+905324445566" in inbox and "Merhaba Gülşen Ağaoğlu" in inbox
    assert XSS not in page and "Merhaba &lt;img src=x" in page
    assert 'action="/sandbox/reply"' in inbox and "Yanıtla" in inbox
    r = await owner.post("/sandbox/reply", {"line_id": line, "from": "+905324445566",
                                            "text": "DUR"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/sandbox")
    page = await (await owner.get(r.headers["Location"])).text()
    assert 'data-testid="reply-outcome"' in page and "BAŞLA" in page  # the confirmation
    page = await (await owner.get("/consents?address=0532 444 55 66&channel=whatsapp")).text()
    history = page.split('data-testid="consent-history"', 1)[1].split("</table>", 1)[0]
    assert history.count("<tr>") == 3  # header + granted + revoked
    assert "izin verdi" in history and "reddetti" in history and "revoked" not in history
    assert 'data-testid="suppressions"' not in page  # listed on request only
    # Listing and downloading are exports: the password is re-entered (issue 12).
    listed = await (await owner.post("/consents/suppressions", {
        "password": owner.password, "format": "page"})).text()
    assert 'data-testid="suppressions"' in listed and "+905324445566" in listed
    csv = await owner.post("/consents/suppressions", {"password": owner.password,
                                                      "format": "csv"})
    assert csv.status == 200 and "attachment" in csv.headers["Content-Disposition"]
    assert "+905324445566" in await csv.text()
    await tenant.call("POST", "/vault/lock")
    page = await (await owner.get("/consents")).text()
    assert 'data-testid="suppressions-locked"' in page


async def test_lines_page_lists_and_adds_lines_without_echoing_tokens(owner, tenant):
    await tenant.unlock()  # line names are sealed: the page reads them while unlocked
    page = await (await owner.get("/lines")).text()
    assert 'data-testid="lines"' in page and "sandbox" in page
    r = await owner.post("/lines", {"channel": "whatsapp", "name": "Mağaza WA",
                                    "phone_number_id": "1234", "access_token": "EAAGgizli",
                                    "app_secret": "appsırrı", "verify_token": "dogrula",
                                    "messaging_tier": "1"})
    assert r.status == 200
    page = await r.text()
    assert "Mağaza WA" in page and "/webhooks/whatsapp/" in page and "2.000" in page
    assert "EAAGgizli" not in page and "appsırrı" not in page
    r = await owner.post("/lines", {"channel": "whatsapp", "name": "eksik",
                                    "access_token": "EAAGgizli2"})
    assert r.status == 400 and "EAAGgizli2" not in await r.text()
    operator = await make_web_user(owner.client, tenant, "operator")
    assert (await operator.post("/lines", {"channel": "sandbox", "name": "x"})).status == 403


async def test_vault_unlock_lock_and_wrong_passphrase(owner, tenant):
    page = await (await owner.get("/vault")).text()
    assert 'name="passphrase"' in page and 'name="ttl_minutes" value="60"' in page
    assert "Kasayı aç" in page and "data-countdown" not in page
    r = await owner.post("/vault/unlock", {"passphrase": "yanlış parola", "ttl_minutes": "5"})
    assert r.status == 403
    text = await r.text()
    assert 'data-testid="vault-error"' in text and "Traceback" not in text
    r = await owner.post("/vault/unlock", {"passphrase": PASSPHRASE, "ttl_minutes": "5"})
    assert r.status == 200
    text = await r.text()
    countdown = text.split('data-countdown="', 1)[1].split('"', 1)[0]
    assert 290 <= int(countdown) <= 300
    assert (await (await tenant.call("GET", "/vault")).json())["unlocked"] is True
    r = await owner.post("/vault/lock")
    assert r.status == 200 and "data-countdown" not in await r.text()
    assert (await (await tenant.call("GET", "/vault")).json())["unlocked"] is False


async def test_viewer_reads_but_cannot_change_and_csrf_is_required(client, tenant):
    viewer = await make_web_user(client, tenant, "viewer")
    for path in ("/contacts", "/consents", "/sandbox", "/lines", "/vault"):
        r = await viewer.get(path)
        assert r.status == 200, path
        text = await r.text()
        assert 'id="import-form"' not in text and "Kasayı aç" not in text
    assert (await _upload(viewer, b"phone\n05321112233\n")).status == 403
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    r = await viewer.post("/sandbox/reply", {"line_id": line, "from": "05321112233",
                                             "text": "DUR"})
    assert r.status == 403
    r = await viewer.post("/vault/unlock", {"passphrase": PASSPHRASE, "ttl_minutes": "5"})
    assert r.status == 403
    assert (await (await tenant.call("GET", "/vault")).json())["unlocked"] is False
    owner = await make_web_user(client, tenant, "owner")
    r = await client.post("/vault/unlock", data={"passphrase": PASSPHRASE})
    assert r.status == 403
    assert (await _upload(owner, b"phone\n05321112233\n", csrf="wrong")).status == 403
    lists = (await (await tenant.call("GET", "/lists")).json())["lists"]
    assert lists == []


async def test_consent_record_downloads_for_an_inspection_and_is_audited(client, tenant, owner):
    await tenant.unlock()
    await tenant.call("POST", "/consents", json={
        "address": "05321112299", "channel": "whatsapp", "status": "granted",
        "source": "HS_WEB", "evidence": "web formu, kutucuk işaretli"})
    page = await (await owner.get("/consents?address=05321112299&channel=whatsapp")).text()
    assert 'action="/consents/export"' in page
    # A download of personal data: POSTed with the password re-entered (issue 12).
    r = await owner.post("/consents/export", {"address": "05321112299",
                                              "channel": "whatsapp", "password": "yanlış 123"})
    assert r.status == 403
    r = await owner.post("/consents/export", {"address": "05321112299",
                                              "channel": "whatsapp", "password": owner.password})
    assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    record = await r.json()
    assert record["address"] == "+905321112299"
    assert record["history"][0]["evidence"]["statement"] == "web formu, kutucuk işaretli"
    log = (await (await tenant.call("GET", "/audit")).json())["entries"]
    assert any(e["action"] == "consent.export" for e in log)
