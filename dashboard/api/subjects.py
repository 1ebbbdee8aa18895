"""API: KVKK data-subject requests — what is held about a person (also the export), erasure,
and the request log with 30-day deadlines."""
from __future__ import annotations

from aiohttp import web

from dashboard.context import context_of
from dashboard.errors import json_response, parse_body
from dashboard.models import request_model, rule
from dashboard.routing import Operation
from dashboard.services import subjects as subject_services


async def access(request: web.Request) -> web.Response:
    """What is held (KVKK art. 11), decrypted: needs the vault unlocked (423 otherwise)."""
    return json_response(await subject_services.access(
        context_of(request), request.query.get("address"),
        request.query.get("channel", "sandbox")))


async def export(request: web.Request) -> web.Response:
    """The person's data as a JSON file: decrypted while unlocked; while locked (or with
    `sealed=true`) sealed to the tenant key, for `izinli subject open-export`."""
    done = await subject_services.export(
        context_of(request), request.query.get("address"),
        request.query.get("channel", "sandbox"),
        sealed=request.query.get("sealed", "false").lower() in ("1", "true", "yes"))
    response = json_response(done.document)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="kvkk-{done.request_id}.json"')
    return response


@request_model
class Erase:
    address: str = rule(str)
    channel: str = rule(str, default="sandbox")


async def erase(request: web.Request) -> web.Response:
    body = await parse_body(request, Erase)
    return json_response(await subject_services.erase(
        context_of(request), body.address, body.channel))


@request_model
class Correct:
    address: str = rule(str)
    channel: str = rule(str, default="sandbox")
    name: str | None = rule(str, default=None)
    attributes: dict | None = rule(dict, default=None, description=(
        "contact fields by name, each a string (the service refuses others)"))


async def correct(request: web.Request) -> web.Response:
    """KVKK art. 11(1)(d): correct the person's name or attributes (sealed like on import)."""
    body = await parse_body(request, Correct)
    return json_response(await subject_services.correct(
        context_of(request), body.address, body.name, body.attributes, body.channel))


async def request_log(request: web.Request) -> web.Response:
    return json_response({"requests": await subject_services.requests(context_of(request))})


OPERATIONS = [
    Operation("GET", "/api/v1/subjects", access,
              "KVKK art. 11: everything held about a person (contact, consents with evidence, "
              "suppressions, messages, processors) — also the export; needs the vault unlocked",
              query=("address", "channel"), responses={200: "Report", 423: "Vault is locked"},
              role="admin"),
    Operation("GET", "/api/v1/subjects/export", export,
              "KVKK export as a JSON file: decrypted while the vault is unlocked, otherwise (or "
              "with sealed=true) sealed to the tenant key — open it with `izinli subject "
              "open-export`", query=("address", "channel", "sealed"), role="admin"),
    Operation("POST", "/api/v1/subjects/erase", erase,
              "Erase a person: contact data and messages destroyed now; consent proof kept as "
              "the law requires; a blind-index suppression keeps them from being messaged",
              model=Erase,
              role="admin"),
    Operation("POST", "/api/v1/subjects/correct", correct,
              "Correct a person's name or attributes",
              model=Correct,
              responses={200: "Corrected", 404: "No such contact"}, role="admin"),
    Operation("GET", "/api/v1/subjects/requests", request_log,
              "Data-subject requests with their 30-day deadlines; due_soon: open, and the "
              "deadline 5 days off or less", role="admin"),
]
