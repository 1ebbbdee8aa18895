"""Request models (dashboard.models): each operation's JSON body is declared once; the OpenAPI
document's requestBody and the validation both come from that declaration."""
from __future__ import annotations

import pytest

from dashboard.app import operations
from dashboard.inputs import InputError
from dashboard.models import ABSENT, given, parse, request_model, rule, schema_of
from dashboard.routing import openapi_document


@request_model
class Inner:
    username: str = rule(str, min_length=1)


@request_model(closed=True)
class Sample:
    name: str = rule(str, max_length=5)
    count: int = rule(int, default=1, minimum=1, maximum=10)
    rate: float | None = rule(float, default=None)
    kind: str = rule(str, default="a", enum=("a", "b"))
    flag: bool = rule(bool, default=False)
    tags: list = rule(list, default=[], items=str, max_length=3)
    account: Inner | None = rule(Inner, default=None)
    sender: str = rule(str, default=ABSENT, alias="from")


def _refused(body, code: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        parse(Sample, body)
    assert caught.value.code == code, caught.value
    assert f"'{named}'" in caught.value.message, caught.value.message


def test_every_operation_documents_the_body_its_model_parses():
    document = openapi_document(operations(), "1")
    with_model = [op for op in operations() if op.model is not None]
    assert len(with_model) >= 20
    for op in with_model:
        body = document["paths"][op.path][op.method.lower()]["requestBody"]
        assert body["content"]["application/json"]["schema"] == schema_of(op.model), op.path
    # No API body is described beside a model: only a non-JSON body (the CSV import) keeps
    # `body`, and provider webhooks, whose bodies the providers define.
    described = [op.path for op in operations() if op.body is not None
                 and op.body_type == "application/json" and not op.path.startswith("/webhooks/")]
    assert not described, described


def test_the_schema_says_what_parse_enforces():
    schema = schema_of(Sample)
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["name"] == {"type": "string", "maxLength": 5}
    assert props["count"] == {"type": "integer", "minimum": 1, "maximum": 10, "default": 1}
    assert props["kind"] == {"enum": ["a", "b"], "default": "a"}
    assert props["tags"]["items"] == {"type": "string"} and props["tags"]["maxItems"] == 3
    assert props["account"]["required"] == ["username"]
    assert "from" in props and "sender" not in props


def test_parse_gives_typed_values_and_defaults():
    found = parse(Sample, {"name": "ab", "rate": 2, "from": "x", "tags": ["t"],
                           "account": {"username": "u"}, "kind": None})
    assert (found.name, found.count, found.rate, found.kind, found.tags) == (
        "ab", 1, 2.0, "a", ["t"])
    assert found.account == Inner(username="u") and found.sender == "x"
    assert given(parse(Sample, {"name": "ab"})) == {
        "name": "ab", "count": 1, "rate": None, "kind": "a", "flag": False, "tags": [],
        "account": None}


@pytest.mark.parametrize(("body", "code", "named"), [
    ({}, "missing_field", "name"),
    ({"name": None}, "missing_field", "name"),
    ({"name": 5}, "invalid_field", "name"),
    ({"name": "abcdef"}, "invalid_field", "name"),
    ({"name": "a", "count": True}, "invalid_field", "count"),
    ({"name": "a", "count": 1.5}, "invalid_field", "count"),
    ({"name": "a", "count": 11}, "invalid_field", "count"),
    ({"name": "a", "rate": "1"}, "invalid_field", "rate"),
    ({"name": "a", "rate": 10 ** 30}, "invalid_number", "rate"),
    ({"name": "a", "kind": "c"}, "invalid_field", "kind"),
    ({"name": "a", "flag": 1}, "invalid_field", "flag"),
    ({"name": "a", "tags": "x"}, "invalid_field", "tags"),
    ({"name": "a", "tags": [1]}, "invalid_field", "tags[]"),
    ({"name": "a", "tags": ["1", "2", "3", "4"]}, "invalid_field", "tags"),
    ({"name": "a", "account": {}}, "missing_field", "account.username"),
    ({"name": "a", "account": "u"}, "invalid_field", "account"),
    ({"name": "a\x00"}, "invalid_text", "name"),
    ({"name": "a", "other": 1}, "unknown_field", "other"),
])
def test_parse_refuses_with_the_api_codes(body, code, named):
    _refused(body, code, named)


def test_an_open_model_ignores_fields_it_does_not_declare():
    assert parse(Inner, {"username": "u", "extra": 1}) == Inner(username="u")


async def test_api_answers_model_refusals_as_400s(tenant):
    """Through the server: the same codes, as {"error": {code, message}}."""
    cases = [("POST", "/lists", {}, "missing_field"),
             ("POST", "/lists", {"name": 5}, "invalid_field"),
             ("POST", "/vault/unlock", {"passphrase": "x", "ttl_seconds": "1"}, "invalid_field"),
             ("PATCH", "/settings", {"colour": "red"}, "unknown_field"),
             ("PATCH", "/settings", {"quiet_start_hour": 24}, "invalid_field"),
             ("PATCH", "/settings", {"brand_names": ["a", 2]}, "invalid_field"),
             ("PATCH", "/settings", {"base_url": "http://x"}, "address_not_allowed"),
             ("POST", "/campaigns", {"name": "c", "line_id": "l", "list_id": "l"},
              "missing_field"),
             ("POST", "/sandbox/inbound", {"line_id": "l", "text": "STOP"}, "missing_field")]
    for method, path, body, code in cases:
        r = await tenant.call(method, path, json=body)
        answer = await r.json()
        assert (r.status, answer["error"]["code"]) == (400, code), (path, body, answer)


def test_service_errors_map_to_statuses_in_one_place():
    """Services raise domain errors; dashboard.errors gives the status (pages use the same)."""
    from dashboard.errors import known_failure
    from dashboard.services import ServiceError, ServiceNotFoundError, ServiceStateError
    assert known_failure(ServiceError("empty_file", "empty")) == (400, "empty_file", "empty")
    assert known_failure(ServiceNotFoundError("no such list")) == (
        404, "not_found", "no such list")
    assert known_failure(ServiceStateError("erased", "erased")) == (409, "erased", "erased")
