"""Settings: the sender identity, language, time zone and quiet hours; the İYS connection and
its sync state (counts, nearest deadline, rejected records to re-queue). Viewers see them;
admins change them, through `PATCH /settings` and `POST /iys/retry`."""
from __future__ import annotations

from aiohttp import web

from dashboard.web import USER, api, error_page, form, page, render

HOURS = range(24)


def _hour(value: str):
    """An hour for the API; what is not a number goes as it is, for the API to refuse."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


async def _show(request: web.Request, status: int = 200, error: str | None = None,
                notice: str | None = None) -> web.StreamResponse:
    settings = await api(request, "GET", "/settings")
    if not settings.ok:
        return error_page(request, settings.status, settings.error)
    iys = await api(request, "GET", "/iys")
    return render(request, "settings.html", status=status, settings=settings.data,
                  iys=iys.data if iys.ok else None, hours=HOURS, error=error, notice=notice,
                  can_edit=request[USER].can("admin"))


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
    result = await api(request, "PATCH", "/settings", body=body)
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    raise web.HTTPSeeOther("/settings?done=saved")


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
    result = await api(request, "PATCH", "/settings", body=body)
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    raise web.HTTPSeeOther("/settings?done=saved")


@page("POST", "/settings/iys/retry", "admin")
async def retry_iys(request: web.Request) -> web.StreamResponse:
    result = await api(request, "POST", "/iys/retry")
    if not result.ok:
        return await _show(request, status=result.status, error=result.error)
    raise web.HTTPSeeOther("/settings?done=requeued")
