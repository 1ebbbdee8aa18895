"""Least privilege and notices (issue 12 item 7): exports of personal data need admin or
owner (and the password in the dashboard), API keys carry a role, security notices fire
whatever the entry point, proxies are trusted only when configured, live streams are capped."""
import asyncio
import re

import aiohttp
import pytest
import sqlalchemy as sa
from conftest import PASSPHRASE, ApiTenant, WebUser, form_value, make_web_user, web_login

import accounts
from accounts import users
from dashboard.keys import db_key, master_key, operator_desk_key
from izinli import config as configuration
from izinli.app import create_app

PERSON = "05321112299"


async def _key(tenant: ApiTenant, role: str) -> ApiTenant:
    _, key = await accounts.create_api_key(tenant.client.app[db_key], tenant.id, role, "test",
                                           role=role)
    return ApiTenant(tenant.client, tenant.id, key)


async def _personal_data(tenant: ApiTenant) -> None:
    await tenant.unlock()
    await tenant.call("POST", "/consents", json={
        "address": PERSON, "channel": "whatsapp", "status": "granted", "source": "HS_WEB",
        "evidence": "web formu"})
    await tenant.call("POST", "/suppressions", json={"address": "05321110000"})


API_EXPORTS = [("/suppressions", {}), ("/suppressions", {"format": "json"}),
               ("/consents", {"address": PERSON, "channel": "whatsapp", "download": "true"}),
               ("/subjects", {"address": PERSON, "channel": "whatsapp"}),
               ("/subjects/export", {"address": PERSON, "channel": "whatsapp"})]
PAGE_EXPORTS = [("/consents/suppressions", {"format": "csv"}),
                ("/consents/suppressions", {"format": "page"}),
                ("/consents/export", {"address": PERSON, "channel": "whatsapp"}),
                ("/people/export", {"address": PERSON})]


async def test_viewer_cannot_export(client, tenant):
    await _personal_data(tenant)
    for role in ("viewer", "operator"):
        key = await _key(tenant, role)
        for path, query in API_EXPORTS:
            r = await key.call("GET", path, params=query)
            assert r.status == 403, (role, path, query)
            assert (await r.json())["error"]["code"] == "forbidden"
        user = await make_web_user(client, tenant, role, email=f"{role}@ornek.com.tr")
        for path, data in PAGE_EXPORTS:
            r = await user.post(path, {**data, "password": user.password})
            assert r.status == 403, (role, path)
            assert "+90532111" not in await r.text()
        page = await (await user.get(f"/consents?address={PERSON}&channel=whatsapp")).text()
        assert "consent-history" in page  # the lookup itself stays open to them
        assert 'action="/consents/export"' not in page
        assert 'action="/consents/suppressions"' not in page
    exports = [e for e in (await (await tenant.call("GET", "/audit")).json())["entries"]
               if e["action"] in ("suppression.export", "consent.export", "subject.export")]
    assert exports == []  # nothing was exported


async def test_admin_exports_with_password_and_each_is_audited(client, tenant):
    await _personal_data(tenant)
    admin = await make_web_user(client, tenant, "admin")
    r = await admin.post("/consents/suppressions", {"format": "csv", "password": "yanlış 123"})
    assert r.status == 403
    r = await admin.post("/consents/suppressions", {"format": "csv",
                                                    "password": admin.password})
    assert r.status == 200 and "+905321110000" in await r.text()
    r = await admin.post("/consents/export", {"address": PERSON, "channel": "whatsapp",
                                              "password": admin.password})
    assert r.status == 200 and (await r.json())["address"] == "+905321112299"
    key = await _key(tenant, "admin")
    assert (await key.call("GET", "/suppressions")).status == 200
    entries = (await (await tenant.call("GET", "/audit")).json())["entries"]
    actions = [(e["action"], e["actor"].split(":")[0]) for e in entries]
    assert ("suppression.export", "user") in actions
    assert ("consent.export", "user") in actions
    assert ("suppression.export", "api_key") in actions


async def test_api_key_role_is_enforced_on_api_routes(tenant):
    viewer, operator = await _key(tenant, "viewer"), await _key(tenant, "operator")
    assert (await viewer.call("GET", "/campaigns")).status == 200
    r = await viewer.call("POST", "/lists", json={"name": "x"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    assert (await operator.call("POST", "/lists", json={"name": "x"})).status == 201
    assert (await operator.call("POST", "/lines", json={"channel": "sandbox",
                                                        "name": "ikinci"})).status == 403
    assert (await operator.call("PATCH", "/settings", json={"language": "en"})).status == 403
    assert (await operator.call("GET", "/users")).status == 403
    assert (await operator.call("POST", "/api-keys", json={"name": "x"})).status == 403
    # The first key of a tenant (and every key that existed before roles) is admin.
    r = await tenant.call("POST", "/lines", json={"channel": "sandbox", "name": "ikinci"})
    assert r.status == 201
    keys = (await (await tenant.call("GET", "/api-keys")).json())["api_keys"]
    assert {k["role"] for k in keys if k["current"]} == {"admin"}
    doc = await (await tenant.client.get("/api/v1/openapi.json")).json()
    assert doc["paths"]["/api/v1/suppressions"]["get"]["x-izinli-role"] == "admin"


async def test_api_key_cannot_create_an_owner(client, tenant, owner):
    # The dashboard owner may make a key of any role, owner included.
    page = await owner.post("/keys", {"name": "sahibin", "role": "owner",
                                      "password": owner.password})
    assert page.status == 200
    owner_key = ApiTenant(client, tenant.id,
                          re.search(r"izk_[0-9a-f]+_[A-Za-z0-9_-]+", await page.text()).group(0))
    for key in (tenant, owner_key):  # an admin key and an owner key
        r = await key.call("POST", "/users", json={"email": f"yeni{id(key)}@ornek.com.tr",
                                                   "password": "yeni parola 123",
                                                   "role": "owner"})
        assert r.status == 403 and (await r.json())["error"]["code"] == "role_not_allowed"
        r = await key.call("POST", "/api-keys", json={"name": "x", "role": "owner"})
        assert r.status == 403 and (await r.json())["error"]["code"] == "role_not_allowed"
    r = await (await _key(tenant, "admin")).call("POST", "/api-keys",
                                                 json={"name": "y", "role": "admin"})
    assert r.status == 201 and (await r.json())["role"] == "admin"
    people = (await (await tenant.call("GET", "/users")).json())["users"]
    assert [u["role"] for u in people] == ["owner"]  # only the dashboard's owner
    # An admin key cannot promote anyone to owner, nor touch or revoke what outranks it.
    r = await tenant.call("POST", "/users", json={"email": "kasiyer@ornek.com.tr",
                                                  "password": "kasiyer parola 1"})
    cashier = (await r.json())["id"]
    r = await tenant.call("PATCH", f"/users/{cashier}", json={"role": "owner"})
    assert r.status == 403
    r = await tenant.call("PATCH", f"/users/{people[0]['id']}", json={"disabled": True})
    assert r.status == 403
    owner_key_id = owner_key.key.split("_")[1]
    assert (await tenant.call("DELETE", f"/api-keys/{owner_key_id}")).status == 403
    assert (await owner_key.call("GET", "/lines")).status == 200


@pytest.mark.fresh_database
async def test_0016_existing_api_keys_become_admin(config):
    from alembic import command

    from store import raw
    from store.engine import open_database
    from store.migrate import _alembic_config, upgrade
    from store.tables import api_keys

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database_url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda s: command.upgrade(_alembic_config(s), "0015"))
            await raw.execute(conn, "INSERT INTO tenants (id, name, created_at, public_key, "
                                    "wrapped_secret, wrapped_lookup_key) VALUES "
                                    "('t', 'Eski', 1, ?, ?, ?)", (b"p", b"w", b"l"))
            await raw.execute(conn, "INSERT INTO api_keys (id, tenant_id, name, secret_hash, "
                                    "created_at) VALUES ('k', 't', 'eski', ?, 1)", (b"h",))
        await upgrade(db)
        async with db.connect() as conn:
            assert (await conn.execute(sa.select(api_keys.c.role))).scalar_one() == "admin"
    finally:
        await db.close()


class _Notices:
    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    async def __call__(self, tenant_id, campaign_id, event, detail=None):
        self.sent.append((event, detail))


async def test_security_notices_fire_once_for_api_and_dashboard(client, tenant, owner,
                                                                monkeypatch):
    notices = _Notices()
    monkeypatch.setattr(client.app[operator_desk_key], "campaign_event", notices)
    assert (await tenant.call("POST", "/api-keys", json={"name": "api"})).status == 201
    assert notices.sent == [("security", "Yeni bir API anahtarı oluşturuldu. (API)")]
    notices.sent.clear()
    r = await owner.post("/keys", {"name": "panel", "password": owner.password})
    assert r.status == 200
    assert notices.sent == [("security", "Yeni bir API anahtarı oluşturuldu. (panel)")]
    notices.sent.clear()
    await tenant.unlock()
    assert notices.sent == [("security", "Kasa açıldı. (API)")]
    notices.sent.clear()
    await tenant.call("POST", "/vault/lock")
    r = await owner.post("/vault/unlock", {"passphrase": PASSPHRASE, "ttl_minutes": "5"},
                         allow_redirects=False)
    assert r.status == 303
    assert notices.sent == [("security", "Kasa açıldı. (panel)")]
    notices.sent.clear()
    r = await tenant.call("POST", "/vault/unlock", json={"passphrase": "yanlış parola 123"})
    assert r.status == 403 and notices.sent == []  # a failed unlock is audited, not announced


@pytest.fixture
def proxy_config(tmp_path, database_url, monkeypatch):
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)

    def make(trusted: tuple[str, ...]):
        return configuration.load(None, env={}, overrides={
            "data_dir": tmp_path / "var", "store.url": database_url, "crypto.kdf": "min",
            "server.telegram_poll_seconds": 1, "server.trusted_proxies": trusted})
    return make


async def _sign_in_cookie_flags(client) -> tuple[str, str | None]:
    app = client.app
    tenant_id, _ = await accounts.create_tenant(app[db_key], app[master_key], "Mağaza",
                                                PASSPHRASE, kdf="min")
    await users.create_user(app[db_key], app[master_key], tenant_id, "sahip@ornek.com.tr",
                            "gizli parola 123", "owner", "test", kdf="min")
    shown = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    token = form_value(await shown.text(), "csrf")
    # A Secure cookie is not sent back over the test's plain http: the browser behind the
    # proxy (https) would, so the test hands it back itself.
    r = await client.post("/login", data={"csrf": token, "email": "sahip@ornek.com.tr",
                                          "password": "gizli parola 123"},
                          headers={"X-Forwarded-Proto": "https",
                                   "Cookie": f"izinli_csrf={token}"}, allow_redirects=False)
    assert r.status == 303
    cookie = next(v for k, v in r.headers.items()
                  if k.lower() == "set-cookie" and v.startswith("izinli_session="))
    return cookie, r.headers.get("Strict-Transport-Security")


async def test_trusted_proxy_makes_cookies_secure_and_sends_hsts(proxy_config, aiohttp_client):
    client = await aiohttp_client(create_app(proxy_config(("127.0.0.0/8",))))
    cookie, hsts = await _sign_in_cookie_flags(client)
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert hsts and "max-age=" in hsts
    r = await client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert r.headers.get("Strict-Transport-Security")
    r = await client.get("/healthz", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in r.headers


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(proxy_config,
                                                                    aiohttp_client):
    client = await aiohttp_client(create_app(proxy_config(("10.0.0.1",))))
    cookie, hsts = await _sign_in_cookie_flags(client)
    assert "Secure" not in cookie and hsts is None
    # Nor does X-Forwarded-For move the throttle: a forged address is still the peer's.
    for i in range(5):
        r = await web_login(client, "sahip@ornek.com.tr", f"tahmin {i}")
        assert r.status == 401
    page = await (await client.get("/login")).text()
    r = await client.post("/login", data={"csrf": form_value(page, "csrf"),
                                          "email": "sahip@ornek.com.tr",
                                          "password": "tahmin 9"},
                          headers={"X-Forwarded-For": "198.51.100.9"}, allow_redirects=False)
    assert r.status == 429


async def test_live_progress_streams_are_capped_per_session(client, tenant, owner: WebUser):
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "l"})).json())["id"]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "taslak", "line_id": line, "list_id": list_id, "template": "Merhaba"})
    ).json())["id"]
    streams = []
    for _ in range(5):
        r = await owner.get(f"/campaigns/{cid}/events")
        assert r.status == 200
        assert (await r.content.readline()).startswith(b"event: progress")
        streams.append(r)
    r = await owner.get(f"/campaigns/{cid}/events")
    assert r.status == 429 and r.headers.get("Retry-After")
    # Another session of the same user has its own allowance.
    async with aiohttp.ClientSession() as elsewhere:
        page = await (await elsewhere.get(client.make_url("/login"))).text()
        await elsewhere.post(client.make_url("/login"), data={
            "csrf": form_value(page, "csrf"), "email": owner.email,
            "password": owner.password})
        other = await elsewhere.get(client.make_url(f"/campaigns/{cid}/events"))
        assert other.status == 200
        other.close()
    streams.pop().close()  # a closed page frees its slot at the stream's next beat
    for _ in range(40):
        r = await owner.get(f"/campaigns/{cid}/events")
        if r.status == 200:
            break
        await asyncio.sleep(0.1)
    assert r.status == 200
    r.close()
    for s in streams:
        s.close()
