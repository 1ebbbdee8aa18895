"""Never a 500 for client input: hypothesis drives every operation of the OpenAPI document
against a live server (its own thread and loop, a real tenant and API key, a real socket) with
hostile values — lone surrogates, NULs, wrong types, huge and non-finite numbers, deep nesting.
Webhooks get provider-shaped bodies, correctly signed, so that their parsers are reached.

Reproducible: derandomized, a fixed number of examples per operation (IZINLI_FUZZ_EXAMPLES,
default 20, about 10 s per database; a long local run: IZINLI_FUZZ_EXAMPLES=400)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import os
import threading
import time
import urllib.parse

import pytest
from conftest import PASSPHRASE
from fakes.telegram import TOKEN as TG_TOKEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import accounts
from campaigns.ports import Line
from dashboard.keys import credentials_key, db_key, master_key
from izinli.app import create_app

WA_NUMBER, WA_SECRET = "106540352242922", "fuzz-app-secret"
EXAMPLES = int(os.environ.get("IZINLI_FUZZ_EXAMPLES", "20"))
# Run last: they lock the vault, spend the unlock throttle, or change custody.
LAST = {("POST", "/api/v1/vault/lock"), ("POST", "/api/v1/vault/unlock"),
        ("POST", "/api/v1/vault/custody")}

NASTY = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d", "İ\x00", "1e23", "1e308",
         "-1", "0", "NaN", "Infinity", "9" * 40, "2999-01-01T00:00:00Z", "10000-01-01",
         "9999-12-31T23:59:59Z", "0001-01-01", "{{name}}", "{{", "+905321112233",
         "05321112233", "sandbox", "whatsapp", "telegram", "commercial", "true", "null",
         "=cmd|' /C calc'!A0", "a" * 300, "ı" * 70]
NUMBERS = [0, -1, 1, 2 ** 63, -(2 ** 63) - 1, 10 ** 30, 10 ** 400, 1e308, -1e308, 1e-308,
           float("nan"), float("inf"), float("-inf"), 0.5, 253402300800, 1e23]
RAW_BODIES = [b"[" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000, b"\xed\xa0\x80",
              b'{"name": "\\ud800"}', b'{"name": NaN}', b'{"x": 1e400}', b"1" * 5000,
              b'{"a": "\\u0000"}', b"not json", b"[]", b'"text"', b"\xff\xfe",
              b"[" * 31 + b"]" * 31]


class Body(bytes):
    """Request bytes with a short repr: a failing example may hold 100 kB of brackets."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes: {bytes(self[:120])!r}>"


def _text():
    alphabet = st.sampled_from(["\x00", "\ud800", "\udc00", "a", "1", "+", "İ", "{", "}", ",",
                                "\n", ";", "\"", "é"])
    return st.one_of(st.sampled_from(NASTY), st.text(alphabet=alphabet, max_size=24),
                     st.text(max_size=24))


def _scalar():
    return st.one_of(_text(), st.sampled_from(NUMBERS), st.integers(), st.floats(),
                     st.booleans(), st.none())


def _any_json():
    return st.recursive(_scalar(), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_text(), inner, max_size=4)), max_leaves=12)


def _spoiled(good: list):
    """A usable value with a NUL or a lone surrogate slipped in: it passes the checks that come
    first and reaches storage, where such characters used to fail."""
    strings = [g for g in good if isinstance(g, str)] or ["x"]
    return st.tuples(st.sampled_from(strings), st.sampled_from(["\x00", "\ud800", "\udfff"]),
                     st.integers(0, 40)).map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:])


class Values:
    """Strategies from the OpenAPI schemas, steered by usable values per field name (real
    ids, valid phones) so that the checks after the first are reached too."""

    def __init__(self, hints: dict[str, list]):
        self.hints = hints

    def named(self, name: str, schema: dict | None):
        schema = schema or {}
        good = list(self.hints.get(name, [])) + list(schema.get("examples", []))
        if "enum" in schema:
            good += schema["enum"]
        if "const" in schema:
            good.append(schema["const"])
        typed = self.typed(schema)
        hostile = st.sampled_from(NASTY + NUMBERS)
        if not good:
            return st.one_of(typed, typed, hostile, _any_json())
        usable = st.sampled_from(good)
        # Mostly usable, so that one hostile field at a time meets the checks behind the others.
        return st.one_of(*[usable] * 6, _spoiled(good), typed, hostile, _any_json())

    def typed(self, schema: dict):
        kind = schema.get("type")
        kind = kind[0] if isinstance(kind, list) else kind
        if kind == "string":
            return _text()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return st.one_of(st.integers(), st.sampled_from(NUMBERS))
        if kind == "number":
            return st.one_of(st.floats(), st.sampled_from(NUMBERS))
        if kind == "array":
            return st.lists(self.named("", schema.get("items")), max_size=4)
        if kind == "object" and "properties" in schema:
            return self.object(schema)
        if kind == "object":
            return st.dictionaries(_text(), _any_json(), max_size=4)
        return _any_json()

    def object(self, schema: dict):
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: self.named(k, v) for k, v in props.items() if k in required},
            optional={k: self.named(k, v) for k, v in props.items() if k not in required})

    def query(self, name: str, schema: dict):
        def as_text(value) -> str:
            return value if isinstance(value, str) else json.dumps(value).strip('"')
        return self.named(name, schema).map(as_text)

    def body(self, op: dict):
        content = op.get("requestBody", {}).get("content", {})
        if "text/csv" in content:
            cells = st.one_of(self.named("address", {}), self.named("name", {}), _text())
            rows = st.lists(st.lists(cells.map(str), min_size=1, max_size=4).map(",".join),
                            max_size=5)
            csv_text = rows.map(lambda r: "phone,name,consent\n" + "\n".join(r))
            return st.tuples(st.just("text/csv"), st.one_of(
                csv_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
                st.binary(max_size=64)))
        schema = content.get("application/json", {}).get("schema")
        as_json = (self.object(schema) if schema and "properties" in schema else
                   self.named("", schema)).map(lambda v: json.dumps(v).encode())
        return st.tuples(st.just("application/json"), st.one_of(
            as_json, as_json, as_json, st.sampled_from([Body(b) for b in RAW_BODIES])))


def _provider_leaf():
    """A field of a provider's payload: a usable value or anything at all."""
    return st.one_of(_text(), st.sampled_from(NUMBERS), st.integers(), st.none(), _any_json())


def _meta_body():
    """WhatsApp Cloud API webhooks: messages, statuses and preferences with hostile leaves."""
    leaf, phone = _provider_leaf(), st.sampled_from(["905321112233", "+905321112233", "x"])
    stamp = st.one_of(st.sampled_from(["1700000000", "9" * 30, "1e308", "-1", "NaN"]), leaf)
    message = st.fixed_dictionaries({
        "from": st.one_of(phone, leaf), "id": st.one_of(_text(), leaf), "timestamp": stamp,
        "type": st.sampled_from(["text", "button", "interactive", "image"]),
        "text": st.fixed_dictionaries({"body": st.one_of(_text(), leaf)})})
    status = st.fixed_dictionaries({
        "id": st.one_of(_text(), leaf), "recipient_id": st.one_of(phone, leaf),
        "status": st.sampled_from(["sent", "delivered", "read", "failed", "x"]),
        "timestamp": stamp, "biz_opaque_callback_data": st.one_of(
            st.sampled_from(["1", "²", "٣", "9" * 30, "-1", "1\x00"]), leaf),
        "errors": st.lists(st.fixed_dictionaries({"code": st.one_of(
            st.sampled_from([131050, 131026, 130429, 368]), leaf)}), max_size=2)})
    preference = st.fixed_dictionaries({
        "wa_id": st.one_of(phone, leaf), "category": st.sampled_from(["marketing_messages"]),
        "value": st.sampled_from(["stop", "resume", "x"]), "timestamp": stamp})
    value = st.fixed_dictionaries({
        "messaging_product": st.just("whatsapp"),
        "metadata": st.fixed_dictionaries({"phone_number_id": st.just(WA_NUMBER)})},
        optional={"messages": st.lists(message, max_size=2),
                  "statuses": st.lists(status, max_size=2),
                  "user_preferences": st.lists(preference, max_size=2)})
    change = st.fixed_dictionaries({"field": st.sampled_from(["messages", "user_preferences"]),
                                    "value": st.one_of(value, value, leaf)})
    entry = st.fixed_dictionaries({"id": leaf, "changes": st.lists(change, max_size=2)})
    return st.fixed_dictionaries({"object": st.just("whatsapp_business_account"),
                                  "entry": st.lists(entry, min_size=1, max_size=2)})


def _telegram_update():
    """Bot API updates with hostile leaves (no commands: replies would go to a dead port)."""
    leaf = _provider_leaf()
    chat = st.fixed_dictionaries({"id": st.one_of(st.integers(), leaf),
                                  "type": st.sampled_from(["private", "group"])})
    message = st.fixed_dictionaries({
        "message_id": st.one_of(st.integers(), leaf), "chat": chat,
        "date": st.one_of(st.sampled_from(NUMBERS), leaf), "text": st.one_of(_text(), leaf)})
    member = st.fixed_dictionaries({
        "chat": chat, "date": st.one_of(st.sampled_from(NUMBERS), leaf),
        "new_chat_member": st.fixed_dictionaries({"status": st.sampled_from(
            ["kicked", "member", "x"])}),
        "old_chat_member": st.fixed_dictionaries({"status": st.sampled_from(
            ["kicked", "member"])})})
    return st.fixed_dictionaries({"update_id": st.one_of(st.integers(), leaf)}, optional={
        "message": message, "edited_message": message, "my_chat_member": member,
        "callback_query": st.fixed_dictionaries({"id": leaf, "data": leaf, "message": message,
                                                 "from": st.fixed_dictionaries({"id": leaf})})})


def _signed(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def _quote(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


class LiveServer:
    """izinli's app on a real port in a thread of its own, with a tenant, an API key and a few
    objects (list, campaign, line, user, key) whose ids the fuzzer uses in paths."""

    def __init__(self, config):
        self.config, self.loop = config, asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.errors: list[str] = []
        self.seen: dict[tuple[str, str], dict[int, int]] = {}  # answers per operation (-s)

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def start(self) -> None:
        self.thread.start()
        self.runner = self.run(self._start())

    async def _start(self):
        from aiohttp import web
        app = create_app(self.config)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self.tenant_id, self.key = await accounts.create_tenant(
            app[db_key], app[master_key], "Fuzz Mağaza", PASSPHRASE, kdf="min")
        self.app = app
        return runner

    def telegram_secret(self, line_id: str) -> str:
        line = Line(line_id, self.tenant_id, "telegram", "", 30.0, "active")
        return self.run(self.app[credentials_key].telegram(line)).webhook_secret

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, method: str, path: str, body: bytes = b"",
             content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers={
                "Authorization": f"Bearer {self.key}", "Content-Type": content_type,
                **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None) -> dict:
        status, raw = self.call(method, path, json.dumps(body).encode() if body else b"")
        assert status < 300, (path, status, raw[:300])
        return json.loads(raw) if raw else {}


class _ErrorTypes(logging.Handler):
    """The exception type behind each 500 (the server logs the type only)."""

    def __init__(self, sink: list[str]):
        super().__init__()
        self.sink = sink

    def emit(self, record):
        self.sink.append(f"{getattr(record, 'error', record.getMessage())} at "
                         f"{getattr(record, 'path', '?')}")


@pytest.fixture
def live(config):
    server = LiveServer(config)
    server.start()
    handler = _ErrorTypes(server.errors)
    handler.setLevel(logging.ERROR)
    loggers = [logging.getLogger(n) for n in ("dashboard.errors", "dashboard.pages.web", "aiohttp")]
    for logger in loggers:
        logger.addHandler(handler)
    yield server
    for logger in loggers:
        logger.removeHandler(handler)
    server.stop()


PHONES = ["+905321112233", "05321112234", "+90 532 111 22 35", "905321112236"]


def _seed(live: LiveServer) -> dict[str, list]:
    """Real objects and usable values per field name, so path parameters and fields reach
    the handlers' own checks and storage."""
    live.json("POST", "/api/v1/vault/unlock", {"passphrase": PASSPHRASE, "ttl_seconds": 3600})
    line = live.json("GET", "/api/v1/lines")["lines"][0]["id"]
    list_id = live.json("POST", "/api/v1/lists", {"name": "fuzz"})["id"]
    status, _ = live.call("POST", f"/api/v1/contacts/import?list_id={list_id}",
                          b"phone,name,consent\n05321112233,Ali,evet\n", "text/csv")
    assert status == 200
    campaign = live.json("POST", "/api/v1/campaigns", {
        "name": "c", "line_id": line, "list_id": list_id, "template": "Merhaba {{name}}"})["id"]
    user = live.json("POST", "/api/v1/users", {"email": "fuzz@ornek.com.tr",
                                               "password": "uzun bir parola 123",
                                               "role": "viewer"})["id"]
    key = live.json("POST", "/api/v1/api-keys", {"name": "spare"})["id"]
    wa_line = live.json("POST", "/api/v1/lines", {
        "channel": "whatsapp", "name": "wa", "phone_number_id": WA_NUMBER,
        "access_token": "token", "app_secret": WA_SECRET, "verify_token": "verify"})["id"]
    tg_line = live.json("POST", "/api/v1/lines", {"channel": "telegram", "name": "bot",
                                                  "bot_token": TG_TOKEN})["id"]
    return {
        "whatsapp": [wa_line], "telegram": [tg_line], "telegram_secret": [
            live.telegram_secret(tg_line)],
        "id": [line, list_id, campaign, user, key], "line_id": [line], "list_id": [list_id],
        "address": PHONES, "from": PHONES, "to": PHONES, "channel": ["sandbox", "whatsapp"],
        "name": ["Ali Veli", "kampanya"], "template": ["Merhaba {{name}}", "Selam"],
        "text": ["STOP", "DUR", "BAŞLA", "merhaba"], "source": ["HS_WEB", "form"],
        "evidence": ["web formu onayı"], "status": ["granted", "revoked"],
        "email": ["yeni@ornek.com.tr"], "password": ["uzun bir parola 123"],
        "passphrase": [PASSPHRASE], "send_at": [time.time() + 3600, time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))],
        "occurred_at": ["2025-01-01T10:00:00+03:00", 1735689600],
        "sender_name": ["Örnek Mağaza"], "timezone": ["Europe/Istanbul"],
        "brand_names": [["ÖRNEK"]], "limit": [1, 10], "before": [1, 100],
        "hub.mode": ["subscribe"], "hub.verify_token": ["verify"], "hub.challenge": ["42"],
    }


def _operations(doc: dict) -> list[tuple[str, str, dict]]:
    ops = [(m.upper(), p, op) for p, methods in doc["paths"].items()
           for m, op in methods.items()]
    return sorted(ops, key=lambda o: ((o[0], o[1]) in LAST, o[1], o[0]))


def _fuzz_operation(live: LiveServer, method: str, path: str, op: dict, hints: dict):
    values = Values(hints)
    params = op.get("parameters", [])
    path_names = [p["name"] for p in params if p["in"] == "path"]
    query = {p["name"]: values.query(p["name"], p.get("schema", {}))
             for p in params if p["in"] == "query"}
    body = values.body(op) if "requestBody" in op else st.one_of(
        st.just(("application/json", b"")), values.body({}))
    provider = _provider_of(path)
    if provider is not None and method == "POST":  # authenticated bodies reach the parsers
        shaped = (_meta_body() if provider == "whatsapp" else _telegram_update()).map(
            lambda v: ("application/json", json.dumps(v).encode()))
        raw = st.sampled_from([("application/json", Body(b)) for b in RAW_BODIES])
        body = st.one_of(shaped, shaped, raw, body)

    path_value = st.one_of(st.sampled_from(hints["id"]), _text())
    if provider is not None:  # its own line, so that the bodies are parsed
        path_value = st.sampled_from(hints[provider])

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(path_values=st.fixed_dictionaries({n: path_value for n in path_names}),
           query=st.fixed_dictionaries({}, optional=query), body=body)
    def one_request(path_values, query, body):
        url = path
        for name, value in path_values.items():
            url = url.replace("{" + name + "}", _quote(value) or "x")
        if query:
            url += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in query.items())
        content_type, raw = body[0], Body(body[1])
        headers = {}
        if provider == "whatsapp":
            headers = _signed(raw, WA_SECRET)
        elif provider == "telegram":
            headers = {"X-Telegram-Bot-Api-Secret-Token": hints["telegram_secret"][0]}
        status, answer = live.call(method, url, raw, content_type, headers)
        counts = live.seen.setdefault((method, path), {})
        counts[status] = counts.get(status, 0) + 1
        assert status < 500, (method, url, raw[:200], answer[:200], live.errors[-3:])
    one_request()


def _provider_of(path: str) -> str | None:
    return path.split("/")[2] if path.startswith("/webhooks/") else None


def test_fuzz_no_5xx(live):
    status, raw = live.call("GET", "/api/v1/openapi.json")
    assert status == 200
    hints = _seed(live)
    failures = []
    operations = _operations(json.loads(raw))
    assert len(operations) > 40  # every operation of the document is tried
    for method, path, op in operations:
        try:
            _fuzz_operation(live, method, path, op, hints)
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    for (method, path), counts in sorted(live.seen.items(), key=lambda i: i[0][1]):
        print(f"{method:6} {path:45} {dict(sorted(counts.items()))}")
    assert not failures, "\n".join(failures)
    assert set(live.seen) == {(m, p) for m, p, _ in operations}  # none skipped
