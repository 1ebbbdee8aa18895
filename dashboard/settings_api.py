"""API: the tenant's recipient-facing settings (sender identity, language, brands, İYS)."""
from __future__ import annotations

import json

from aiohttp import web

from dashboard.errors import ApiError, json_body, json_response
from dashboard.keys import TENANT, actor_of, db_key, directory_key, master_key
from dashboard.lines_api import iso, refuse_addresses
from dashboard.routing import Operation
from optout import audit, iys_sync
from optout.outbound import ADDRESS_FORMAT
from optout.tenants import TenantProfile, update_settings
from store import raw

_TEXT = {"sender_name": 200, "sender_contact": 200, "iys_code": 32, "iys_brand_code": 32,
         "timezone": 64}
LANGUAGES = ("tr", "en")
SETTINGS_FIELDS = (*_TEXT, "language", "iys_enabled", "quiet_hours", "frequency_cap",
                   "frequency_window_days", "quiet_start_hour", "quiet_end_hour",
                   "iys_credentials", "brand_names")
IYS_ACCOUNT = ("username", "password")


def settings_json(p: TenantProfile) -> dict:
    return {"sender_name": p.sender_name, "sender_contact": p.sender_contact,
            "language": p.language, "brand_names": list(p.brand_names),
            "iys_enabled": p.iys_enabled, "iys_code": p.iys_code,
            "iys_brand_code": p.iys_brand_code, "timezone": p.timezone,
            "quiet_hours": p.quiet_hours, "quiet_start_hour": p.quiet_start_hour,
            "quiet_end_hour": p.quiet_end_hour, "iys_connected": p.iys_connected,
            "frequency_cap": p.frequency_cap, "frequency_window_days": p.frequency_window_days}


async def get_settings(request: web.Request) -> web.Response:
    async with request.app[db_key].connect() as conn:
        profile = await request.app[directory_key].profile(conn, request[TENANT])
    return json_response(settings_json(profile))


def _known_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def _validated(body: dict) -> dict:
    # İYS's address is the operator's (providers.iys_url): the password must never follow a
    # tenant's. Checked first, so the 400 names the address whatever else is wrong.
    refuse_addresses(body, SETTINGS_FIELDS)
    if isinstance(body, dict):
        refuse_addresses(body.get("iys_credentials"), IYS_ACCOUNT, "iys_credentials.")
    changes = {}
    for key, value in body.items():
        if key in _TEXT:
            if not isinstance(value, str) or len(value) > _TEXT[key]:
                raise ApiError(400, "invalid_field", f"'{key}' must be a string of at most "
                                                     f"{_TEXT[key]} characters")
            if key == "timezone" and not _known_zone(value):
                raise ApiError(400, "invalid_field", "'timezone' must be an IANA zone name")
        elif key == "language":
            if value not in LANGUAGES:
                raise ApiError(400, "invalid_field", "'language' must be tr or en")
        elif key in ("iys_enabled", "quiet_hours"):
            if not isinstance(value, bool):
                raise ApiError(400, "invalid_field", f"'{key}' must be true or false")
        elif key in ("frequency_cap", "frequency_window_days"):
            low, high = (0, 100) if key == "frequency_cap" else (1, 90)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ApiError(400, "invalid_field", f"'{key}' must be a number from {low} to "
                                                     f"{high}")
        elif key in ("quiet_start_hour", "quiet_end_hour"):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 23:
                raise ApiError(400, "invalid_field", f"'{key}' must be an hour from 0 to 23")
        elif key == "iys_credentials":
            if not (isinstance(value, dict) and all(
                    isinstance(value.get(k), str) and value.get(k) for k in IYS_ACCOUNT)):
                raise ApiError(400, "invalid_field", "'iys_credentials' needs username and "
                                                     "password")
            if unknown := sorted(set(value) - set(IYS_ACCOUNT)):
                raise ApiError(400, "unknown_field",
                               f"unknown field 'iys_credentials.{unknown[0]}'")
        elif key == "brand_names":
            if not (isinstance(value, list) and all(isinstance(v, str) and v.strip()
                                                    for v in value) and len(value) <= 20):
                raise ApiError(400, "invalid_field", "'brand_names' must be a list of names")
        else:
            raise ApiError(400, "unknown_field", f"unknown setting '{key}'")
        changes[key] = value
    if changes.get("sender_name", "x").strip() == "":
        raise ApiError(400, "invalid_field", "'sender_name' must not be empty")
    return changes


async def patch_settings(request: web.Request) -> web.Response:
    changes = _validated(await json_body(request))
    async with request.app[db_key].begin() as conn:
        profile = await request.app[directory_key].profile(conn, request[TENANT])
        if changes.get("iys_enabled") and not (changes.get("iys_code", profile.iys_code) and
                                               changes.get("iys_brand_code",
                                                           profile.iys_brand_code)):
            raise ApiError(400, "invalid_field", "enabling İYS needs iys_code and iys_brand_code")
        if "iys_credentials" in changes:
            given = changes.pop("iys_credentials")
            codes = {"iys_code": changes.get("iys_code", profile.iys_code) or "",
                     "brand_code": changes.get("iys_brand_code", profile.iys_brand_code) or ""}
            if not all(codes.values()):
                raise ApiError(400, "invalid_field", "set iys_code and iys_brand_code with the "
                                                     "İYS credentials")
            plain = json.dumps({**{k: given[k] for k in IYS_ACCOUNT}, **codes}).encode()
            changes["iys_credentials"] = request.app[master_key].wrap(plain)
            changes["iys_credentials_format"] = ADDRESS_FORMAT
            changes["iys_cursor"] = None
        await update_settings(conn, request[TENANT], changes)
        await audit.record(conn, request[TENANT], actor_of(request),
                           "settings.update", keys=sorted(changes))
    return await get_settings(request)


async def get_iys(request: web.Request) -> web.Response:
    """İYS upload state: pending/sent/failed counts, the nearest deadline, and every record
    İYS refused with its reason, so the owner can fix and re-queue them."""
    async with request.app[db_key].connect() as conn:
        profile = await request.app[directory_key].profile(conn, request[TENANT])
        state = await iys_sync.status(conn, request[TENANT])
    for item in state["rejections"]:
        item["occurred_at"] = iso(item["occurred_at"])
    state["nearest_deadline"] = iso(state["nearest_deadline"])
    return json_response({"enabled": profile.iys_enabled, "connected": profile.iys_connected,
                          **state})


async def retry_iys(request: web.Request) -> web.Response:
    """Re-queues records İYS refused (after the cause is fixed); the next push sends them."""
    async with request.app[db_key].begin() as conn:
        count = await raw.execute(
            conn, "UPDATE consent_events SET iys_sync_state = 'pending', iys_error = NULL "
                  "WHERE tenant_id = ? AND iys_sync_state = 'failed'", (request[TENANT],))
        await audit.record(conn, request[TENANT], actor_of(request),
                           "iys.retry", records=count)
    return json_response({"requeued": count})


OPERATIONS = [
    Operation("GET", "/api/v1/iys", get_iys,
              "İYS sync state: counts, nearest deadline, rejected records with their reasons"),
    Operation("POST", "/api/v1/iys/retry", retry_iys,
              "Re-queue every record İYS rejected, for the next push", role="admin"),
    Operation("GET", "/api/v1/settings", get_settings, "The tenant's settings"),
    Operation("PATCH", "/api/v1/settings", patch_settings,
              "Change settings: sender_name, sender_contact, language (tr/en), brand_names, "
              "iys_enabled, iys_code, iys_brand_code, timezone, quiet_hours, quiet_start_hour, "
              "quiet_end_hour, frequency_cap (commercial messages per person per window, 0: "
              "off), frequency_window_days, iys_credentials {username, password}. İYS's "
              "address is the operator's (providers.iys_url): a field naming one (base_url, "
              "url, api_url, endpoint, any *_url) is a 400 address_not_allowed naming it",
              body={"type": "object"}, responses={200: "New settings", 400: "Invalid"},
              role="admin"),
]
