"""The vault through the HTTP API: unlock, wrong passphrase, lock, custody."""
from crypto.errors import VaultLockedError
from dashboard.keys import keyring_key


async def test_unlock_then_lock(tenant):
    keyring = tenant.client.app[keyring_key]
    await tenant.unlock()
    assert keyring.is_unlocked(tenant.id)
    status = await (await tenant.call("GET", "/vault")).json()
    assert status["unlocked"] is True and status["custody"] == "passphrase"
    assert 3500 < status["expires_in_seconds"] <= 3600
    assert (await tenant.call("POST", "/vault/lock")).status == 204
    assert not keyring.is_unlocked(tenant.id)


async def test_wrong_passphrase_is_403_and_server_keeps_serving(tenant):
    r = await tenant.call("POST", "/vault/unlock", json={"passphrase": "yanlış parola 123"})
    assert r.status == 403
    assert (await r.json())["error"]["code"] == "wrong_passphrase"
    assert not tenant.client.app[keyring_key].is_unlocked(tenant.id)
    await tenant.unlock()
    assert (await tenant.client.get("/healthz")).status == 200


async def test_repeated_wrong_passphrases_are_throttled(tenant):
    for _ in range(5):
        r = await tenant.call("POST", "/vault/unlock", json={"passphrase": "yanlış parola 123"})
        assert r.status == 403
    r = await tenant.call("POST", "/vault/unlock", json={"passphrase": "yanlış parola 123"})
    assert r.status == 429


async def test_unlock_validates_body(tenant):
    r = await tenant.call("POST", "/vault/unlock", data=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    r = await tenant.call("POST", "/vault/unlock", json={})
    assert r.status == 400 and "passphrase" in (await r.json())["error"]["message"]
    r = await tenant.call("POST", "/vault/unlock", json={"passphrase": "x" * 20, "ttl_seconds": -5})
    assert r.status == 400 and "ttl_seconds" in (await r.json())["error"]["message"]


async def test_custody_switch_needs_unlock_and_service_survives_restart(tenant, config):
    r = await tenant.call("POST", "/vault/custody", json={"custody": "service"})
    assert r.status == 423 and (await r.json())["error"]["code"] == "vault_locked"
    await tenant.unlock()
    r = await tenant.call("POST", "/vault/custody", json={"custody": "service"})
    assert r.status == 200 and (await r.json())["custody"] == "service"

    # A fresh process (new app, same store and master key) unlocks service tenants by itself.
    from izinli.app import create_app
    second = create_app(config)
    from aiohttp.test_utils import TestClient, TestServer
    async with TestClient(TestServer(second)) as other:
        assert other.app[keyring_key].is_unlocked(tenant.id)
        other.app[keyring_key].get(tenant.id)


async def test_custody_back_to_passphrase_forgets_service_wrap(tenant, config):
    await tenant.unlock()
    r = await tenant.call("POST", "/vault/custody", json={"custody": "service"})
    # Unattended: unlocked for the service term now, not only until the unlock's own end.
    assert (await r.json())["expires_in_seconds"] > 300 * 86400
    r = await tenant.call("POST", "/vault/custody", json={"custody": "passphrase"})
    status = await r.json()
    assert status["custody"] == "passphrase" and status["unlocked"] is True
    # The unlock goes on, for the usual unlock time at most (not the service's year).
    assert status["expires_in_seconds"] <= config.crypto.unlock_ttl_seconds
    # Locked, a fresh process must stay locked: it would unlock from a service wrap left
    # behind. (While unlocked, a fresh process on PostgreSQL gets the unlock from this one.)
    assert (await tenant.call("POST", "/vault/lock")).status == 204
    from aiohttp.test_utils import TestClient, TestServer

    from izinli.app import create_app
    async with TestClient(TestServer(create_app(config))) as other:
        assert not other.app[keyring_key].is_unlocked(tenant.id)
        try:
            other.app[keyring_key].get(tenant.id)
            raise AssertionError("expected VaultLockedError")
        except VaultLockedError:
            pass


async def test_invalid_custody_is_400(tenant):
    await tenant.unlock()
    r = await tenant.call("POST", "/vault/custody", json={"custody": "anyone"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_custody"
