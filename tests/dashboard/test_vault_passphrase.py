"""A passphrase worth its job: weak vault passphrases are refused with Turkish feedback (setup,
the CLI's tenant create, passphrase changes), and setup leaves the vault open for the owner."""
import pytest
from conftest import PASSPHRASE, form_value

import accounts
from accounts.passphrase import estimate
from dashboard.keys import db_key, keyring_key

WEAK = ["aaaaaaaaaaaa", "123456789012", "qwertyuiopas", "galatasaray1905", "parola123456"]
GOOD = ["bulut kapı limon yürüyüş", PASSPHRASE, "Şükrü Çağlayan İğdır parolası"]


@pytest.mark.parametrize("passphrase", WEAK)
def test_weak_passphrases_are_refused_with_turkish_advice(passphrase):
    with pytest.raises(accounts.WeakPassphraseError) as caught:
        accounts.check_passphrase(passphrase, 12)
    feedback = caught.value.details["feedback"]
    assert feedback["score"] < feedback["min_score"] == 4
    assert "kelime" in feedback["tr"] and "word" in feedback["en"]


@pytest.mark.parametrize("passphrase", GOOD)
def test_a_few_words_pass(passphrase):
    assert accounts.check_passphrase(passphrase, 12) == passphrase
    assert estimate(passphrase).strong


def test_the_business_name_counts_as_an_easy_word():
    assert estimate("kuaforecekuaforece").strong is False
    with pytest.raises(accounts.WeakPassphraseError):
        accounts.check_passphrase("Kuaför Ece 2026", 12, ("Kuaför Ece",))


async def _setup_page(client, passphrase: str):
    from dashboard.pages.web import setup_state_key
    client.app[setup_state_key]["token"] = "tek-seferlik"
    page = await (await client.get("/setup?token=tek-seferlik")).text()
    return await client.post("/setup", data={
        "csrf": form_value(page, "csrf"), "token": "tek-seferlik", "business": "Kuaför Ece",
        "email": "ece@kuafor.com.tr", "password": "ece parola 2026", "passphrase": passphrase})


async def test_weak_passphrase_refused(client, tenant):
    # The API: changing to a weak passphrase is a 400 weak_passphrase with the feedback.
    r = await tenant.call("POST", "/vault/passphrase", json={
        "passphrase": PASSPHRASE, "new_passphrase": "aaaaaaaaaaaa"})
    assert r.status == 400
    error = (await r.json())["error"]
    assert error["code"] == "weak_passphrase"
    assert error["feedback"]["score"] == 0 and "tekrar" in error["feedback"]["tr"].casefold()
    # Nothing changed: the old passphrase still opens the vault.
    await tenant.unlock()


async def test_weak_passphrase_refused_on_the_setup_page(client):
    r = await _setup_page(client, "123456789012")
    assert r.status == 400
    text = await r.text()
    assert "yaygın bir parola" in text and "kelime" in text  # the Turkish advice, on the form
    async with client.app[db_key].connect() as conn:
        from store.tenants import list_tenants
        assert await list_tenants(conn) == []  # no business was made


async def test_setup_leaves_the_vault_unlocked(client):
    r = await _setup_page(client, "uzun bir kasa parolası 42")
    assert r.status == 200, await r.text()
    async with client.app[db_key].connect() as conn:
        from store.tenants import list_tenants
        (row,) = await list_tenants(conn)
    assert client.app[keyring_key].expires_at(row.id) is not None
    page = await (await client.get("/vault")).text()
    assert 'action="/vault/lock"' in page  # the owner finds it open


async def test_changing_the_passphrase(client, tenant):
    new = "bulut kapı limon yürüyüş"
    r = await tenant.call("POST", "/vault/passphrase", json={
        "passphrase": "yanlış parola 123", "new_passphrase": new})
    assert r.status == 403 and (await r.json())["error"]["code"] == "wrong_passphrase"
    r = await tenant.call("POST", "/vault/passphrase", json={
        "passphrase": PASSPHRASE, "new_passphrase": new})
    assert r.status == 204, await r.text()
    r = await tenant.call("POST", "/vault/unlock", json={"passphrase": PASSPHRASE})
    assert r.status == 403
    await tenant.unlock(new)
    r = await tenant.call("GET", "/audit")
    actions = [e["action"] for e in (await r.json())["entries"]]
    assert "vault.passphrase" in actions and "vault.passphrase_failed" in actions


async def test_changing_the_passphrase_on_the_vault_page(client, tenant, owner):
    page = await (await owner.get("/vault")).text()
    assert 'action="/vault/passphrase"' in page
    r = await owner.post("/vault/passphrase", data={
        "passphrase": PASSPHRASE, "new_passphrase": "aaaaaaaaaaaa",
        "new_passphrase_again": "aaaaaaaaaaaa"})
    assert r.status == 400 and "tahmin" in await r.text()
    new = "bulut kapı limon yürüyüş"
    r = await owner.post("/vault/passphrase", data={
        "passphrase": PASSPHRASE, "new_passphrase": new, "new_passphrase_again": new},
        allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/vault?done=changed"
    await tenant.unlock(new)


async def test_the_meter_gives_the_servers_estimate_while_typing(client):
    r = await client.post("/passphrase/strength", data={"passphrase": "aaaaaaaaaaaa",
                                                        "business": "Kuaför Ece"})
    text = await r.text()
    assert r.status == 200 and 'value="0"' in text and "tekrar" in text.casefold()
    r = await client.post("/passphrase/strength", data={"new_passphrase": GOOD[0]})
    text = await r.text()
    assert 'id="new-passphrase-strength"' in text and 'value="4"' in text and "Güçlü" in text
