"""API: the consent ledger, the gate's dry run, and suppressions."""
from __future__ import annotations

import csv
import io

from aiohttp import web

from dashboard.context import context_of
from dashboard.errors import json_response, parse_body
from dashboard.models import request_model, rule
from dashboard.routing import Operation, require_key_role
from dashboard.services import consent


@request_model
class RecordConsent:
    channel: str = rule(str)
    address: str = rule(str)
    status: str = rule(str, enum=("granted", "revoked"), service_checks=True)
    source: str = rule(str)
    evidence: str | dict = rule(None, description=(
        "the statement or form the person was shown (text, or an object); the service "
        "refuses an empty one (missing_field)"), schema={"type": ["string", "object"]})
    occurred_at: str | float | None = rule(None, default=None, schema={
        "type": ["string", "number"], "format": "date-time",
        "description": "ISO 8601 or Unix seconds, after 2000-01-01 and not in the future"})
    recipient_type: str = rule(str, default="individual", enum=("individual", "merchant"),
                               service_checks=True)
    reconsent: bool = rule(bool, default=False, description=(
        "The person consented again themselves after refusing (STOP, a provider's stop, İYS "
        "RET, a complaint) or after their erasure, and `evidence` is that new consent. Only "
        "such a consent lifts a refusal: without it a granted consent for a person who "
        "refused is 409 refused_earlier (erased: 409 erased). Recorded in the audit log; "
        "must be dated after what it lifts (409 reconsent_not_newer)"))


async def post_consent(request: web.Request) -> web.Response:
    body = await parse_body(request, RecordConsent)
    return json_response(await consent.record(
        context_of(request), body.channel, body.address, body.status, body.source,
        body.evidence, occurred=body.occurred_at, recipient_type=body.recipient_type,
        reconsent=body.reconsent), status=201)


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


@request_model
class Suppress:
    address: str = rule(str)
    channel: str | None = rule(str, default=None)
    kind: str = rule(str, default="manual", service_checks=True, enum=(
        "manual", "complaint", "erasure", "blocked", "opted_out"))


async def post_suppression(request: web.Request) -> web.Response:
    body = await parse_body(request, Suppress)
    return json_response(await consent.suppress(context_of(request), body.address,
                                                body.channel, body.kind), status=201)


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


OPERATIONS = [
    Operation("POST", "/api/v1/consents", post_consent, "Record a consent or a refusal",
              model=RecordConsent, responses={
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
              model=Suppress,
              responses={201: "Suppressed"}),
]
