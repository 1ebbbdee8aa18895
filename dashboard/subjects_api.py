"""API: KVKK data-subject requests — what is held about a person (also the export), erasure,
and the request log with 30-day deadlines."""
from __future__ import annotations

import json

from aiohttp import web

from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import (
    TENANT,
    actor_of,
    db_key,
    directory_key,
    erasures_key,
    fields_key,
    keyring_key,
    watch_key,
)
from dashboard.lines_api import address_param, iso
from dashboard.routing import Operation
from optout import audit, subjects
from optout.subject_deadlines import due_soon


async def _index(request: web.Request, raw_address: str | None, channel: str) -> tuple:
    address = address_param(raw_address, channel, "address")
    async with request.app[db_key].connect() as conn:
        index = (await request.app[directory_key].indexer(conn, request[TENANT]))(address)
    return address, index


async def access(request: web.Request) -> web.Response:
    """What is held (KVKK art. 11), decrypted: needs the vault unlocked (423 otherwise)."""
    address, index = await _index(request, request.query.get("address"),
                                  request.query.get("channel", "sandbox"))
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        held = await subjects.holdings(conn, tenant_id, index)
    report = subjects.build_report(address, held, await app[fields_key].open_fields(
        tenant_id, subjects.sealed_fields(held)))
    report["request_id"] = await _log_request(request, index, "access")
    return json_response(report)


async def export(request: web.Request) -> web.Response:
    """The person's data as a JSON file: decrypted while unlocked; while locked (or with
    `sealed=true`) sealed to the tenant key, for `izinli subject open-export`."""
    address, index = await _index(request, request.query.get("address"),
                                  request.query.get("channel", "sandbox"))
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        held = await subjects.holdings(conn, tenant_id, index)
        profile = await app[directory_key].profile(conn, tenant_id)
    blobs = subjects.sealed_fields(held)
    want_sealed = request.query.get("sealed", "false").lower() in ("1", "true", "yes")
    if want_sealed or not app[keyring_key].is_unlocked(tenant_id):
        document = subjects.sealed_export(tenant_id, profile.public_key, address, held,
                                          await app[fields_key].sealed_keys_for(tenant_id, blobs))
    else:
        document = subjects.build_report(address, held, await app[fields_key].open_fields(
            tenant_id, blobs))
        document["format"] = subjects.EXPORT_FORMAT
    request_id = await _log_request(request, index, "export")
    response = json_response(document)
    response.headers["Content-Disposition"] = f'attachment; filename="kvkk-{request_id}.json"'
    return response


async def _log_request(request: web.Request, index: bytes, kind: str) -> str:
    async with request.app[db_key].begin() as conn:
        request_id = await subjects.record_request(conn, request[TENANT], index, kind, "api",
                                                   done=True)
        await audit.record(conn, request[TENANT], actor_of(request),
                           f"subject.{kind}", request_id=request_id)
    return request_id


async def erase(request: web.Request) -> web.Response:
    body = await json_body(request)
    channel = field(body, "channel", str, required=False, default="sandbox")
    _, index = await _index(request, field(body, "address", str), channel)
    request.app[watch_key].note(request[TENANT], index)  # before the commit: optout.watch
    async with request.app[db_key].begin() as conn:
        counts = await subjects.erase(conn, request[TENANT], index)
        request_id = await subjects.record_request(conn, request[TENANT], index, "erasure",
                                                   "api", done=False)
        await audit.record(conn, request[TENANT], actor_of(request),
                           "subject.erase", request_id=request_id, **counts)
    completed = await request.app[erasures_key].finish(request[TENANT]) > 0
    return json_response({"request_id": request_id, "erased": counts, "completed": completed})


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
        await audit.record(conn, tenant_id, actor_of(request),
                           "subject.correct", request_id=request_id)
    return json_response({"request_id": request_id, "corrected": True})


async def request_log(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        rows = await subjects.requests(conn, request[TENANT])
    return json_response({"requests": [
        {"id": r.id, "kind": r.kind, "channel": r.channel, "received_at": iso(r.received_at),
         "due_at": iso(r.due_at), "completed_at": iso(r.completed_at),
         "due_soon": due_soon(r.due_at, r.completed_at)} for r in rows]})


OPERATIONS = [
    Operation("GET", "/api/v1/subjects", access,
              "KVKK art. 11: everything held about a person (contact, consents with evidence, "
              "suppressions, messages, processors) — also the export; needs the vault unlocked",
              query=("address", "channel"), responses={200: "Report", 423: "Vault is locked"},
              role="admin"),
    Operation("GET", "/api/v1/subjects/export", export,
              "KVKK export as a JSON file: decrypted while the vault is unlocked, otherwise (or "
              "with sealed=true) sealed to the tenant key — open it with `izinli subject "
              "open-export`", query=("address", "channel", "sealed"), role="admin"),
    Operation("POST", "/api/v1/subjects/erase", erase,
              "Erase a person: contact data and messages destroyed now; consent proof kept as "
              "the law requires; a blind-index suppression keeps them from being messaged",
              body={"type": "object", "required": ["address"], "properties": {
                  "address": {"type": "string"}, "channel": {"type": "string"}}},
              role="admin"),
    Operation("POST", "/api/v1/subjects/correct", correct,
              "Correct a person's name or attributes",
              body={"type": "object", "required": ["address"], "properties": {
                  "address": {"type": "string"}, "name": {"type": "string"},
                  "attributes": {"type": "object"}}},
              responses={200: "Corrected", 404: "No such contact"}, role="admin"),
    Operation("GET", "/api/v1/subjects/requests", request_log,
              "Data-subject requests with their 30-day deadlines; due_soon: open, and the "
              "deadline 5 days off or less", role="admin"),
]
