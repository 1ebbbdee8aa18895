"""Throttles that hold under concurrency (issue 12 item 3): attempts are counted before the
slow hash, Argon2id work is bounded process-wide, and an attacker cannot lock the owner out."""
import asyncio
import os
import threading

import aiohttp
import pytest
from conftest import PASSPHRASE, ApiTenant, form_value

import accounts
import crypto.keys
from accounts import users
from dashboard.keys import db_key, master_key
from dashboard.ratelimit import HashBusyError, HashSlots, LoginThrottle, TooManyAttemptsError
from izinli import config as configuration
from izinli.app import create_app

MIB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


class RssPeak:
    """The highest resident set size of this process while the block runs, sampled every
    millisecond from /proc (hashing threads release the GIL, so the sampler keeps running)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE


def _count_calls(monkeypatch, module, name: str) -> list:
    calls, real = [], getattr(module, name)

    def counting(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(module, name, counting)
    return calls


async def test_parallel_wrong_passphrases_are_throttled(client, monkeypatch):
    # The tests' usual "min" Argon2 level uses 8 KiB: no memory to see. This tenant's
    # passphrase is wrapped at "interactive" (64 MiB per hash), so one hash is visible in the
    # RSS and the bound on concurrent hashes can be measured; MODERATE (256 MiB) would make
    # the unbounded case several GB on this shared machine.
    db = client.app[db_key]
    tenant_id, key = await accounts.create_tenant(db, client.app[master_key], "Yoğun Mağaza",
                                                  PASSPHRASE, kdf="interactive")
    tenant = ApiTenant(client, tenant_id, key)
    hashes = _count_calls(monkeypatch, crypto.keys, "_derive")
    with RssPeak() as one:
        await tenant.unlock()  # right: forgiven, and shows what one hash costs
    await tenant.call("POST", "/vault/lock")
    assert len(hashes) == 1 and one.growth > 32 * MIB
    hashes.clear()
    with RssPeak() as burst:
        answers = await asyncio.gather(*[
            tenant.call("POST", "/vault/unlock", json={"passphrase": f"yanlış parola {i:03}"})
            for i in range(50)])
    statuses = [r.status for r in answers]
    assert 1 <= len(hashes) <= 5
    assert statuses.count(403) == len(hashes)
    assert statuses.count(429) == 50 - len(hashes)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status == 429)
    codes = {(await r.json())["error"]["code"] for r in answers if r.status == 429}
    assert codes == {"too_many_attempts"}
    # At most `kdf_concurrency` (2) hashes at once: growth stays near two hashes' worth.
    assert burst.growth < 300 * MIB
    assert burst.growth < 2 * one.growth + 48 * MIB, (burst.growth, one.growth)
    # Refused-while-busy requests were not counted; checked ones were. After 5 wrong ones in
    # the window even the right passphrase waits, and is not hashed.
    for i in range(5 - len(hashes)):
        r = await tenant.call("POST", "/vault/unlock", json={"passphrase": f"yine yanlış {i}"})
        assert r.status == 403
    r = await tenant.call("POST", "/vault/unlock", json={"passphrase": PASSPHRASE})
    assert r.status == 429 and len(hashes) == 5


async def _login(client, email: str, password: str, ip: str | None = None):
    page = await (await client.get("/login")).text()
    headers = {"X-Forwarded-For": ip} if ip else None
    return await client.post("/login", data={"csrf": form_value(page, "csrf"), "email": email,
                                             "password": password},
                             allow_redirects=False, headers=headers)


async def test_parallel_wrong_logins_are_throttled(client, tenant, monkeypatch):
    await users.create_user(client.app[db_key], client.app[master_key], tenant.id,
                            "sahip@ornek.com.tr", "gizli parola 123", "owner", "test",
                            kdf="min")
    checks = _count_calls(monkeypatch, users, "_verify")
    page = await (await client.get("/login")).text()
    csrf = form_value(page, "csrf")
    answers = await asyncio.gather(*[client.post("/login", data={
        "csrf": csrf, "email": "sahip@ornek.com.tr", "password": f"yanlış parola {i}"},
        allow_redirects=False) for i in range(20)])
    statuses = [r.status for r in answers]
    assert 1 <= len(checks) <= 5
    assert statuses.count(401) == len(checks) and statuses.count(429) == 20 - len(checks)
    assert all(r.headers.get("Retry-After") for r in answers if r.status == 429)


@pytest.fixture
async def proxied(tmp_path, database_url, aiohttp_client, monkeypatch):
    """The app behind a trusted reverse proxy on 127.0.0.1: X-Forwarded-For names the client."""
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    config = configuration.load(None, env={}, overrides={
        "data_dir": tmp_path / "var", "store.url": database_url, "crypto.kdf": "min",
        "server.telegram_poll_seconds": 1, "server.trusted_proxies": ("127.0.0.1",)})
    return await aiohttp_client(create_app(config))


async def test_owner_signs_in_from_another_address_while_an_attacker_hammers(proxied):
    app = proxied.app
    tenant_id, _ = await accounts.create_tenant(app[db_key], app[master_key], "Mağaza",
                                                PASSPHRASE, kdf="min")
    await users.create_user(app[db_key], app[master_key], tenant_id, "sahip@ornek.com.tr",
                            "gizli parola 123", "owner", "test", kdf="min")
    attacker, owner = "203.0.113.7", "198.51.100.2"
    statuses = [(await _login(proxied, "sahip@ornek.com.tr", f"tahmin {i}", attacker)).status
                for i in range(12)]
    assert statuses == [401] * 5 + [429] * 7
    r = await _login(proxied, "sahip@ornek.com.tr", "gizli parola 123", attacker)
    assert r.status == 429  # the attacker's address stays stopped, even with the password
    r = await _login(proxied, "sahip@ornek.com.tr", "gizli parola 123", owner)
    assert r.status == 303 and r.headers["Location"] == "/"


async def _guess(client, email: str, password: str, ip: str) -> int:
    """A sign-in from a browser with no history (no device cookie) at address `ip`."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as fresh:
        async with fresh.get(client.make_url("/login")) as shown:
            token = form_value(await shown.text(), "csrf")
        async with fresh.post(client.make_url("/login"), data={
                "csrf": token, "email": email, "password": password}, allow_redirects=False,
                headers={"X-Forwarded-For": ip, "Cookie": f"izinli_csrf={token}"}) as r:
            return r.status


async def test_a_botnet_cannot_shut_the_owner_out_of_a_known_browser(proxied):
    app = proxied.app
    tenant_id, _ = await accounts.create_tenant(app[db_key], app[master_key], "Mağaza",
                                                PASSPHRASE, kdf="min")
    await users.create_user(app[db_key], app[master_key], tenant_id, "sahip@ornek.com.tr",
                            "gizli parola 123", "owner", "test", kdf="min")
    home = "198.51.100.2"
    r = await _login(proxied, "sahip@ornek.com.tr", "gizli parola 123", home)
    assert r.status == 303  # the owner's browser now has a device cookie this account knows
    statuses = [await _guess(proxied, "sahip@ornek.com.tr", f"tahmin {i}", f"10.1.{i}.9")
                for i in range(55)]
    assert statuses.count(401) == 50 and statuses[-1] == 429  # the account-wide ceiling
    # A browser without history is held back even with the password, from any address...
    assert await _guess(proxied, "sahip@ornek.com.tr", "gizli parola 123", home) == 429
    # ...but the owner's own browser, behind the same address, still gets in.
    r = await _login(proxied, "sahip@ornek.com.tr", "gizli parola 123", home)
    assert r.status == 303 and r.headers["Location"] == "/"


def test_guessing_from_many_addresses_slows_but_never_locks_the_owner_out_for_good():
    now = [1000.0]
    throttle = LoginThrottle(per_account_ip=5, per_ip=30, per_account=50, window_seconds=900,
                             clock=lambda: now[0])
    accepted = 0
    for i in range(400):  # a botnet: 4 guesses from each of 100 addresses
        try:
            throttle.reserve("sahip@ornek.com.tr", f"10.0.{i // 4}.1")
            accepted += 1
        except TooManyAttemptsError:
            pass
    assert accepted == 50  # the account-wide ceiling slows them down
    with pytest.raises(TooManyAttemptsError) as refused:
        throttle.reserve("sahip@ornek.com.tr", "198.51.100.2")
    assert 0 < refused.value.retry_after <= 900
    now[0] += 901  # the window passes: the owner gets in, and success forgives the attempt
    attempt = throttle.reserve("sahip@ornek.com.tr", "198.51.100.2")
    throttle.succeeded(attempt, "sahip@ornek.com.tr", "198.51.100.2")
    assert not throttle.account.blocked("sahip@ornek.com.tr")


async def test_password_reentry_is_throttled_per_session(client, tenant, owner, monkeypatch):
    checks = _count_calls(monkeypatch, users, "_verify")
    answers = await asyncio.gather(*[owner.post("/keys", {"name": "x", "password": f"yanlış {i}"})
                                     for i in range(10)])
    statuses, checked = [r.status for r in answers], len(checks)
    assert 1 <= checked <= 5
    assert statuses.count(403) == checked and statuses.count(429) == 10 - checked
    for i in range(5 - checked):
        assert (await owner.post("/keys", {"name": "x", "password": f"yine {i}"})).status == 403
    r = await owner.post("/keys", {"name": "x", "password": owner.password})
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    assert len(checks) == 5  # the refused one was never hashed
    # Per session: signing in again (a new session) may re-enter the password.
    await _login(client, owner.email, owner.password)
    fresh = form_value(await (await client.get("/keys")).text(), "csrf")
    r = await client.post("/keys", data={"csrf": fresh, "name": "x", "password": owner.password})
    assert r.status == 200


async def test_a_full_hashing_slot_answers_at_once_and_frees_when_the_hash_ends():
    slots = HashSlots(1)
    release = threading.Event()
    first = asyncio.ensure_future(slots.run(release.wait, 5))
    await asyncio.sleep(0.05)
    with pytest.raises(HashBusyError):
        await slots.run(lambda: None)
    first.cancel()  # the request went away, but its hash still runs: the slot stays taken
    await asyncio.sleep(0.05)
    assert slots.busy == 1
    release.set()
    for _ in range(100):
        if slots.busy == 0:
            break
        await asyncio.sleep(0.01)
    assert slots.busy == 0 and await slots.run(lambda: 7) == 7
