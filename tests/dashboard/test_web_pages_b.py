"""Dashboard pages: settings, audit log, KVKK requests, users, API keys and sample data."""
import re

import aiohttp
from conftest import form_value, make_web_user, web_login

PERSON = "0532 444 55 66"


async def _settings(tenant) -> dict:
    return await (await tenant.call("GET", "/settings")).json()


async def _session_status(client, token: str, path: str = "/") -> int:
    """A request carrying only this session cookie (not the test client's cookie jar)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s, s.get(
            client.make_url(path), headers={"Cookie": f"izinli_session={token}"},
            allow_redirects=False) as r:
        return r.status


def _session_token(client) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))["izinli_session"].value


# --- settings ---------------------------------------------------------------------------------

async def test_viewer_sees_settings_but_cannot_change_them(client, tenant):
    viewer = await make_web_user(client, tenant, "viewer")
    r = await viewer.get("/settings")
    assert r.status == 200
    page = await r.text()
    assert "Örnek Mağaza" in page and "İYS" in page
    r = await viewer.post("/settings", {"sender_name": "Başka", "language": "en"})
    assert r.status == 403
    r = await viewer.post("/settings/iys/retry")
    assert r.status == 403
    assert (await _settings(tenant))["sender_name"] == "Örnek Mağaza"


async def test_admin_changes_settings_and_they_persist(client, tenant):
    admin = await make_web_user(client, tenant, "admin")
    r = await admin.post("/settings", {
        "sender_name": "Çiçek Evi", "sender_contact": "0212 555 00 00", "language": "en",
        "timezone": "Europe/Istanbul", "quiet_hours": "on", "quiet_start_hour": "22",
        "quiet_end_hour": "8", "frequency_cap": "2", "frequency_window_days": "14"},
        allow_redirects=False)
    assert r.status == 303, await r.text()
    s = await _settings(tenant)
    assert (s["frequency_cap"], s["frequency_window_days"]) == (2, 14)
    assert (s["sender_name"], s["sender_contact"], s["language"]) == (
        "Çiçek Evi", "0212 555 00 00", "en")
    assert (s["quiet_hours"], s["quiet_start_hour"], s["quiet_end_hour"]) == (True, 22, 8)
    # Unchecked box: quiet hours off. A bad zone is refused with the API's message.
    r = await admin.post("/settings", {"sender_name": "Çiçek Evi", "language": "tr",
                                       "timezone": "Mars/Olympus", "quiet_start_hour": "1",
                                       "quiet_end_hour": "2"})
    assert r.status == 400 and "IANA" in await r.text()
    r = await admin.post("/settings", {"sender_name": "Çiçek Evi", "language": "tr",
                                       "timezone": "Europe/Istanbul",
                                       "quiet_start_hour": "1", "quiet_end_hour": "2"})
    assert r.status == 200 and "Ayarlar kaydedildi" in await r.text()
    assert (await _settings(tenant))["quiet_hours"] is False


async def test_iys_connection_saved_without_echoing_the_password(client, tenant):
    admin = await make_web_user(client, tenant, "admin")
    r = await admin.post("/settings/iys", {
        "iys_enabled": "on", "iys_code": "123456", "iys_brand_code": "654321",
        "iys_username": "kullanici",
        "iys_password": "çok-gizli-iys-parolası"}, allow_redirects=False)
    assert r.status == 303, await r.text()
    s = await _settings(tenant)
    assert s["iys_enabled"] and s["iys_connected"] and s["iys_code"] == "123456"
    page = await (await admin.get("/settings")).text()
    # İYS's address is the operator's configuration: the page no longer asks for one.
    assert "iys_base_url" not in page
    assert "çok-gizli-iys-parolası" not in page and "kullanici" not in page
    assert "Reddedilen kayıt yok" in page
    r = await admin.post("/settings/iys/retry", allow_redirects=False)
    assert r.status == 303


# --- audit ------------------------------------------------------------------------------------

async def test_audit_page_shows_logins_and_changes_by_user(client, tenant, owner):
    await owner.post("/settings", {"sender_name": "Yeni Ad", "language": "tr",
                                   "timezone": "Europe/Istanbul", "quiet_start_hour": "21",
                                   "quiet_end_hour": "9"})
    r = await owner.get("/audit")
    assert r.status == 200
    page = await r.text()
    # Actions and their details in Turkish (the code stays in an attribute for scripts).
    assert 'data-action="user.login"' in page and 'data-action="settings.update"' in page
    assert "Kullanıcı oturum açtı" in page and "Ayarlar değiştirildi" in page
    assert "gönderen adı" in page and "sender_name" not in page  # the changed setting
    assert owner.email in page  # user:<id> shown as the e-mail
    viewer = await make_web_user(client, tenant, "viewer")
    assert (await viewer.get("/audit")).status == 200
    # Paging through the API and the page.
    data = await (await tenant.call("GET", "/audit", params={"limit": "1"})).json()
    assert len(data["entries"]) == 1 and data["next_before"] == data["entries"][0]["seq"]
    older = await (await tenant.call("GET", "/audit", params={
        "before": str(data["next_before"]), "limit": "500"})).json()
    assert older["next_before"] is None
    assert all(e["seq"] < data["next_before"] for e in older["entries"])
    assert (await tenant.call("GET", "/audit", params={"before": "x"})).status == 400
    r = await viewer.get(f"/audit?before={data['next_before']}")
    page = await r.text()
    assert r.status == 200 and "settings.update" in page and 'href="/audit"' in page


# --- KVKK -------------------------------------------------------------------------------------

async def _person(tenant) -> None:
    await tenant.unlock()
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "vip"})).json())["id"]
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data="telefon;ad soyad;consent\n0532 444 55 66;Gülşen Ağaoğlu;evet\n"
                          .encode(), headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()


async def _gate(tenant) -> dict:
    return await (await tenant.call("GET", "/gate", params={"address": PERSON})).json()


async def test_people_page_is_for_admins_and_says_when_locked(client, tenant):
    operator = await make_web_user(client, tenant, "operator")
    assert (await operator.get("/people")).status == 403
    admin = await make_web_user(client, tenant, "admin")
    r = await admin.post("/people", {"address": PERSON})
    assert r.status == 423 and "Kasa kilitli" in await r.text()


async def test_kvkk_lookup_export_correct_and_erase_through_the_page(client, tenant):
    await _person(tenant)
    admin = await make_web_user(client, tenant, "admin")
    r = await admin.post("/people", {"address": PERSON})
    assert r.status == 200
    assert "Gülşen Ağaoğlu" in await r.text()
    r = await admin.post("/people/export", {"address": PERSON, "password": "yanlış parola 1"})
    assert r.status == 403
    r = await admin.post("/people/export", {"address": PERSON, "password": admin.password})
    assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    assert (await r.json())["contact"]["name"] == "Gülşen Ağaoğlu"
    r = await admin.post("/people/correct", {"address": PERSON, "name": "Gülşen Ağaoğlu Kaya"})
    assert r.status == 200 and "Gülşen Ağaoğlu Kaya" in await r.text()
    assert (await _gate(tenant))["allowed"] is True
    r = await admin.post("/people/erase", {"address": PERSON})
    assert r.status == 403
    r = await admin.post("/people/erase", {"address": PERSON, "password": "yanlış parola 1"})
    assert r.status == 403
    assert (await _gate(tenant))["allowed"] is True
    r = await admin.post("/people/erase", {"address": PERSON, "password": admin.password})
    assert r.status == 200, await r.text()
    page = await r.text()
    assert "silindi" in page and "Gülşen" not in page
    assert await _gate(tenant) == {"allowed": False, "reason": "suppressed"}
    kinds = [x["kind"] for x in (await (await tenant.call(
        "GET", "/subjects/requests")).json())["requests"]]
    assert "erasure" in kinds and "export" in kinds


# --- users ------------------------------------------------------------------------------------

async def test_only_owners_reach_users_and_keys(client, tenant):
    admin = await make_web_user(client, tenant, "admin")
    for path in ("/users", "/keys"):
        assert (await admin.get(path)).status == 403
    r = await admin.post("/users", {"email": "x@ornek.com.tr", "new_password": "uzun parola 123",
                                    "role": "owner", "password": admin.password})
    assert r.status == 403
    r = await admin.post("/keys", {"name": "k", "password": admin.password})
    assert r.status == 403
    owner = await make_web_user(client, tenant, "owner")
    for path in ("/users", "/keys"):
        assert (await owner.get(path)).status == 200


async def test_owner_adds_changes_and_disables_a_user(client, tenant, owner):
    data = {"email": "kasiyer@ornek.com.tr", "new_password": "kasiyer parola 1",
            "role": "viewer"}
    r = await owner.post("/users", {**data, "password": "yanlış parola 1"})
    assert r.status == 403
    r = await owner.post("/users", {**data, "password": owner.password},
                         allow_redirects=False)
    assert r.status == 303, await r.text()
    r = await owner.post("/users", {**data, "password": owner.password})
    assert r.status == 400 and "already exists" in await r.text()
    people = (await (await tenant.call("GET", "/users")).json())["users"]
    (cashier,) = [u for u in people if u["email"] == "kasiyer@ornek.com.tr"]
    assert cashier["role"] == "viewer" and not cashier["disabled"]
    r = await owner.post(f"/users/{cashier['id']}/role", {"role": "operator",
                                                         "password": owner.password},
                         allow_redirects=False)
    assert r.status == 303
    people = (await (await tenant.call("GET", "/users")).json())["users"]
    assert [u["role"] for u in people if u["id"] == cashier["id"]] == ["operator"]
    # The cashier signs in; their session works until they are disabled.
    assert (await web_login(client, data["email"], data["new_password"])).status == 303
    token = _session_token(client)
    assert await _session_status(client, token) == 200
    assert (await web_login(client, owner.email, owner.password)).status == 303
    csrf = form_value(await (await client.get("/users")).text(), "csrf")
    r = await client.post(f"/users/{cashier['id']}/disable",
                          data={"csrf": csrf, "password": owner.password},
                          allow_redirects=False)
    assert r.status == 303
    assert await _session_status(client, token) == 303  # back to the sign-in page
    assert (await web_login(client, data["email"], data["new_password"])).status == 401
    people = (await (await tenant.call("GET", "/users")).json())["users"]
    assert [u["disabled"] for u in people if u["id"] == cashier["id"]] == [True]


async def test_users_api_for_api_keys_keeps_one_owner(client, tenant):
    import accounts
    from accounts import users
    from dashboard.keys import db_key, master_key
    # An API key never makes an owner (issue 12): the owner comes from setup or the CLI.
    r = await tenant.call("POST", "/users", json={"email": "sahip@ornek.com.tr",
                                                  "password": "sahip parola 12",
                                                  "role": "owner"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "role_not_allowed"
    only_owner = await users.create_user(client.app[db_key], client.app[master_key], tenant.id,
                                         "sahip@ornek.com.tr", "sahip parola 12", "owner",
                                         "test", kdf="min")
    _, owner_key = await accounts.create_api_key(client.app[db_key], tenant.id, "sahibin",
                                                 "test", role="owner")
    as_owner = {"Authorization": f"Bearer {owner_key}"}
    r = await tenant.call("POST", "/users", json={"email": "zayif@ornek.com.tr",
                                                  "password": "kısa"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "weak_password"
    r = await tenant.call("PATCH", f"/users/{only_owner}", json={"role": "viewer"})
    assert r.status == 403  # an admin key cannot touch an owner
    r = await tenant.call("PATCH", f"/users/{only_owner}", json={"role": "viewer"},
                          headers=as_owner)
    assert r.status == 409 and (await r.json())["error"]["code"] == "last_owner"
    r = await tenant.call("PATCH", f"/users/{only_owner}", json={"role": "boss"})
    assert r.status == 400
    r = await tenant.call("PATCH", "/users/nope", json={"disabled": True})
    assert r.status == 404


# --- API keys ---------------------------------------------------------------------------------

async def test_api_key_is_shown_once_works_and_stops_when_revoked(client, tenant, owner):
    r = await owner.post("/keys", {"name": "muhasebe", "password": "yanlış parola 1"})
    assert r.status == 403
    r = await owner.post("/keys", {"name": "muhasebe", "password": owner.password})
    assert r.status == 200
    key = re.search(r"izk_[0-9a-f]+_[A-Za-z0-9_-]+", await r.text()).group(0)
    key_id = key.split("_")[1]
    listing = await (await owner.get("/keys")).text()
    assert "muhasebe" in listing and key_id in listing and key not in listing
    bearer = {"Authorization": f"Bearer {key}"}
    r = await client.get("/api/v1/settings", headers=bearer)
    assert r.status == 200 and (await r.json())["sender_name"] == "Örnek Mağaza"
    r = await owner.post(f"/keys/{key_id}/revoke", allow_redirects=False)
    assert r.status == 303
    assert (await client.get("/api/v1/settings", headers=bearer)).status == 401
    keys = (await (await tenant.call("GET", "/api-keys")).json())["api_keys"]
    assert [k["revoked"] for k in keys if k["id"] == key_id] == [True]
    assert [k["current"] for k in keys if not k["revoked"]] == [True]
    assert (await tenant.call("DELETE", f"/api-keys/{key_id}")).status == 404
    actions = [e["action"] for e in (await (await tenant.call("GET", "/audit")).json())[
        "entries"]]
    assert "api_key.create" in actions and "api_key.revoke" in actions


# --- sample data ------------------------------------------------------------------------------

async def test_sample_data_creates_a_list_contacts_and_a_draft_campaign(client, tenant, owner):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    page = await (await owner.get("/")).text()
    assert 'action="/sample"' in page
    r = await owner.post("/sample", allow_redirects=False)
    assert r.status == 303, await r.text()
    location = r.headers["Location"]
    assert location.startswith("/campaigns/")
    lists = (await (await tenant.call("GET", "/lists")).json())["lists"]
    (sample,) = [x for x in lists if x["name"] == "Örnek müşteriler"]
    assert sample["members"] == 8
    campaigns = (await (await tenant.call("GET", "/campaigns")).json())["campaigns"]
    assert [(c["id"], c["state"]) for c in campaigns] == [(location.rsplit("/", 1)[1],
                                                           "draft")]
    r = await owner.get(location)
    assert r.status == 200 and "Örnek kampanya" in await r.text()
    assert 'action="/sample"' not in await (await owner.get("/")).text()
    viewer = await make_web_user(client, tenant, "viewer")
    assert (await viewer.post("/sample")).status == 403
