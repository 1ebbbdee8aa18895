"""Contacts: the lists with their sizes, the CSV import form (with upload progress under
htmx, a plain multipart post without it) and a phone search showing one person's consent
and, while the vault is unlocked, what is held about them."""
from __future__ import annotations

import datetime
import json

from aiohttp import web

from campaigns.audiences import MAX_CONSENT_TEXT
from dashboard.audience_api import consent_text_param, import_spooled
from dashboard.errors import ApiError, error_middleware, json_response
from dashboard.keys import settings_key
from dashboard.web import UPLOAD, USER, api, page, render, spooled_upload

# Form fields read from the multipart body besides the file (short text only), with the
# bytes read of each: the consent statement may be 2,000 characters of Turkish.
_FIELDS = {"list_id": 1024, "new_list": 1024, "consent_text": 4 * MAX_CONSENT_TEXT + 4}


def default_list_name() -> str:
    return f"Liste {datetime.date.today().isoformat()}"


async def _lists(request: web.Request) -> list[dict]:
    return ((await api(request, "GET", "/lists")).data or {}).get("lists", [])


async def _person(request: web.Request, phone: str) -> dict:
    """The phone search: consent state and (only while unlocked) the subject report."""
    found: dict = {"phone": phone, "error": None, "consent": None, "subject": None,
                   "locked": False}
    consents = await api(request, "GET", "/consents", query={"address": phone})
    if not consents.ok:
        found["error"] = consents.error or str(consents.status)
        return found
    found["consent"] = consents.data
    vault = (await api(request, "GET", "/vault")).data or {}
    if not vault.get("unlocked"):
        found["locked"] = True
        return found
    # Not /subjects: looking someone up here is not a KVKK access request.
    subject = await api(request, "GET", "/contacts", query={"address": phone})
    if subject.status == 423:
        found["locked"] = True
    elif subject.ok:
        found["subject"] = {"contact": subject.data}
    elif subject.status != 404:
        found["error"] = subject.error or str(subject.status)
    return found


async def _page(request: web.Request, status: int = 200, **context) -> web.Response:
    phone = request.query.get("phone", "").strip()[:64]
    context.setdefault("result", None)
    context.setdefault("import_error", None)
    context.setdefault("values", {})
    return render(request, "contacts.html", status=status, lists=await _lists(request),
                  person=await _person(request, phone) if phone else None, phone=phone,
                  default_list_name=default_list_name(),
                  can_import=request[USER].can("operator"), **context)


@page("GET", "/contacts")
async def contacts(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def _read_text(part, limit: int) -> str:
    raw = await part.read(decode=True)
    return raw[:limit].decode("utf-8", "replace")


@page("POST", "/contacts/import", "operator")
async def import_form(request: web.Request) -> web.StreamResponse:
    """The upload form: fields in any order, the file spooled (never held whole in memory)."""
    failed = 200 if request.headers.get("HX-Request") else 400  # htmx swaps 2xx only
    limit = request.app[settings_key].max_import_bytes
    if UPLOAD not in request:  # a urlencoded post: there is no file to read
        raise web.HTTPUnsupportedMediaType(text="send the form as multipart/form-data")
    reader, part = request[UPLOAD]
    values: dict[str, str] = {}
    upload = None
    try:
        while True:
            if part is None:
                part = await reader.next()
            if part is None:
                break
            name = getattr(part, "name", None)
            if name == "file" and upload is None:
                request[UPLOAD] = (reader, part)
                upload = await spooled_upload(request, "file", limit)
            elif name in _FIELDS:
                values[name] = (await _read_text(part, _FIELDS[name])).strip()
            else:
                await part.release()
            part = None
    except web.HTTPRequestEntityTooLarge:
        if upload is not None:
            upload[0].close()
        return await _page(request, failed, values=values, import_error=(
            f"Dosya çok büyük (en çok {limit // (1024 * 1024)} MB). / "
            f"The file is too large (at most {limit // (1024 * 1024)} MB)."))
    if upload is None:
        return await _page(request, failed, values=values,
                           import_error="Bir CSV dosyası seçin. / Choose a CSV file.")
    spool, filename = upload
    with spool:
        try:
            consent_text = consent_text_param(values.get("consent_text"))
        except ApiError:
            return await _page(request, failed, values=values, import_error=(
                f"İzin metni en çok {MAX_CONSENT_TEXT} karakter olabilir. / The consent "
                f"statement can be at most {MAX_CONSENT_TEXT} characters."))
        if spool.tell() == 0:
            return await _page(request, failed, values=values,
                               import_error="Dosya boş. / The file is empty.")
        list_id = values.get("list_id") or ""
        if list_id and list_id not in {item["id"] for item in await _lists(request)}:
            return await _page(request, failed, values=values,
                               import_error="Liste bulunamadı. / No such list.")
        if not list_id:
            created = await api(request, "POST", "/lists", body={
                "name": values.get("new_list") or default_list_name()})
            if not created.ok:
                return await _page(request, failed, values=values, import_error=created.error)
            list_id = created.data["id"]

        async def run(_: web.Request) -> web.Response:  # the API's own error mapping
            return json_response(await import_spooled(request, list_id, spool, filename,
                                                      consent_text))

        response = await error_middleware(request, run)
    data = json.loads(response.body) if response.body else {}
    if response.status >= 400:
        message = (data.get("error") or {}).get("message", "") or str(response.status)
        return await _page(request, failed, values=values, import_error=message)
    lists = {item["id"]: item["name"] for item in await _lists(request)}
    return await _page(request, values={"list_id": list_id, "consent_text": consent_text},
                       result={**data, "list_id": list_id, "list_name": lists.get(list_id, "")})
