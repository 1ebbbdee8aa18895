"""API: contact lists and CSV imports."""
from __future__ import annotations

import tempfile

from aiohttp import web

from campaigns.audiences import ImportSource, create_list, list_exists
from campaigns.csvparse import CsvFormatError
from dashboard.auditing import audited
from dashboard.errors import ApiError, field, json_body, json_response
from dashboard.keys import API_KEY_ID, TENANT, db_key, importer_key, settings_key
from dashboard.routing import Operation

# Uploads up to this size stay in memory; larger ones go to a temporary file.
SPOOL_IN_MEMORY = 1024 * 1024


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
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        await _spool(request, spool, limit)
        if spool.tell() == 0:
            raise ApiError(400, "empty_file", "the request body is empty: send the CSV file")
        spool.seek(0)
        source = ImportSource(filename=_filename(request),
                              uploader=f"api_key:{request[API_KEY_ID]}")
        try:
            result = await request.app[importer_key].run(tenant_id, list_id, spool, source)
        except CsvFormatError as exc:
            raise ApiError(400, getattr(exc, "code", "invalid_csv"), str(exc)) from None
    await audited(request, "contacts.import", list_id=list_id, imported=result.imported,
                  updated=result.updated, invalid=result.invalid_total)
    return json_response(result.as_json())


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


OPERATIONS = [
    Operation("POST", "/api/v1/lists", post_list, "Create a contact list",
              body={"type": "object", "required": ["name"],
                    "properties": {"name": {"type": "string"}}},
              responses={201: "List created"}),
    Operation("POST", "/api/v1/contacts/import", import_contacts,
              "Import contacts from CSV (UTF-8 or Windows-1254; , ; or tab); valid rows land "
              "even when others are invalid", body={"type": "string"}, body_type="text/csv",
              query=("list_id", "filename"),
              responses={200: "{imported, updated, invalid: [{row, reason}]}",
                         400: "Not a usable CSV (e.g. no phone column)", 404: "No such list",
                         413: "File too large"}),
]
