"""API: the consent ledger, the gate's dry run, and suppressions."""
from __future__ import annotations

import csv
import io
import json
import math
import time

from aiohttp import web

from crypto.errors import VaultLockedError
from dashboard.auditing import audited
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import (
    TENANT,
    actor_of,
    db_key,
    directory_key,
    erasures_key,
    fields_key,
    watch_key,
)
from dashboard.lines_api import address_param, iso
from dashboard.routing import Operation, require_key_role
from optout import audit, facts, ledger, refusals, subjects, suppression
from optout.deadlines import parse_consent_date
from optout.gate import Purpose, decide
from optout.ledger import ConsentEvent, consent_type_for


async def _context(request: web.Request):
    """(profile, sealer) for writes on behalf of the calling tenant."""
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        profile = await app[directory_key].profile(conn, tenant_id)
    return profile, await app[fields_key].shared_sealer(tenant_id, profile.public_key)


# Consents are evidence of something that happened: not before the e-commerce law's time
# (2000-01-01 leaves room for old records), not in the future beyond clock slack.
OCCURRED_AT_EARLIEST = 946684800.0


def _occurred_at(body: dict) -> float:
    raw = body.get("occurred_at")
    if raw is None:  # a whole second, like people's replies: a STOP of that second wins
        return float(math.floor(time.time()))
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        when = float(raw) if abs(raw) < 1e300 else math.inf
    elif isinstance(raw, str) and (parsed := parse_consent_date(raw)) is not None:
        when = parsed.timestamp()
    else:
        raise ApiError(400, "invalid_field", "'occurred_at' must be an ISO 8601 date-time")
    if not math.isfinite(when) or when < OCCURRED_AT_EARLIEST:
        raise ApiError(400, "invalid_field", "'occurred_at' must be a date after 2000-01-01")
    if when > time.time() + 60:
        raise ApiError(400, "invalid_field", "'occurred_at' is in the future")
    return when


async def post_consent(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str)
    consent_type = consent_type_for(channel)
    address = address_param(field(body, "address", str), channel, "address")
    status, source = field(body, "status", str), field(body, "source", str)
    evidence = body.get("evidence")
    if not evidence or not isinstance(evidence, (str, dict)):
        raise ApiError(400, "missing_field", "'evidence' (the statement or form shown) is required")
    reconsent = field(body, "reconsent", bool, required=False, default=False)
    if reconsent and status != ledger.GRANTED:
        raise ApiError(400, "invalid_field", "'reconsent' goes with a granted consent only")
    occurred = _occurred_at(body)
    profile, sealer = await _context(request)
    record = {"statement": evidence, "address": address, "channel": channel, "source": source,
              "at": occurred, "recorded_by": actor_of(request)} | (
        {"reconsent": True} if reconsent else {})
    event = ConsentEvent(
        address_index=request.app[directory_key].index(profile.id, address),
        consent_type=consent_type, status=status, source=source,
        recipient_type=ledger.recipient_type_of(
            field(body, "recipient_type", str, required=False, default="individual")),
        occurred_at=occurred,
        evidence_sealed=sealer.seal_field(json.dumps(record, ensure_ascii=False).encode()))
    if status == ledger.REVOKED:  # before the commit: see optout.watch
        request.app[watch_key].note(profile.id, event.address_index)
    async with request.app[db_key].begin() as conn:
        against = (await refusals.standing(conn, profile.id, [event.address_index],
                                           consent_type)).get(event.address_index)
        event_id = await _record_consent(conn, profile, event, against, reconsent)
        state, _ = await ledger.state_and_history(conn, profile.id, event.address_index,
                                                  consent_type)
        await audit.record(conn, profile.id, actor_of(request),
                           "consent.reconsent" if reconsent else "consent.record",
                           event_id=event_id, consent_type=consent_type, status=status,
                           **({"lifted_refusal": against.refused, "lifted_erasure": against.erased}
                              if reconsent and against else {}))
    return json_response({"id": event_id, "state": _state_json(state)}, status=201)


async def _record_consent(conn, profile, event: ConsentEvent, against: refusals.Standing | None,
                          reconsent: bool) -> str:
    """Records the consent, or refuses (409) one that would undo what the person said: after
    their refusal or erasure only their own new consent counts, sent as a reconsent (with its
    new evidence, dated after what it lifts)."""
    if reconsent:
        if against is not None and event.occurred_at <= against.since:
            raise ApiError(409, "reconsent_not_newer", "the reconsent is not dated after the "
                                                       "refusal or erasure it would lift")
        event_id = await refusals.grant_by_person(conn, profile.id, event, profile.iys_enabled)
        if event_id is None:
            raise ApiError(409, "reconsent_not_newer", "the person stopped in the same second "
                                                       "or later; that stop stands")
        return event_id
    if against is not None and against.erased:
        raise ApiError(409, "erased", "this person's data was erased at their request and they "
                                      "get no messages; only their own new consent starts "
                                      "again: send it with \"reconsent\": true and its evidence")
    if against is not None and event.status == ledger.GRANTED:
        raise ApiError(409, "refused_earlier", "this person refused; an import or a plain "
                                               "consent does not undo that. If they consented "
                                               "again themselves, send \"reconsent\": true "
                                               "with the new evidence")
    (event_id,) = await ledger.record(conn, profile.id, [event], profile.iys_enabled)
    return event_id


def _state_json(state: dict | None) -> dict | None:
    if state is None:
        return None
    return {"consent_type": state["consent_type"], "status": state["status"],
            "recipient_type": state["recipient_type"], "source": state["source"],
            "occurred_at": iso(state["occurred_at"]), "iys_status": state["iys_status"]}


async def get_consents(request: web.Request) -> web.Response:
    download = request.query.get("download") in ("1", "true")
    if download:  # the consent record as a file is an export of personal data
        require_key_role(request, "admin")
    channel = request.query.get("channel", "sandbox")
    consent_type = consent_type_for(channel)
    address = address_param(request.query.get("address"), channel, "address")
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        index = (await app[directory_key].indexer(conn, tenant_id))(address)
        state, history = await ledger.state_and_history(conn, tenant_id, index, consent_type)
    evidence = await _open_evidence(request, [bytes(h["evidence_sealed"]) for h in history])
    if download:
        await audited(request, "consent.export", consent_type=consent_type, events=len(history))
    return json_response({"address": address, "state": _state_json(state), "history": [
        {"id": h["id"], "status": h["status"], "source": h["source"],
         "iys_source": h["iys_source"], "recipient_type": h["recipient_type"],
         "occurred_at": iso(h["occurred_at"]), "recorded_at": iso(h["recorded_at"]),
         "iys_sync_state": h["iys_sync_state"], "iys_deadline": iso(h["iys_deadline"]),
         "evidence": ev} for h, ev in zip(history, evidence, strict=True)]})


async def _open_evidence(request: web.Request, blobs: list[bytes]) -> list:
    """Evidence in the clear while unlocked; null entries (and no error) while locked."""
    try:
        opened = await request.app[fields_key].open_fields(request[TENANT], blobs)
    except VaultLockedError:
        return [None] * len(blobs)
    return [json.loads(o) for o in opened]


async def get_gate(request: web.Request) -> web.Response:
    channel = request.query.get("channel", "sandbox")
    consent_type = consent_type_for(channel)
    try:
        purpose = Purpose(request.query.get("purpose", "commercial"))
    except ValueError:
        raise ApiError(400, "invalid_field",
                       "'purpose' must be commercial or informational") from None
    raw = request.query.get("address")
    if not raw:
        raise ApiError(400, "missing_field", "'address' is required")
    app, tenant_id = request.app, request[TENANT]
    from optout.addresses import normalise_address
    from optout.gate import Facts
    address = normalise_address(raw, channel)
    async with app[db_key].connect() as conn:
        profile = await app[directory_key].profile(conn, tenant_id)
        if address is None:
            found = Facts(address_valid=False)
        else:
            index = app[directory_key].index(tenant_id, address)
            found = (await facts.gather(conn, tenant_id, [index], consent_type,
                                        profile.iys_enabled,
                                        profile.has_merchant_contacts))[index]
    decision = decide(found, purpose)
    return json_response({"allowed": decision.allowed, "reason": decision.reason})


async def post_suppression(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str, required=False, default=None)
    scope = consent_type_for(channel) if channel else suppression.EVERYTHING
    address = address_param(field(body, "address", str), channel or "sandbox", "address")
    kind = field(body, "kind", str, required=False, default="manual")
    profile, sealer = await _context(request)
    index = request.app[directory_key].index(profile.id, address)
    request.app[watch_key].note(profile.id, index)
    actor = actor_of(request)
    async with request.app[db_key].begin() as conn:
        if kind == "erasure":  # the same KVKK erasure as POST /subjects/erase
            counts = await subjects.erase(conn, profile.id, index)
            request_id = await subjects.record_request(conn, profile.id, index, "erasure", "api",
                                                       done=False)
            await audit.record(conn, profile.id, actor, "subject.erase", request_id=request_id,
                               **counts)
        else:  # no address stored again for an erased person
            sealed = None if await refusals.erased(conn, profile.id, index) \
                else sealer.seal_field(address.encode())
            await suppression.suppress(conn, profile.id, index, scope, kind, actor, sealed)
            await audit.record(conn, profile.id, actor, "suppression.add", scope=scope,
                               kind=kind)
    if kind == "erasure":
        await request.app[erasures_key].finish(profile.id)
        scope = suppression.EVERYTHING
    return json_response({"scope": scope, "kind": kind}, status=201)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str | None) -> str:
    """Spreadsheet-safe: a leading quote keeps Excel from evaluating =, +, -, @ cells."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


async def get_suppressions(request: web.Request) -> web.Response:
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        rows = await suppression.export_rows(conn, tenant_id)
    sealed = [r for r in rows if r.address_sealed]
    opened = await app[fields_key].open_fields(tenant_id, [bytes(r.address_sealed) for r in sealed])
    address = {id(r): o.decode() for r, o in zip(sealed, opened, strict=True)}
    items = [{"address": address.get(id(r)), "scope": r.scope, "kind": r.kind,
              "source": r.source, "created_at": iso(r.created_at)} for r in rows]
    await audited(request, "suppression.export", rows=len(items),
                  format=request.query.get("format", "csv"))
    if request.query.get("format", "csv") == "json":
        return json_response({"suppressions": items})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["address", "scope", "kind", "source", "created_at"])
    for item in items:
        writer.writerow([_cell(item[k]) for k in ("address", "scope", "kind", "source",
                                                  "created_at")])
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
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
