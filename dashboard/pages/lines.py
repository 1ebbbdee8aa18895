"""Sending lines: the list, adding a line of any registered channel (its form is built from the
channel's description, bot.registry), editing one (name, rate, tier), rotating its token,
pausing, resuming (the pause reason shown), archiving and deleting it — through
dashboard.services.lines (bot.lines.LineAdmin), like the API. Credentials are stored once and
never shown again (nor echoed on an error)."""
from __future__ import annotations

from aiohttp import web

from bot import registry
from bot.channels import TIERS
from dashboard.context import context_of
from dashboard.pages.failures import shown
from dashboard.pages.web import USER, form, page, render
from dashboard.services import lines as line_services

# Why a line is paused, as the owner reads it (Turkish first); other reasons are shown as-is.
PAUSE_REASONS = {
    "paused by owner": ("Sahibi tarafından duraklatıldı", "Paused by the owner"),
    "line archived": ("Hat arşivlendi", "The line is archived"),
    "spam_rate_limited": ("WhatsApp spam sınırı (131048): çok kişi engelledi ya da şikâyet "
                          "etti; devam etmeden önce listeyi ve metni gözden geçirin",
                          "WhatsApp spam rate limit (131048): many people blocked or "
                          "reported; review the list and the text before resuming"),
    "policy_blocked": ("WhatsApp politika engeli (368): Meta hesabı kısıtladı",
                       "WhatsApp policy block (368): Meta restricted the account"),
}


def _forms() -> list[dict]:
    """Each registered channel's add form: its fields, secrets marked (never echoed)."""
    return [{"name": spec.name, "title": spec.title, "guide": spec.guide,
             "fields": [f for f in spec.credentials + spec.options if f.kind is not dict]}
            for spec in registry.all_channels()]


def _secret(name: str) -> bool:
    return any(f.secret and f.name == name for spec in registry.all_channels()
               for f in spec.credentials)


async def _page(request: web.Request, status: int = 200, error: str | None = None,
                values: dict | None = None) -> web.Response:
    lines = await line_services.lines(context_of(request))
    for line in lines:
        spec = registry.find(line["channel"])
        line["editable"] = [f.name for f in spec.credentials + spec.options
                            if f.editable] if spec else []
        line["rotates"] = next((f for f in spec.credentials if f.editable and f.secret),
                               None) if spec else None
        line["max_rate"] = spec.max_rate if spec else None
    return render(request, "lines.html", status=status, lines=lines, error=error,
                  values=values or {}, tiers=TIERS, can_add=request[USER].can("admin"),
                  forms=_forms(), pause_reasons=PAUSE_REASONS)


@page("GET", "/lines")
async def line_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@page("POST", "/lines", "admin")
async def add_line(request: web.Request) -> web.StreamResponse:
    data = form(request)
    spec = registry.find(data.get("channel", ""))
    if spec is None:
        return await _page(request, 400, "Bilinmeyen kanal. / Unknown channel.")
    body: dict = {"channel": spec.name, "name": data.get("name", "")}
    body |= _typed(spec.credentials + spec.options, data)
    return await _answer(request, line_services.add_line(context_of(request), body), data)


@page("POST", "/lines/{id}/edit", "admin")
async def edit_line(request: web.Request) -> web.StreamResponse:
    """Name, rate and the channel's editable options; a token field filled in rotates it."""
    data = form(request)
    line = await _line(request)
    if line is None:
        return await _page(request, 404, "Hat bulunamadı. / No such line.")
    spec = registry.get(line["channel"])
    body = {k: v for k, v in (("name", data.get("name", "").strip()),) if v}
    if data.get("rate_per_second", "").strip():
        try:
            body["rate_per_second"] = float(data["rate_per_second"].replace(",", "."))
        except ValueError:
            return await _page(request, 400, "Hız bir sayı olmalı. / The rate must be a number.")
    body |= _typed([f for f in spec.credentials + spec.options if f.editable], data)
    return await _answer(request, line_services.edit_line(context_of(request), line["id"], body),
                         data)


@page("POST", "/lines/{id}/pause", "admin")
async def pause_line(request: web.Request) -> web.StreamResponse:
    return await _action(request, "pause")


@page("POST", "/lines/{id}/resume", "admin")
async def resume_line(request: web.Request) -> web.StreamResponse:
    return await _action(request, "resume")


@page("POST", "/lines/{id}/archive", "admin")
async def archive_line(request: web.Request) -> web.StreamResponse:
    """Asks for a confirmation first (the `confirm` box of its form)."""
    if form(request).get("confirm") != "yes":
        return await _page(request, 400, "Arşivlemek için onay kutusunu işaretleyin. / Tick "
                                         "the box to confirm archiving.")
    return await _action(request, "archive")


async def _action(request: web.Request, action: str) -> web.StreamResponse:
    return await _answer(request, line_services.act(context_of(request),
                                                    request.match_info["id"], action), {})


@page("POST", "/lines/{id}/delete", "admin")
async def delete_line(request: web.Request) -> web.StreamResponse:
    """The API refuses (409, with the reason shown here) while campaigns still use the line."""
    return await _answer(request, line_services.delete_line(context_of(request),
                                                            request.match_info["id"]), {})


async def _line(request: web.Request) -> dict | None:
    lines = await line_services.lines(context_of(request))
    return next((x for x in lines if x["id"] == request.match_info["id"]), None)


def _typed(fields, data: dict) -> dict:
    """The fields filled in, typed as the API takes them; a blank field is a missing one."""
    body: dict = {}
    for f in fields:
        raw = data.get(f.name, "").strip()
        if not raw:
            continue
        if f.kind is int:
            if raw.isdigit():
                body[f.name] = int(raw)
        else:
            body[f.name] = raw
    return body


async def _answer(request: web.Request, change, data: dict) -> web.StreamResponse:
    """Awaits the service's change: back to the list when done; the form again with the
    refusal (never the secrets typed) otherwise."""
    try:
        await change
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        kept = {k: v for k, v in data.items() if not _secret(k) and k != "csrf"}
        return await _page(request, failed[0] if failed[0] < 500 else 400, failed[2], kept)
    raise web.HTTPSeeOther("/lines")
