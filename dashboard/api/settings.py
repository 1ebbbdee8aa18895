"""API: the tenant's recipient-facing settings (sender identity, language, brands, İYS). Thin:
the work is dashboard.services.settings, which the settings page calls too."""
from __future__ import annotations

from aiohttp import web

from dashboard.context import context_of
from dashboard.errors import json_response, parse_body
from dashboard.models import given
from dashboard.routing import Operation
from dashboard.services import settings as service


async def get_settings(request: web.Request) -> web.Response:
    return json_response(service.settings_dict(await service.get_settings(context_of(request))))


async def patch_settings(request: web.Request) -> web.Response:
    changes = await parse_body(request, service.SettingsChange)
    profile = await service.change_settings(context_of(request), given(changes))
    return json_response(service.settings_dict(profile))


async def get_iys(request: web.Request) -> web.Response:
    """İYS upload state: pending/sent/failed counts, the nearest deadline, and every record
    İYS refused with its reason, so the owner can fix and re-queue them."""
    return json_response(service.iys_dict(await service.iys_state(context_of(request))))


async def retry_iys(request: web.Request) -> web.Response:
    """Re-queues records İYS refused (after the cause is fixed); the next push sends them."""
    return json_response({"requeued": await service.retry_iys(context_of(request))})


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
              model=service.SettingsChange, responses={200: "New settings", 400: "Invalid"},
              role="admin"),
]
