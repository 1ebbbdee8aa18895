"""API: contact lists and CSV imports."""
from __future__ import annotations

import io

from aiohttp import web

from campaigns.audiences import (
    ERASED,
    MAX_REPORTED_INVALID,
    REFUSED_EARLIER,
)
from dashboard.context import context_of
from dashboard.errors import ApiError, json_response, parse_body
from dashboard.keys import settings_key
from dashboard.models import request_model, rule
from dashboard.routing import Operation
from dashboard.services import audience
from dashboard.services.audience import consent_text_param
from dashboard.services.names import named_schema


@request_model
class CreateList:
    name: str = rule(str)


async def post_list(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateList)
    return json_response(await audience.new_list(context_of(request), body.name), status=201)


async def import_contacts(request: web.Request) -> web.Response:
    list_id = request.query.get("list_id") or None
    if list_id is not None:  # before the upload is read: an unknown list is a 404
        await audience.check_list(context_of(request), list_id)
    limit = request.app[settings_key].max_import_bytes
    # In memory only, up to the import limit: the CSV is plaintext personal data, and a
    # temporary file would leave it in the file system (and in its free blocks) after the
    # request; the limit (20 MiB by default) bounds what one request holds.
    consent_text = consent_text_param(request.query.get("consent_text"))
    with io.BytesIO() as spool:
        await _spool(request, spool, limit)
        done = await audience.import_csv(context_of(request), spool, _filename(request),
                                         consent_text, list_id=list_id)
    return json_response(done.result)


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
    return json_response({"lists": await audience.lists(context_of(request))})


async def get_contact(request: web.Request) -> web.Response:
    """One contact's details (name, attributes, lists), opened: needs the vault unlocked."""
    return json_response(await audience.contact(
        context_of(request), request.query.get("address"),
        request.query.get("channel", "sandbox")))


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
    "encoding": {"type": "string", "examples": ["utf-8", "utf-8-sig", "cp1254", "utf-16",
                                                "utf-8+cp1254"]},
    "delimiter": {"type": "string"}}}

OPERATIONS = [
    Operation("GET", "/api/v1/contacts", get_contact,
              "One contact's name, attributes and lists (needs the vault unlocked)",
              query=("address", "channel"), responses={200: "Contact", 404: "No such contact",
                                                       423: "Vault is locked"}),
    Operation("GET", "/api/v1/lists", get_lists,
              "Contact lists with member counts and the columns templates can use",
              response_schemas={200: named_schema("lists")}),
    Operation("POST", "/api/v1/lists", post_list, "Create a contact list",
              model=CreateList,
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
