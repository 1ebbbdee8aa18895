"""Shared fixtures: every store-backed test runs on SQLite and on PostgreSQL.

PostgreSQL runs when IZINLI_TEST_DATABASE_URL names a server (each test gets a fresh database,
dropped afterwards); it is skipped otherwise, unless IZINLI_REQUIRE_POSTGRES=1 (CI), where a
missing or unreachable server fails the test."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from izinli import config as configuration
from izinli.app import create_app, open_store

PG_URL = os.environ.get("IZINLI_TEST_DATABASE_URL", "")
REQUIRE_PG = os.environ.get("IZINLI_REQUIRE_POSTGRES") == "1"
PASSPHRASE = "doğru at pil zımba 42"
# Where the test config points every provider unless a test names a fake (port 9: discard,
# nothing listens), so no test can ever call a real service.
NOWHERE = "http://127.0.0.1:9"


def _pg_admin(action: str, name: str) -> None:
    import asyncpg

    async def run():
        url = make_url(PG_URL)
        conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                     password=url.password, database=url.database)
        try:
            await conn.execute(action.format(name=name))
        finally:
            await conn.close()
    asyncio.run(run())


def _schema_digest() -> str:
    """Names the schema the migrations build: a template made by other migrations is not used."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parents[1] / "store" / "migrations").rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


async def _migrate(url: str) -> None:
    from store.engine import open_database
    from store.migrate import upgrade
    db = open_database(url)
    try:
        await upgrade(db)
    finally:
        await db.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file at the newest schema, made once per run: each test starts from a copy
    instead of running every migration again (the migrations' own tests opt out)."""
    path = tmp_path_factory.mktemp("template") / "izinli.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template() -> str | None:
    """A PostgreSQL database at the newest schema that test databases are copied from
    (CREATE DATABASE … TEMPLATE), made once per schema: migrating each test's database cost
    about 0.3 s. None when PostgreSQL is not configured."""
    if not PG_URL:
        return None
    name = f"izinli_tmpl_{_schema_digest()}"
    import asyncpg

    async def exists(conn) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))

    async def make() -> None:
        url = make_url(PG_URL)
        conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                     password=url.password, database=url.database)
        try:
            if await exists(conn):
                return
            building = f"{name}_b{secrets.token_hex(3)}"
            await conn.execute(f'CREATE DATABASE "{building}"')
            await _migrate(make_url(PG_URL).set(database=building).render_as_string(
                hide_password=False))
            try:  # another run may have made it meanwhile: then ours goes
                await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            except asyncpg.DuplicateDatabaseError:
                await conn.execute(f'DROP DATABASE "{building}" WITH (FORCE)')
        finally:
            await conn.close()
    try:
        asyncio.run(make())
    except OSError:
        return None  # unreachable: database_url reports it per test
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path):
    fresh = request.node.get_closest_marker("fresh_database") is not None
    if request.param == "sqlite":
        path = tmp_path / "izinli.db"
        if not fresh:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
            path.chmod(0o600)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("IZINLI_REQUIRE_POSTGRES=1 but IZINLI_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL not configured (set IZINLI_TEST_DATABASE_URL)")
    name = f"izinli_t_{secrets.token_hex(6)}"
    template = None if fresh else request.getfixturevalue("pg_template")
    try:
        _pg_admin('CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""),
                  name)
    except OSError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    _pg_admin('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', name)


@pytest.fixture(autouse=True)
def _root_log_handlers():
    """The root logger's handlers as they were before the test: a test that runs the CLI in
    this process (`izinli.cli.main` calls izinli.logs.configure) leaves a handler writing to
    the stderr pytest captured for that test, a file closed once the test ends ("Logging
    error … I/O operation on closed file" in later tests)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch) -> None:
    """The master key's default place (the user's config dir) inside the test's own directory,
    for this process and every process it starts: no test writes to the real home."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("IZINLI_MASTER_KEY_FILE", raising=False)


@pytest.fixture
def config(tmp_path: Path, database_url: str, monkeypatch) -> configuration.Config:
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    return configuration.load(None, env={}, overrides={
        "data_dir": tmp_path / "var", "store.url": database_url, "crypto.kdf": "min",
        "server.telegram_poll_seconds": 1,
        **{f"providers.{name}_url": NOWHERE for name in ("whatsapp", "telegram", "iys")}})


def with_providers(config: configuration.Config, **urls: str) -> configuration.Config:
    """`config` with providers.<name>_url set, e.g. with_providers(c, whatsapp=fake_url): how
    tests point the service at the fake provider servers (tests/fakes)."""
    return dataclasses.replace(config, providers=dataclasses.replace(
        config.providers, **{f"{name}_url": url for name, url in urls.items()}))


@pytest.fixture
async def db(config):
    database = await open_store(config)
    yield database
    await database.close()


@pytest.fixture
async def client(config, aiohttp_client):
    # config (and its database) first: torn down after the app that uses them.
    return await aiohttp_client(create_app(config))


class ApiTenant:
    """A tenant created in the running test app, with helpers to call the API as it."""

    def __init__(self, client, tenant_id: str, api_key: str):
        self.client, self.id, self.key = client, tenant_id, api_key

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    async def call(self, method: str, path: str, **kw):
        headers = {**self.auth, **kw.pop("headers", {})}
        return await self.client.request(method, "/api/v1" + path, headers=headers, **kw)

    async def unlock(self, passphrase: str = PASSPHRASE, ttl: float = 3600):
        r = await self.call("POST", "/vault/unlock", json={"passphrase": passphrase,
                                                           "ttl_seconds": ttl})
        assert r.status == 204, await r.text()


@pytest.fixture
async def tenant(client) -> ApiTenant:
    import accounts
    from dashboard.keys import db_key, master_key
    tenant_id, api_key = await accounts.create_tenant(
        client.app[db_key], client.app[master_key], "Örnek Mağaza", PASSPHRASE, kdf="min")
    return ApiTenant(client, tenant_id, api_key)


class WebUser:
    """A dashboard user signed in through the login form; `csrf` is its session's token."""

    def __init__(self, client, tenant: ApiTenant, email: str, password: str, csrf: str):
        self.client, self.tenant, self.email, self.password, self.csrf = (
            client, tenant, email, password, csrf)

    async def get(self, path: str, **kw):
        return await self.client.get(path, allow_redirects=kw.pop("allow_redirects", True), **kw)

    async def post(self, path: str, data: dict | None = None, **kw):
        return await self.client.post(path, data={"csrf": self.csrf, **(data or {})}, **kw)


def form_value(html: str, name: str) -> str:
    import re
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field"
    return found.group(1)


async def web_login(client, email: str, password: str):
    page = await (await client.get("/login")).text()
    return await client.post("/login", data={"csrf": form_value(page, "csrf"), "email": email,
                                             "password": password}, allow_redirects=False)


async def make_web_user(client, tenant: ApiTenant, role: str = "owner",
                        email: str | None = None) -> WebUser:
    from accounts import users
    from dashboard.keys import db_key, master_key
    email = email or f"{role}@ornek.com.tr"
    password = "gizli parola 123"
    await users.create_user(client.app[db_key], client.app[master_key], tenant.id, email,
                            password, role, "test", kdf="min")
    r = await web_login(client, email, password)
    assert r.status == 303, await r.text()
    page = await (await client.get("/")).text()
    return WebUser(client, tenant, email, password, form_value(page, "csrf"))


@pytest.fixture
async def owner(client, tenant) -> WebUser:
    return await make_web_user(client, tenant, "owner")


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for tests that run several real processes."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("IZINLI_REQUIRE_POSTGRES=1 but IZINLI_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL not configured (set IZINLI_TEST_DATABASE_URL)")
    name = f"izinli_c_{secrets.token_hex(6)}"
    _pg_admin('CREATE DATABASE "{name}"', name)
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    _pg_admin('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', name)


@pytest.fixture
def cluster(tmp_path, pg_url):
    from real_server import Cluster
    c = Cluster(tmp_path, pg_url)
    yield c
    c.stop()


async def open_window(tenant: ApiTenant, line_id: str, addresses: list[str]) -> None:
    """These people wrote to the (WhatsApp) line just now: free text may reach them for 24 h
    (campaigns.window). For tests whose subject is not the window itself."""
    import time

    from campaigns import window
    from dashboard.keys import db_key, directory_key
    from optout.addresses import normalise_phone
    directory = tenant.client.app[directory_key]
    async with tenant.client.app[db_key].begin() as conn:
        await directory.profile(conn, tenant.id)
        for address in addresses:
            index = directory.index(tenant.id, normalise_phone(address))
            await window.note_inbound(conn, tenant.id, line_id, index, time.time())
