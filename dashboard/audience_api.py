"""API: contact lists and CSV imports."""
from __future__ import annotations

import io
import json

import sqlalchemy as sa
from aiohttp import web

from campaigns import audiences
from campaigns.audiences import (
    ERASED,
    MAX_CONSENT_TEXT,
    MAX_REPORTED_INVALID,
    REFUSED_EARLIER,
    ImportSource,
    create_list,
    list_exists,
)
from campaigns.csvparse import CsvFormatError
from dashboard.auditing import audited
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.inputs import clean_text
from dashboard.keys import (
    TENANT,
    actor_of,
    db_key,
    directory_key,
    fields_key,
    importer_key,
    settings_key,
)
from dashboard.lines_api import address_param, iso
from dashboard.routing import Operation
from store.tables import contact_lists, contacts, list_members


async def post_list(request: web.Request) -> web.Response:
    body = await json_body(request)
    async with request.app[db_key].begin() as conn:
        created = await create_list(conn, request[TENANT], field(body, "name", str))
    return json_response(created, status=201)


async def import_contacts(request: web.Request) -> web.Response:
    tenant_id, list_id = request[TENANT], request.query.get("list_id") or None
    if list_id is not None:
        async with request.app[db_key].connect() as conn:
            if not await list_exists(conn, tenant_id, list_id):
                raise ApiError(404, "not_found", "no such list")
    limit = request.app[settings_key].max_import_bytes
    # In memory only, up to the import limit: the CSV is plaintext personal data, and a
    # temporary file would leave it in the file system (and in its free blocks) after the
    # request; the limit (20 MiB by default) bounds what one request holds.
    consent_text = consent_text_param(request.query.get("consent_text"))
    with io.BytesIO() as spool:
        await _spool(request, spool, limit)
        return json_response(await import_spooled(request, list_id, spool, _filename(request),
                                                  consent_text))


def consent_text_param(value: str | None) -> str:
    """The consent statement people were shown, as given with an import (the API's query
    parameter, the dashboard form's field): trimmed, at most MAX_CONSENT_TEXT characters."""
    text = clean_text((value or "").strip())
    if len(text) > MAX_CONSENT_TEXT:
        raise ApiError(400, "invalid_field",
                       f"'consent_text' is over {MAX_CONSENT_TEXT} characters")
    return text


async def import_spooled(request: web.Request, list_id: str | None, spool,
                         filename: str, consent_text: str = "") -> dict:
    """Imports a CSV already spooled to `spool` (the API and the dashboard's upload form)."""
    if spool.tell() == 0:
        raise ApiError(400, "empty_file", "the request body is empty: send the CSV file")
    spool.seek(0)
    # A header or a multipart part can carry NUL or undecodable bytes: stored as text, cleaned.
    source = ImportSource(filename=clean_text(filename)[:200] or "upload.csv",
                          uploader=actor_of(request), consent_text=consent_text)
    try:
        result = await request.app[importer_key].run(request[TENANT], list_id, spool, source)
    except CsvFormatError as exc:
        raise ApiError(400, getattr(exc, "code", "invalid_csv"), str(exc)) from None
    await audited(request, "contacts.import", list_id=list_id, imported=result.imported,
                  updated=result.updated, invalid=result.invalid_total,
                  kept_refusal=result.kept_refusal, undated=result.undated,
                  erased=result.erased, consent_text=bool(consent_text))
    return result.as_json()


async def _spool(request: web.Request, spool, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the file is over {limit} bytes")
    size = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the file is over {limit} bytes")
        spool.write(chunk)


def _filename(request: web.Request) -> str:
    name = request.query.get("filename") or ""
    disposition = request.headers.get("Content-Disposition", "")
    if not name and "filename=" in disposition:
        name = disposition.split("filename=", 1)[1].strip().strip('"')
    return (name or "upload.csv")[:200]


async def get_lists(request: web.Request) -> web.Response:
    """The tenant's contact lists with their member counts and CSV columns."""
    q = sa.select(contact_lists.c.id, contact_lists.c.name, contact_lists.c.created_at,
                  contact_lists.c.columns, audiences.members_column()).where(
        contact_lists.c.tenant_id == request[TENANT]).order_by(contact_lists.c.created_at)
    async with request.app[db_key].connect() as conn:
        rows = list(await conn.execute(q))
    items = [{"id": r.id, "name": r.name, "members": int(r.members), "created_at": r.created_at,
              "columns": list(r.columns or [])} for r in rows]
    return json_response({"lists": items})


async def get_contact(request: web.Request) -> web.Response:
    """One contact's details (name, attributes, lists), opened: needs the vault unlocked."""
    channel = request.query.get("channel", "sandbox")
    address = address_param(request.query.get("address"), channel, "address")
    app, tenant_id = request.app, request[TENANT]
    async with app[db_key].connect() as conn:
        index = (await app[directory_key].indexer(conn, tenant_id))(address)
        row = (await conn.execute(sa.select(contacts).where(
            contacts.c.tenant_id == tenant_id, contacts.c.address_index == index,
            contacts.c.erased_at.is_(None)))).first()
        if row is None:
            raise ApiError(404, "not_found", "no contact with that address")
        names = [r.name for r in await conn.execute(sa.select(contact_lists.c.name).join(
            list_members, list_members.c.list_id == contact_lists.c.id).where(
            list_members.c.contact_id == row.id))]
    sealed = [bytes(b) for b in (row.name_sealed, row.attributes_sealed) if b]
    opened = iter(await app[fields_key].open_fields(tenant_id, sealed))
    name = next(opened).decode() if row.name_sealed else ""
    attributes = json.loads(next(opened)) if row.attributes_sealed else {}
    return json_response({"address": address, "name": name, "attributes": attributes,
                          "lists": names, "since": iso(row.created_at)})


_ROWS = {"type": "array", "maxItems": MAX_REPORTED_INVALID, "items": {
    "type": "object", "required": ["row", "reason"],
    "properties": {"row": {"type": "integer", "description": "line in the file (header: 1)"},
                   "reason": {"type": "string"}}}}
IMPORT_RESULT_SCHEMA = {"type": "object", "properties": {
    "imported": {"type": "integer", "description": "rows that added a new contact"},
    "updated": {"type": "integer", "description": "rows that updated a contact"},
    "invalid": _ROWS | {"description": "rows not imported: invalid_phone, missing_phone, "
                                       "invalid_consent, invalid_consent_date, … (first "
                                       f"{MAX_REPORTED_INVALID})"},
    "invalid_total": {"type": "integer"},
    "kept_refusal": {"type": "integer", "description": (
        "rows whose consent was not applied because the person refused (or the file shows "
        "them refusing earlier): the refusal stands, nothing is queued for İYS; the rest "
        "of the row was imported. Only the person's own new consent lifts a refusal")},
    "undated": {"type": "integer", "description": (
        "consents recorded without a consent date in the file: dated at the upload, and "
        "their evidence says so (date_source: upload); add a consent_date column")},
    "erased": {"type": "integer", "description": (
        "rows skipped whole because the person's data was erased at their request: "
        "nothing of them is stored again")},
    "skipped": _ROWS | {"description": (
        f"the rows behind kept_refusal and erased, first {MAX_REPORTED_INVALID}; reason "
        f"{REFUSED_EARLIER} (the row's consent was not applied) or {ERASED} (the whole row "
        "was skipped)")},
    "encoding": {"type": "string", "examples": ["utf-8", "utf-8-sig", "cp1254", "utf-16"]},
    "delimiter": {"type": "string"}}}

OPERATIONS = [
    Operation("GET", "/api/v1/contacts", get_contact,
              "One contact's name, attributes and lists (needs the vault unlocked)",
              query=("address", "channel"), responses={200: "Contact", 404: "No such contact",
                                                       423: "Vault is locked"}),
    Operation("GET", "/api/v1/lists", get_lists,
              "Contact lists with member counts and the columns templates can use"),
    Operation("POST", "/api/v1/lists", post_list, "Create a contact list",
              body={"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}}},
              responses={201: "List created"}),
    Operation("POST", "/api/v1/contacts/import", import_contacts,
              "Import contacts from CSV (UTF-8 or Windows-1254; , ; or tab); valid rows land "
              "even when others are invalid. An import never lifts a person's refusal and "
              "never brings an erased person back", body={"type": "string"},
              body_type="text/csv", query=("list_id", "filename", "consent_text"),
              responses={200: "What the import did: counts, and the rows not (wholly) applied",
                         400: "Not a usable CSV (e.g. no phone column)", 404: "No such list",
                         413: "File too large"},
              response_schemas={200: IMPORT_RESULT_SCHEMA}),
]
