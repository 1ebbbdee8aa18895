"""API: KVKK data-subject requests — what is held about a person (also the export), erasure,
and the request log with 30-day deadlines."""
from __future__ import annotations

import json

from aiohttp import web

from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import API_KEY_ID, TENANT, db_key, directory_key, fields_key, watch_key
from dashboard.lines_api import address_param, iso
from dashboard.routing import Operation
from optout import audit, subjects


async def _index(request: web.Request, raw_address: str | None, channel: str) -> tuple:
    address = address_param(raw_address, channel, "address")
    async with request.app[db_key].connect() as conn:
        index = (await request.app[directory_key].indexer(conn, request[TENANT]))(address)
    return address, index


async def access(request: web.Request) -> web.Response:
    """What is held (KVKK art. 11), decrypted: needs the vault unlocked (423 otherwise)."""
    channel = request.query.get("channel", "sandbox")
    address, index = await _index(request, request.query.get("address"), channel)
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        held = await subjects.holdings(conn, tenant_id, index)
    report = await _report(request, address, held)
    async with app[db_key].begin() as conn:
        report["request_id"] = await subjects.record_request(conn, tenant_id, index, "access",
                                                             "api", done=True)
        await audit.record(conn, tenant_id, f"api_key:{request[API_KEY_ID]}", "subject.access",
                           request_id=report["request_id"])
    return json_response(report)


async def _report(request: web.Request, address: str, held: dict) -> dict:
    contact = held["contact"]
    sealed = [bytes(e.evidence_sealed) for e in held["consents"]]
    if contact is not None and not contact.erased_at:
        sealed += [bytes(b) for b in (contact.name_sealed, contact.attributes_sealed) if b]
    opened = iter(await request.app[fields_key].open_fields(request[TENANT], sealed))
    consents = [{"type": e.consent_type, "status": e.status, "source": e.source,
                 "occurred_at": iso(e.occurred_at), "evidence": json.loads(next(opened))}
                for e in held["consents"]]
    person = None
    if contact is not None and not contact.erased_at:
        person = {"name": next(opened).decode() if contact.name_sealed else "",
                  "attributes": json.loads(next(opened)) if contact.attributes_sealed else {},
                  "lists": held["lists"], "since": iso(contact.created_at)}
    channels = {m.channel for m in held["messages"]}
    return {
        "address": address, "contact": person, "consents": consents,
        "suppressions": [{"scope": s.scope, "kind": s.kind, "since": iso(s.created_at)}
                         for s in held["suppressions"]],
        "messages": [{"campaign": m.name, "purpose": m.purpose, "channel": m.channel,
                      "state": m.state, "sent_at": iso(m.sent_at)} for m in held["messages"]],
        "replies_received": len(held["inbound"]),
        "processors": sorted(subjects.PROCESSORS[c] for c in channels
                             if c in subjects.PROCESSORS),
    }


async def erase(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str, required=False, default="sandbox")
    _, index = await _index(request, field(body, "address", str), channel)
    request.app[watch_key].note(request[TENANT], index)  # before the commit: optout.watch
    async with request.app[db_key].begin() as conn:
        counts = await subjects.erase(conn, request[TENANT], index)
        request_id = await subjects.record_request(conn, request[TENANT], index, "erasure",
                                                   "api", done=True)
        await audit.record(conn, request[TENANT], f"api_key:{request[API_KEY_ID]}",
                           "subject.erase", request_id=request_id, **counts)
    return json_response({"request_id": request_id, "erased": counts})


async def correct(request: web.Request) -> web.Response:
    """KVKK art. 11(1)(d): correct the person's name or attributes (sealed like on import)."""
    body = await json_body(request)
    channel = field(body, "channel", str, required=False, default="sandbox")
    _, index = await _index(request, field(body, "address", str), channel)
    name = field(body, "name", str, required=False, default=None)
    attributes = field(body, "attributes", dict, required=False, default=None)
    if name is None and attributes is None:
        raise ApiError(400, "missing_field", "give 'name' and/or 'attributes' to correct")
    if attributes is not None and not all(isinstance(v, str) for v in attributes.values()):
        raise ApiError(400, "invalid_field", "'attributes' values must be strings")
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        profile = await app[directory_key].profile(conn, tenant_id)
    sealer = await app[fields_key].shared_sealer(tenant_id, profile.public_key)
    async with app[db_key].begin() as conn:
        changed = await subjects.correct(
            conn, tenant_id, index,
            sealer.seal_field(name.encode()) if name is not None else None,
            sealer.seal_field(json.dumps(attributes, ensure_ascii=False).encode())
            if attributes is not None else None)
        if not changed:
            raise ApiError(404, "not_found", "no contact with that address")
        request_id = await subjects.record_request(conn, tenant_id, index, "correction", "api",
                                                   done=True)
        await audit.record(conn, tenant_id, f"api_key:{request[API_KEY_ID]}",
                           "subject.correct", request_id=request_id)
    return json_response({"request_id": request_id, "corrected": True})


async def request_log(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        rows = await subjects.requests(conn, request[TENANT])
    return json_response({"requests": [
        {"id": r.id, "kind": r.kind, "channel": r.channel, "received_at": iso(r.received_at),
         "due_at": iso(r.due_at), "completed_at": iso(r.completed_at)} for r in rows]})


OPERATIONS = [
    Operation("GET", "/api/v1/subjects", access,
              "KVKK art. 11: everything held about a person (contact, consents with evidence, "
              "suppressions, messages, processors) — also the export; needs the vault unlocked",
              query=("address", "channel"), responses={200: "Report", 423: "Vault is locked"}),
    Operation("POST", "/api/v1/subjects/erase", erase,
              "Erase a person: contact data and messages destroyed now; consent proof kept as "
              "the law requires; a blind-index suppression keeps them from being messaged",
              body={"type": "object", "required": ["address"], "properties": {
                  "address": {"type": "string"}, "channel": {"type": "string"}}}),
    Operation("POST", "/api/v1/subjects/correct", correct,
              "Correct a person's name or attributes",
              body={"type": "object", "required": ["address"], "properties": {
                  "address": {"type": "string"}, "name": {"type": "string"},
                  "attributes": {"type": "object"}}},
              responses={200: "Corrected", 404: "No such contact"}),
    Operation("GET", "/api/v1/subjects/requests", request_log,
              "Data-subject requests with their 30-day deadlines"),
]
