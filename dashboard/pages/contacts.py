"""Contacts: the lists with their sizes, browsing a list (paged, by consent state, while the
vault is unlocked), the CSV import form (with upload progress under htmx, a plain multipart
post without it) and a phone search showing one person's consent and, while the vault is
unlocked, what is held about them. Through dashboard.services (audience, consent), like the
API; a failed import leaves no new list behind."""
from __future__ import annotations

import datetime

from aiohttp import web

from campaigns.audiences import MAX_CONSENT_TEXT
from crypto.errors import VaultLockedError
from dashboard.context import context_of
from dashboard.keys import settings_key
from dashboard.pages.failures import shown
from dashboard.pages.web import UPLOAD, USER, error_page, forget_reads, page, render, spooled_upload
from dashboard.services import ServiceError, ServiceNotFoundError, audience, consent
from dashboard.services import accounts as account_services
from dashboard.services.audience import consent_text_param

# Form fields read from the multipart body besides the file (short text only), with the
# bytes read of each: the consent statement may be 2,000 characters of Turkish.
_FIELDS = {"list_id": 1024, "new_list": 1024, "consent_text": 4 * MAX_CONSENT_TEXT + 4}


def default_list_name() -> str:
    return f"Liste {datetime.date.today().isoformat()}"


async def _person(request: web.Request, phone: str) -> dict:
    """The phone search: consent state and (only while unlocked) the contact's details."""
    ctx = context_of(request)
    found: dict = {"phone": phone, "error": None, "consent": None, "subject": None,
                   "locked": False}
    try:
        found["consent"] = await consent.lookup(ctx, phone)
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        found["error"] = failed[2]
        return found
    if not (await account_services.vault_status(ctx)).unlocked:
        found["locked"] = True
        return found
    # Not subjects.access: looking someone up here is not a KVKK access request.
    try:
        found["subject"] = {"contact": await audience.contact(ctx, phone)}
    except VaultLockedError:
        found["locked"] = True
    except ServiceError as exc:
        if not isinstance(exc, ServiceNotFoundError):
            found["error"] = shown(request, exc)[2]
    return found


async def _page(request: web.Request, status: int = 200, **context) -> web.Response:
    phone = request.query.get("phone", "").strip()[:64]
    context.setdefault("result", None)
    context.setdefault("import_error", None)
    context.setdefault("values", {})
    return render(request, "contacts.html", status=status,
                  lists=await audience.lists(context_of(request)),
                  person=await _person(request, phone) if phone else None, phone=phone,
                  default_list_name=default_list_name(),
                  can_import=request[USER].can("operator"), **context)


@page("GET", "/contacts")
async def contacts(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@page("GET", "/contacts/lists/{id}")
async def list_members(request: web.Request) -> web.StreamResponse:
    """One list's members, 50 a page, optionally by consent state; names and numbers are
    opened, so only while the vault is unlocked."""
    ctx = context_of(request)
    chosen = request.query.get("consent") or None
    chosen = chosen if chosen in audience.CONSENT_FILTERS else None
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        number = 1
    number = min(max(number, 1), 1_000_000)
    locked = not (await account_services.vault_status(ctx)).unlocked
    try:
        found = None if locked else await audience.browse(
            ctx, request.match_info["id"], number, chosen, size=audience.PAGE_SIZE)
    except VaultLockedError:
        found, locked = None, True
    except ServiceError as exc:
        status, _, text = shown(request, exc)
        return error_page(request, status, text)
    if found is None:  # locked: the list's name and size only
        current = next((item for item in await audience.lists(ctx)
                        if item["id"] == request.match_info["id"]), None)
        if current is None:
            return error_page(request, 404, shown(request, ServiceNotFoundError(
                "no such list"))[2])
    else:
        current = found.list
    return render(request, "contact_list.html", list=current, found=found, locked=locked,
                  consent=chosen, filters=audience.CONSENT_FILTERS, page_number=number)


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
    ctx = context_of(request)
    with spool:
        try:
            consent_text = consent_text_param(values.get("consent_text"))
        except ServiceError:
            return await _page(request, failed, values=values, import_error=(
                f"İzin metni en çok {MAX_CONSENT_TEXT} karakter olabilir. / The consent "
                f"statement can be at most {MAX_CONSENT_TEXT} characters."))
        if spool.tell() == 0:
            return await _page(request, failed, values=values,
                               import_error="Dosya boş. / The file is empty.")
        list_id = values.get("list_id") or None
        try:
            done = await audience.import_csv(
                ctx, spool, filename, consent_text, list_id=list_id,
                new_list_name=None if list_id else values.get("new_list") or default_list_name())
        except Exception as exc:
            refused = shown(request, exc)
            if refused is None:
                raise
            if isinstance(exc, ServiceNotFoundError):
                message = "Liste bulunamadı. / No such list."
            else:
                message = refused[2]
            return await _page(request, failed, values=values, import_error=message)
    forget_reads(ctx.tenant_id)
    names = {item["id"]: item["name"] for item in await audience.lists(ctx)}
    return await _page(request, values={"list_id": done.list_id or "",
                                        "consent_text": consent_text},
                       result={**done.result, "list_id": done.list_id,
                               "list_name": names.get(done.list_id or "", "")})
