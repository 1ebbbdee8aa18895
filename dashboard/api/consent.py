"""API: the consent ledger, the gate's dry run, and suppressions."""
from __future__ import annotations

import csv
import io

from aiohttp import web

from dashboard.errors import field, json_body, json_response
from dashboard.routing import Operation, require_key_role
from dashboard.services import consent, context_of


async def post_consent(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str)
    address = field(body, "address", str)
    status, source = field(body, "status", str), field(body, "source", str)
    reconsent = field(body, "reconsent", bool, required=False, default=False)
    recipient_type = field(body, "recipient_type", str, required=False, default="individual")
    return json_response(await consent.record(
        context_of(request), channel, address, status, source, body.get("evidence"),
        occurred=body.get("occurred_at"), recipient_type=recipient_type, reconsent=reconsent),
        status=201)


async def get_consents(request: web.Request) -> web.Response:
    download = request.query.get("download") in ("1", "true")
    if download:  # the consent record as a file is an export of personal data
        require_key_role(request, "admin")
    return json_response(await consent.lookup(
        context_of(request), request.query.get("address"),
        request.query.get("channel", "sandbox"), download=download))


async def get_gate(request: web.Request) -> web.Response:
    return json_response(await consent.gate(
        context_of(request), request.query.get("address"),
        request.query.get("channel", "sandbox"), request.query.get("purpose", "commercial")))


async def post_suppression(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str, required=False, default=None)
    address = field(body, "address", str)
    kind = field(body, "kind", str, required=False, default="manual")
    return json_response(await consent.suppress(context_of(request), address, channel, kind),
                         status=201)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str | None) -> str:
    """Spreadsheet-safe: a leading quote keeps Excel from evaluating =, +, -, @ cells."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def suppressions_csv(items: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["address", "scope", "kind", "source", "created_at"])
    for item in items:
        writer.writerow([_cell(item[k]) for k in ("address", "scope", "kind", "source",
                                                  "created_at")])
    return out.getvalue()


async def get_suppressions(request: web.Request) -> web.Response:
    export_format = request.query.get("format", "csv")
    items = await consent.suppressions(context_of(request), export_format)
    if export_format == "json":
        return json_response({"suppressions": items})
    return web.Response(text=suppressions_csv(items), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})


CONSENT_SCHEMA = {"type": "object", "required": ["address", "channel", "status", "source",
                                                 "evidence"], "properties": {
    "address": {"type": "string"}, "channel": {"type": "string"},
    "status": {"enum": ["granted", "revoked"]}, "source": {"type": "string"},
    "evidence": {"type": ["string", "object"]}, "occurred_at": {
        "type": ["string", "number"], "format": "date-time",
        "description": "ISO 8601 or Unix seconds, after 2000-01-01 and not in the future"},
    "recipient_type": {"enum": ["individual", "merchant"]},
    "reconsent": {"type": "boolean", "default": False, "description": (
        "The person consented again themselves after refusing (STOP, a provider's stop, İYS "
        "RET, a complaint) or after their erasure, and `evidence` is that new consent. Only "
        "such a consent lifts a refusal: without it a granted consent for a person who "
        "refused is 409 refused_earlier (erased: 409 erased). Recorded in the audit log; "
        "must be dated after what it lifts (409 reconsent_not_newer)")}}}

OPERATIONS = [
    Operation("POST", "/api/v1/consents", post_consent, "Record a consent or a refusal",
              body=CONSENT_SCHEMA, responses={
                  201: "Recorded", 400: "Invalid consent",
                  409: "refused_earlier: the person refused, and only their own new consent "
                       "(reconsent: true) lifts that; erased: the person's data was erased; "
                       "reconsent_not_newer: the reconsent is older than the refusal"}),
    Operation("GET", "/api/v1/consents", get_consents,
              "Current consent state and full history for an address, with evidence while "
              "unlocked; download=true records it in the audit log as an export (proof for an "
              "inspection)", query=("address", "channel", "download")),
    Operation("GET", "/api/v1/gate", get_gate,
              "Dry run of the send gate: would a message be allowed now, and why",
              query=("address", "channel", "purpose")),
    Operation("GET", "/api/v1/suppressions", get_suppressions,
              "Export suppressions as CSV (format=json for JSON); needs the vault unlocked",
              query=("format",), responses={200: "Export", 423: "Vault is locked"},
              role="admin"),
    Operation("POST", "/api/v1/suppressions", post_suppression,
              "Suppress an address: manual, complaint, erasure or blocked",
              body={"type": "object", "required": ["address"], "properties": {
                  "address": {"type": "string"}, "channel": {"type": "string"},
                  "kind": {"enum": ["manual", "complaint", "erasure", "blocked", "opted_out"]}}},
              responses={201: "Suppressed"}),
]
