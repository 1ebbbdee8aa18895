"""The campaign form's WhatsApp template picker: the chosen line's APPROVED templates, one
contact-field input per body variable, a refresh from Meta, and the filled template's preview."""
from __future__ import annotations

from aiohttp import web

from bot.whatsapp_templates import TemplateSyncError
from campaigns.provider_templates import filled
from dashboard.context import context_of
from dashboard.pages.failures import shown
from dashboard.pages.web import form, page, render
from dashboard.services import lines as line_services
from dashboard.services import whatsapp_templates as template_services

PARTIAL = "_wa_templates.html"
MAX_PARAMETERS = 100


def chosen_key(data: dict) -> tuple[str, str] | None:
    """(name, language) of the picked template ("name|language" in the form), or None."""
    name, mark, language = (data.get("wa_template") or "").rpartition("|")
    return (name, language) if mark and name and language else None


def parameters(data: dict) -> list[str]:
    found = []
    while len(found) < MAX_PARAMETERS and f"wa_param_{len(found) + 1}" in data:
        found.append(data[f"wa_param_{len(found) + 1}"].strip())
    return found


async def picker(request: web.Request, data: dict, lines: list[dict] | None = None,
                 notice: str | None = None, error: str | None = None) -> dict:
    """What _wa_templates.html shows for the form's line (the first line when none is set)."""
    ctx = context_of(request)
    if lines is None:
        lines = await line_services.lines(ctx)
    line_id = data.get("line_id") or (lines[0]["id"] if lines else "")
    line = next((item for item in lines if item["id"] == line_id), None)
    if line is None or line["channel"] != "whatsapp":
        return {"whatsapp": False, "templates": [], "chosen": None}
    try:
        templates = (await template_services.templates(ctx, line_id, "APPROVED"))["templates"]
        failed = None
    except Exception as exc:
        if (failed := shown(request, exc)) is None:
            raise
        templates = []
    usable = [t for t in templates if not t.get("unsupported")]
    key = chosen_key(data)
    chosen = next((t for t in usable if (t["name"], t["language"]) == key), None)
    given = parameters(data)
    values = [given[i] if i < len(given) else "" for i in range(
        chosen["parameter_count"] if chosen else 0)]
    return {"whatsapp": True, "line_id": line_id, "waba_id": line.get("waba_id"),
            "templates": usable, "unsupported": len(templates) - len(usable),
            "chosen": chosen, "params": values, "notice": notice,
            "error": error or (failed[2] if failed else None)}


def campaign_fields(data: dict, templates: list[dict]) -> dict:
    """The API's whatsapp_template (and, when no text was written, the template's text with
    the parameters in place as the campaign's record) from the form."""
    key = chosen_key(data)
    if key is None:
        return {}
    params = parameters(data)
    fields: dict = {"whatsapp_template": {"name": key[0], "language": key[1],
                                          "parameters": params}}
    if not data.get("template", "").strip():
        chosen = next((t for t in templates if (t["name"], t["language"]) == key), None)
        if chosen is not None:
            fields["template"] = filled(chosen["components"], params)
    return fields


@page("GET", "/campaigns/whatsapp-templates", "operator")
async def template_picker(request: web.Request) -> web.StreamResponse:
    """htmx: the picker for the line chosen in the form (nothing for other channels)."""
    return render(request, PARTIAL, wa=await picker(request, dict(request.query)))


@page("POST", "/campaigns/whatsapp-templates/sync", "operator")
async def sync(request: web.Request) -> web.StreamResponse:
    """htmx: asks Meta for the line's templates again, then shows the picker."""
    data = form(request)
    try:
        result = await template_services.sync(context_of(request), data.get("line_id", ""))
    except TemplateSyncError as exc:
        return render(request, PARTIAL, wa=await picker(request, data, error=str(exc)))
    except Exception as exc:
        if (failed := shown(request, exc)) is None:
            raise
        return render(request, PARTIAL, wa=await picker(request, data, error=failed[2]))
    return render(request, PARTIAL, wa=await picker(request, data, notice=str(
        result.get("templates", 0))))


async def preview(request: web.Request, data: dict) -> web.StreamResponse:
    """The picked template filled with sample contact values; a problem a campaign would
    meet with it (not approved, no refusal path…) is shown under it."""
    name, language = chosen_key(data) or ("", "")
    try:
        found = await template_services.preview(
            context_of(request), data.get("line_id", ""), name, language, parameters(data),
            data.get("purpose", "commercial"))
    except Exception as exc:
        if (failed := shown(request, exc)) is None:
            raise
        return render(request, "_preview.html", text=None, characters=0, error=failed[2])
    problem = found.get("problem") or {}
    return render(request, "_preview.html", error=None, text=found.get("text"),
                  characters=found.get("characters", 0), problem=problem.get("message"))
