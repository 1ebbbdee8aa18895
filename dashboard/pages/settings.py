"""Settings: the sender identity, language, time zone and quiet hours; the İYS connection and
its sync state (counts, nearest deadline, rejected records to re-queue). Viewers see them;
admins change them. Through dashboard.services.settings, like the /settings and /iys API."""
from __future__ import annotations

from aiohttp import web

from dashboard import labels
from dashboard.context import context_of
from dashboard.inputs import InputError
from dashboard.pages.web import USER, form, page, render
from dashboard.services import settings as service

HOURS = range(24)


def _hour(value: str):
    """An hour for the API; what is not a number goes as it is, for the API to refuse."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


async def _show(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None) -> web.StreamResponse:
    ctx = context_of(request)
    settings = service.settings_dict(await service.get_settings(ctx))
    iys = service.iys_dict(await service.iys_state(ctx))
    return render(request, "settings.html", status=status, settings=settings, iys=iys,
                  hours=HOURS, error=error, notice=notice, can_edit=request[USER].can("admin"))


async def _change(request: web.Request, changes: dict) -> web.StreamResponse:
    try:
        await service.change_settings(context_of(request), changes)
    except InputError as exc:
        # Translated by its code; it names the field (and what a time zone takes).
        return await _show(request, status=400, error=labels.said(request, exc))
    labels.forget_zone(request[USER].tenant_id)  # this process shows the new zone at once
    raise web.HTTPSeeOther("/settings?done=saved")


@page("GET", "/settings")
async def settings_page(request: web.Request) -> web.StreamResponse:
    notice = {"saved": "saved", "requeued": "requeued"}.get(request.query.get("done", ""))
    return await _show(request, notice=notice)


@page("POST", "/settings", "admin")
async def save_settings(request: web.Request) -> web.StreamResponse:
    data = form(request)
    body = {"sender_name": data.get("sender_name", ""),
            "sender_contact": data.get("sender_contact", ""),
            "language": data.get("language", "tr"),
            "timezone": data.get("timezone", "").strip() or "Europe/Istanbul",
            "quiet_hours": data.get("quiet_hours") == "on",
            "quiet_start_hour": _hour(data.get("quiet_start_hour", "")),
            "quiet_end_hour": _hour(data.get("quiet_end_hour", ""))}
    for key in ("frequency_cap", "frequency_window_days"):
        if data.get(key, "").strip():
            body[key] = _hour(data[key].strip())
    return await _change(request, body)


@page("POST", "/settings/iys", "admin")
async def save_iys(request: web.Request) -> web.StreamResponse:
    data = form(request)
    body: dict = {"iys_code": data.get("iys_code", "").strip(),
                  "iys_brand_code": data.get("iys_brand_code", "").strip(),
                  "iys_enabled": data.get("iys_enabled") == "on"}
    # The password is never shown back: credentials change only when one is typed.
    if data.get("iys_password"):
        # No address: İYS's URL is the operator's configuration (providers.iys_url).
        body["iys_credentials"] = {"username": data.get("iys_username", "").strip(),
                                   "password": data["iys_password"]}
    return await _change(request, body)


@page("POST", "/settings/iys/retry", "admin")
async def retry_iys(request: web.Request) -> web.StreamResponse:
    await service.retry_iys(context_of(request))
    raise web.HTTPSeeOther("/settings?done=requeued")
