"""Never a 500 for client input: one validation layer refuses lone surrogates, NULs, deep
nesting, non-finite or out-of-range numbers and wrong types with {"error": {"code", "message"}},
on every route; /metrics counts the status actually sent."""
from __future__ import annotations

import asyncio
import itertools
import re

import pytest
from conftest import form_value

from dashboard.inputs import InputError, clean_text, int_param, parse_json, parse_provider_json

HOSTILE_BODIES = [
    (b'{"name": "\\ud800"}', "invalid_text"),
    (b'{"name": "a\\u0000b"}', "invalid_text"),
    (b'{"na\\u0000me": "x"}', "invalid_text"),
    (b'{"name": ["ok", {"deeper": "\\udfff"}]}', "invalid_text"),
    (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "too_deep"),
    (b'{"a":' * 33 + b"1" + b"}" * 33, "too_deep"),
    (b'{"name": NaN}', "invalid_number"),
    (b'{"name": Infinity}', "invalid_number"),
    (b'{"name": -Infinity}', "invalid_number"),
    (b'{"name": 1e400}', "invalid_number"),
    (b'{"name": 123456789012345678901234567890}', "invalid_number"),
    (b'{"name": ' + b"9" * 5000 + b"}", "invalid_json"),
    (b"\xed\xa0\x80", "invalid_json"),
]
JSON_ROUTES = [("POST", "/lists"), ("POST", "/campaigns"), ("POST", "/consents"),
               ("POST", "/templates/preview"), ("POST", "/vault/unlock"), ("PATCH", "/settings"),
               ("POST", "/sandbox/inbound"), ("POST", "/subjects/correct"), ("POST", "/users")]


def test_parse_json_refuses_what_storage_cannot_hold():
    for raw, code in HOSTILE_BODIES:
        with pytest.raises(InputError) as caught:
            parse_json(raw)
        assert caught.value.code == code, raw[:40]
    assert parse_json(b'{"a": [1, 2.5, "\\ud83d\\ude00", {"b": null}]}') == {
        "a": [1, 2.5, "😀", {"b": None}]}
    assert parse_json(b"[" * 32 + b"]" * 32) is not None  # the limit itself is allowed


def test_provider_json_keeps_the_text_and_drops_what_cannot_be_stored():
    assert parse_provider_json(b'{"t\\u0000": "ST\\u0000OP\\ud800"}') == {"t": "STOP\ufffd"}
    assert clean_text("ok") == "ok"
    for raw in (b"[" * 100_000, b'{"a": NaN}', b"not json"):
        with pytest.raises(InputError):
            parse_provider_json(raw)


def test_int_param_range():
    assert int_param({"n": "12"}, "n", None, 1, 100) == 12
    assert int_param({}, "n", 7, 1) == 7
    for bad in ("1e23", "9" * 30, "-5", "x", "²", "9" * 5000, "1.5"):
        with pytest.raises(InputError):
            int_param({"n": bad}, "n", None, 1)


async def test_hostile_json_is_400_on_every_json_route(tenant):
    await tenant.unlock()
    for (method, path), (raw, code) in itertools.product(JSON_ROUTES, HOSTILE_BODIES):
        r = await tenant.call(method, path, data=raw,
                              headers={"Content-Type": "application/json"})
        body = await r.json()
        assert r.status == 400, (path, raw[:40], body)
        assert body["error"]["code"] == code and body["error"]["message"], (path, raw[:40])


async def test_wrong_types_are_400_naming_the_field(tenant):
    await tenant.unlock()
    cases = [
        ("POST", "/templates/preview", {"template": "Merhaba", "sample": "not an object"},
         "sample"),
        ("POST", "/templates/preview", {"template": {"a": 1}}, "template"),
        ("POST", "/lists", {"name": 5}, "name"),
        ("POST", "/lists", {"name": True}, "name"),
        ("POST", "/vault/unlock", {"passphrase": "x" * 20, "ttl_seconds": "60"}, "ttl_seconds"),
        ("POST", "/vault/unlock", {"passphrase": "x" * 20, "ttl_seconds": True}, "ttl_seconds"),
        ("POST", "/vault/unlock", {"passphrase": "x" * 20, "ttl_seconds": 10 ** 30},
         "ttl_seconds"),
        ("POST", "/consents", {"address": "+905321112233", "channel": "sandbox",
                               "status": "granted", "source": "web", "evidence": "form",
                               "occurred_at": -1e308}, "occurred_at"),
        ("POST", "/consents", {"address": "+905321112233", "channel": "sandbox",
                               "status": "granted", "source": "web", "evidence": "form",
                               "occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"),
        ("POST", "/consents", {"address": "+905321112233", "channel": "sandbox",
                               "status": "granted", "source": "web", "evidence": "form",
                               "occurred_at": 12.5}, "occurred_at"),
    ]
    for method, path, body, name in cases:
        r = await tenant.call(method, path, json=body)
        answer = await r.json()
        assert r.status == 400, (path, body, answer)
        assert name in answer["error"]["message"], (path, answer)


async def test_query_and_path_nul_is_400_on_any_route(tenant, client):
    await tenant.unlock()
    for method, path in (
            ("GET", "/gate?address=%00&channel=sandbox"), ("GET", "/consents?address=%2B90532%00"),
            ("GET", "/subjects?address=1&channel=sand%00box"), ("GET", "/campaigns/%00"),
            ("POST", "/campaigns/abc%00/start"), ("GET", "/audit?before=%00"),
            ("GET", "/sandbox/messages?to=%00"), ("GET", "/contacts?address=%ED%A0%80%00"),
            ("PATCH", "/users/%00")):
        r = await tenant.call(method, path)
        body = await r.json()
        assert r.status == 400 and body["error"]["code"] == "invalid_text", (path, body)
    r = await client.get("/webhooks/whatsapp/%00")
    assert r.status == 400
    # Undecodable bytes arrive as U+FFFD (never a lone surrogate): an ordinary bad address.
    r = await tenant.call("GET", "/gate?address=%ED%A0%80&channel=sandbox")
    assert r.status == 200 and (await r.json())["reason"] == "invalid_address"


async def test_audit_paging_out_of_range_is_400(tenant):
    for query in ("before=1e23", "before=" + "9" * 30, "before=" + "9" * 5000, "limit=0",
                  "limit=501", "before=-1", "limit=1.5"):
        r = await tenant.call("GET", f"/audit?{query}")
        body = await r.json()
        assert r.status == 400 and body["error"]["code"] == "invalid_field", (query, body)
    assert (await tenant.call("GET", "/audit?before=9223372036854775807")).status == 200


async def test_metrics_count_the_status_sent(client, tenant):
    await tenant.call("POST", "/lists", data=b'{"name": NaN}',
                      headers={"Content-Type": "application/json"})
    await tenant.call("GET", "/campaigns/no-such-campaign")
    await client.get("/api/v1/vault")  # no key: 401 from the auth middleware
    text = await (await client.get("/metrics")).text()
    counted = {(m, route): status for m, route, status in re.findall(
        r'izinli_http_requests_total\{method="(\w+)",route="([^"]+)",status="(\d+)"\}', text)}
    assert counted[("POST", "/api/v1/lists")] == "400"
    assert counted[("GET", "/api/v1/campaigns/{id}")] == "404"
    assert counted[("GET", "/api/v1/vault")] == "401"
    assert 'status="500"' not in text


async def test_dashboard_forms_with_nul_are_not_500(client, owner):
    r = await owner.post("/campaigns", {"name": "a\x00b", "template": "Merhaba"})
    assert r.status == 400, await r.text()
    page = await (await client.get("/login")).text()
    r = await client.post("/login", data={"csrf": form_value(page, "csrf"),
                                          "email": "x\x00@ornek.com.tr", "password": "p"},
                          allow_redirects=False)
    assert r.status == 400


async def _raw_status(client, head: bytes) -> int:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"Host: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


async def test_undecodable_or_non_ascii_secret_headers_are_400(client, tenant):
    for head in (b"GET /api/v1/vault HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n",
                 b"GET /api/v1/vault HTTP/1.1\r\nAuthorization: Bearer \xc5\x9f\r\n",
                 b"POST /webhooks/telegram/x HTTP/1.1\r\n"
                 b"X-Telegram-Bot-Api-Secret-Token: \xed\xa0\x80\r\n",
                 b"POST /webhooks/whatsapp/x HTTP/1.1\r\nX-Hub-Signature-256: sha256=\xc5\x9f\r\n",
                 b"GET / HTTP/1.1\r\nCookie: izinli_session=\xff\xfe\r\n"):
        assert await _raw_status(client, head) == 400, head


async def test_csv_rows_with_nul_are_invalid_not_500(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "l"})).json())["id"]
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data=b"phone,name,consent_source,sehir\n05321112233,A\x00li,web,x\n"
                               b"05321112234,Veli,we\x00b,x\n05321112235,Can,web,x\n",
                          headers={"Content-Type": "text/csv"})
    body = await r.json()
    assert r.status == 200, body
    assert body["imported"] == 1 and [i["reason"] for i in body["invalid"]] == [
        "invalid_characters", "invalid_characters"]
