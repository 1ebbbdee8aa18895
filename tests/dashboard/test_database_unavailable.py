"""With the database unusable every route answers 503 with Retry-After — the API and webhooks
as `{"error": {"code": "database_unavailable"}}`, /healthz naming the fault, pages as a
readable page — never a 500; and all of it recovers by itself."""
from __future__ import annotations

import contextlib
from contextlib import asynccontextmanager

from accounts import users
from dashboard.keys import db_key
from store.faults import DatabaseUnavailableError


@asynccontextmanager
async def _refused(engine, write):
    raise DatabaseUnavailableError("unreachable")
    yield  # pragma: no cover — an async context manager needs a yield


@contextlib.contextmanager
def _database_down(monkeypatch, db):
    with monkeypatch.context() as m:
        m.setattr(db, "_session", _refused)
        yield


def _is_503(r) -> None:
    assert r.status == 503, r.status
    assert int(r.headers["Retry-After"]) > 0


async def test_api_webhooks_and_healthz_answer_503_while_the_database_is_down(
        client, tenant, monkeypatch):
    db = client.app[db_key]
    with _database_down(monkeypatch, db):
        for method, path in (("POST", "/lists"), ("GET", "/campaigns/x"), ("GET", "/lines")):
            r = await tenant.call(method, path, json={"name": "x"} if method == "POST" else None)
            _is_503(r)
            assert (await r.json())["error"]["code"] == "database_unavailable"
        r = await client.post("/webhooks/whatsapp/some-line", data=b'{"entry": []}',
                              headers={"X-Hub-Signature-256": "sha256=00"})
        _is_503(r)  # Meta redelivers a 503; a 500 or 200 here could lose a STOP
        r = await client.get("/healthz")
        _is_503(r)
        assert await r.json() == {"status": "unavailable", "database": "unreachable"}
    r = await client.get("/healthz")
    assert r.status == 200 and await r.json() == {"status": "ok", "database": "ok"}
    assert (await tenant.call("GET", "/lines")).status == 200


async def test_pages_show_a_readable_503(client, owner, monkeypatch):
    db = client.app[db_key]
    signed_in = {}
    real = users.session_user

    async def remembered(database, token, **kwargs):  # the session as it was: the page fails
        if token not in signed_in:
            signed_in[token] = await real(database, token, **kwargs)
        return signed_in[token]
    monkeypatch.setattr(users, "session_user", remembered)
    assert (await owner.get("/contacts")).status == 200
    with _database_down(monkeypatch, db):
        r = await owner.get("/contacts", headers={"Accept": "text/html"})
        _is_503(r)
        assert r.headers["Content-Type"].startswith("text/html")
        assert "try again" in await r.text()
    assert (await owner.get("/contacts")).status == 200
