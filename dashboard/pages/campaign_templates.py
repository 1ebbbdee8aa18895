"""The campaign form's WhatsApp template picker: the chosen line's APPROVED templates, one
contact-field input per body variable, a refresh from Meta, and the filled template's preview."""
from __future__ import annotations

from aiohttp import web

from campaigns.provider_templates import filled
from dashboard.web import api, form, page, render

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
    if lines is None:
        lines = ((await api(request, "GET", "/lines")).data or {}).get("lines", [])
    line_id = data.get("line_id") or (lines[0]["id"] if lines else "")
    line = next((item for item in lines if item["id"] == line_id), None)
    if line is None or line["channel"] != "whatsapp":
        return {"whatsapp": False, "templates": [], "chosen": None}
    result = await api(request, "GET", f"/lines/{line_id}/templates",
                       query={"status": "APPROVED"})
    templates = (result.data or {}).get("templates", []) if result.ok else []
    usable = [t for t in templates if not t.get("unsupported")]
    key = chosen_key(data)
    chosen = next((t for t in usable if (t["name"], t["language"]) == key), None)
    given = parameters(data)
    values = [given[i] if i < len(given) else "" for i in range(
        chosen["parameter_count"] if chosen else 0)]
    return {"whatsapp": True, "line_id": line_id, "waba_id": line.get("waba_id"),
            "templates": usable, "unsupported": len(templates) - len(usable),
            "chosen": chosen, "params": values, "notice": notice,
            "error": error or (None if result.ok else result.error)}


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
    result = await api(request, "POST", f"/lines/{data.get('line_id', '')}/templates/sync")
    if not result.ok:
        return render(request, PARTIAL, wa=await picker(request, data, error=result.error))
    return render(request, PARTIAL, wa=await picker(request, data, notice=str(
        result.data.get("templates", 0))))


async def preview(request: web.Request, data: dict) -> web.StreamResponse:
    """The picked template filled with sample contact values; a problem a campaign would
    meet with it (not approved, no refusal path…) is shown under it."""
    name, language = chosen_key(data) or ("", "")
    result = await api(request, "POST", f"/lines/{data.get('line_id', '')}/templates/preview",
                       body={"name": name, "language": language,
                             "parameters": parameters(data),
                             "purpose": data.get("purpose", "commercial")})
    if not result.ok:
        return render(request, "_preview.html", text=None, characters=0, error=result.error)
    problem = result.data.get("problem") or {}
    return render(request, "_preview.html", error=None, text=result.data.get("text"),
                  characters=result.data.get("characters", 0),
                  problem=problem.get("message"))
