"""The setup guides (docs/whatsapp.md, docs/telegram.md) stay true to the code: the API calls,
line fields, configuration options and webhook fields they name exist, the WhatsApp
troubleshooting table says what izinli really does with each error code, the guide's own curl
body adds a line, and the dashboard's line forms point at the guides."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.whatsapp import outcome_for_error
from bot.whatsapp_webhook import parse
from campaigns.ports import LINE_PAUSE_CODES, OptedOut, RateLimited, reason_of
from izinli import config as configuration

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROOT = DOCS.parent
GUIDES = ("whatsapp.md", "telegram.md")

# What issue 15 requires the guides to cover.
REQUIRED_WEBHOOK_FIELDS = {"messages", "message_template_status_update",
                           "phone_number_quality_update"}
REQUIRED_ERROR_CODES = {131047, 131048, 131049, 131050, 368, 190, 130429, 131056}


def guide(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, number: int) -> str:
    """The text of the guide's `## <number>.` section."""
    found = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, re.S | re.M)
    assert found, f"no section {number}"
    return found.group(0)


def table_rows(text: str, first_cell: str) -> dict[str, str]:
    """Markdown table rows whose first cell matches `first_cell`, by that cell."""
    rows = {}
    for line in text.splitlines():
        found = re.match(rf"\s*\|\s*{first_cell}\s*\|", line)
        if found:
            rows[found.group(1)] = line
    return rows


def _normalised(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _operations() -> dict[tuple[str, str], object]:
    from dashboard.app import operations
    return {(op.method, _normalised(op.path)): op for op in operations()}


def _schema_properties(schema: dict | None) -> set[str]:
    """Every property name a JSON schema declares, through nesting and oneOf/anyOf/allOf."""
    found: set[str] = set()
    if not isinstance(schema, dict):
        return found
    for name, sub in (schema.get("properties") or {}).items():
        found.add(name)
        found |= _schema_properties(sub)
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key) or ():
            found |= _schema_properties(sub)
    return found


def _api_calls(text: str) -> set[tuple[str, str]]:
    calls = re.findall(r"\b(GET|POST|PATCH|PUT|DELETE) (/api/v1/[A-Za-z0-9_{}./-]+)", text)
    return {(method, _normalised(path.rstrip("."))) for method, path in calls}


def _line_bodies(text: str) -> list[dict]:
    """The JSON bodies the guide's shell blocks post to $API/lines."""
    bodies = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for body in re.findall(r"-d '(\{.*?\})' \$API/lines\b", block, re.S):
            bodies.append(json.loads(body))
    return bodies


@pytest.mark.parametrize("name", GUIDES)
def test_api_calls_named_in_the_guides_exist(name):
    calls = _api_calls(guide(name))
    assert calls, "the guide names no API call"
    missing = calls - set(_operations())
    assert not missing, f"{name} names API calls izinli does not have: {sorted(missing)}"


@pytest.mark.parametrize("name", GUIDES)
def test_line_bodies_in_the_guides_use_documented_fields(name):
    bodies = _line_bodies(guide(name))
    assert bodies, "the guide shows no curl body for POST /api/v1/lines"
    schema = _operations()[("POST", "/api/v1/lines")].body_schema
    known = _schema_properties(schema)
    for body in bodies:
        unknown = set(body) - known
        assert not unknown, f"{name}: POST /api/v1/lines does not document {sorted(unknown)}"


@pytest.mark.parametrize("name", GUIDES)
def test_fields_named_for_patch_exist(name):
    """Backticked field names in a sentence about PATCH /api/v1/lines/{id}."""
    operation = _operations().get(("PATCH", "/api/v1/lines/{}"))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\|", guide(name))
                 if "PATCH /api/v1/lines/{id}" in s]
    assert sentences and operation is not None
    known = _schema_properties(operation.body_schema)
    for sentence in sentences:
        named = set(re.findall(r"`([a-z][a-z_]*)`", sentence))
        assert named <= known, f"{name}: PATCH does not take {sorted(named - known)}"


@pytest.mark.parametrize("name", GUIDES)
def test_configuration_options_named_in_the_guides_exist(name):
    text = guide(name)
    config = configuration.load(None, env={})
    options = re.findall(r"`(server|providers|store|log|crypto|campaigns)\.([a-z_]+)", text)
    assert options
    for section_name, key in options:
        assert hasattr(getattr(config, section_name), key), f"no option {section_name}.{key}"
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for env in re.findall(r"`(IZINLI_[A-Z_]+)`", text):
        assert env in example, f"{name} names {env}, which config.example.toml does not"


@pytest.mark.parametrize("name", GUIDES)
def test_commands_named_in_the_guides_exist(name):
    """`izinli <command> …` in the guides names a real command (and subcommand, if given)."""
    import argparse

    from izinli.cli import build_parser

    def commands(parser) -> dict:
        found = {}
        for action in parser._actions:  # argparse has no public listing of subparsers
            if isinstance(action, argparse._SubParsersAction):
                found.update(action.choices)
        return found

    for words in re.findall(r"`izinli ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", guide(name)):
        command, _, action = words.partition(" ")
        known = commands(build_parser())
        assert command in known, f"{name} names `izinli {command}`, which does not exist"
        actions = commands(known[command])
        assert not action or not actions or action in actions, f"no `izinli {words}`"


def _whatsapp_webhook(field: str, value: dict) -> dict:
    """A delivery as Meta documents it: one change of one field on the WABA's entry."""
    return {"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398", "time": 1735689600,
         "changes": [{"field": field, "value": value}]}]}


# One documented example value per webhook field the guide tells the owner to subscribe.
WEBHOOK_SAMPLES = {
    "messages": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1065403522"},
        "contacts": [{"profile": {"name": "Ayşe"}, "wa_id": "905321112233"}],
        "messages": [{"from": "905321112233", "id": "wamid.HBgM", "timestamp": "1735689600",
                      "type": "text", "text": {"body": "YARDIM"}}]},
    "message_template_status_update": {
        "event": "PAUSED", "message_template_id": 594425479261596,
        "message_template_name": "kis_indirimi", "message_template_language": "tr",
        "reason": None,
        "other_info": {"title": "FIRST_PAUSE",
                       "description": "Your message template has been paused for 3 hours "
                                      "as a result of consistent negative feedback."}},
    "phone_number_quality_update": {
        "display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_2K"},
    "account_update": {
        "phone_number": "15550783881", "event": "ACCOUNT_RESTRICTION",
        "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING",
                              "expiration": "2026-04-19T13:59:20+0000"}]},
}


def test_webhook_fields_the_guide_subscribes_are_handled():
    rows = table_rows(section(guide("whatsapp.md"), 8), r"`([a-z_]+)`")
    assert set(rows) >= REQUIRED_WEBHOOK_FIELDS, "the guide must name these webhook fields"
    for field in rows:
        assert field in WEBHOOK_SAMPLES, f"add a documented sample of '{field}' here"
        events = parse(_whatsapp_webhook(field, WEBHOOK_SAMPLES[field]))
        assert events, f"the guide subscribes '{field}' but izinli's parser ignores it"


def test_troubleshooting_table_says_what_izinli_does():
    rows = table_rows(section(guide("whatsapp.md"), 13), r"(\d+)")
    assert {int(code) for code in rows} >= REQUIRED_ERROR_CODES
    for code, row in rows.items():
        outcome = outcome_for_error(int(code))
        reason = reason_of(outcome)
        assert reason != f"graph_{code}", f"izinli does not know error {code}"
        assert f"`{reason}`" in row, f"{code}: izinli records `{reason}`; the table must say it"
        pauses_line = reason in LINE_PAUSE_CODES
        assert pauses_line == ("line is paused" in row), f"{code}: line pause misdescribed"
        assert isinstance(outcome, OptedOut) == ("opted out" in row), code
        assert isinstance(outcome, RateLimited) == ("Not an error" in row), code


def test_telegram_guide_states_the_reach_rule_and_limits():
    text = guide("telegram.md")
    assert "cannot write to a phone number" in text
    assert "t.me/<bot username>?start=<token>" in text
    assert "30 messages per second" in text and "1 message per second" in text
    from bot.telegram import new_webhook_secret
    # The secret izinli registers passes Telegram's own rule for secret_token.
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", new_webhook_secret())


async def test_the_guides_whatsapp_body_adds_a_line_that_answers_meta(tenant):
    text = guide("whatsapp.md")
    body = next(b for b in _line_bodies(text) if b["channel"] == "whatsapp")
    r = await tenant.call("POST", "/lines", json=body)
    assert r.status == 201, await r.text()
    line = await r.json()
    assert line["webhook_path"] == f"/webhooks/whatsapp/{line['id']}"
    assert "/webhooks/whatsapp/<line id>" in text
    # Meta's "Verify and save" with the verify token the owner chose.
    r = await tenant.client.get(line["webhook_path"], params={
        "hub.mode": "subscribe", "hub.verify_token": body["verify_token"],
        "hub.challenge": "1158201444"})
    assert (r.status, await r.text()) == (200, "1158201444")


async def test_line_forms_link_to_the_guides(owner):
    page = await (await owner.get("/lines")).text()
    for name in GUIDES:
        assert f"docs/{name}" in page, f"the lines page does not point at docs/{name}"
        assert (DOCS / name).is_file()
