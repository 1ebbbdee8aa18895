"""Settings services: the tenant's recipient-facing settings (sender identity, language, time
zone, quiet hours, frequency cap, brands, İYS) and the İYS upload state — what
the /settings and /iys API and the settings page both do.

Invalid input is an InputError (400 with its code: invalid_field, unknown_field,
address_not_allowed), the same for the API and the pages."""
from __future__ import annotations

import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dashboard.errors import ApiError
from dashboard.inputs import InputError
from dashboard.keys import db_key, directory_key, master_key
from dashboard.services import Context
from dashboard.services.values import iso, refuse_addresses
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
_RANGES = {"frequency_cap": (0, 100, "a number"), "frequency_window_days": (1, 90, "a number"),
           "quiet_start_hour": (0, 23, "an hour"), "quiet_end_hour": (0, 23, "an hour")}


def _invalid(message: str) -> InputError:
    return InputError("invalid_field", message)


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def _check_text(key: str, value) -> None:
    if not isinstance(value, str) or len(value) > _TEXT[key]:
        raise _invalid(f"'{key}' must be a string of at most {_TEXT[key]} characters")
    if key == "timezone" and not _known_zone(value):
        raise _invalid("'timezone' must be an IANA zone name")


def _check_number(key: str, value) -> None:
    low, high, kind = _RANGES[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"'{key}' must be {kind} from {low} to {high}")


def _check_credentials(value) -> None:
    if not (isinstance(value, dict) and all(
            isinstance(value.get(k), str) and value.get(k) for k in IYS_ACCOUNT)):
        raise _invalid("'iys_credentials' needs username and password")
    if unknown := sorted(set(value) - set(IYS_ACCOUNT)):
        raise InputError("unknown_field", f"unknown field 'iys_credentials.{unknown[0]}'")


def _check_brands(value) -> None:
    if not (isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
            and len(value) <= 20):
        raise _invalid("'brand_names' must be a list of names")


def _check_one(key: str, value) -> None:
    if key in _TEXT:
        _check_text(key, value)
    elif key == "language":
        if value not in LANGUAGES:
            raise _invalid("'language' must be tr or en")
    elif key in ("iys_enabled", "quiet_hours"):
        if not isinstance(value, bool):
            raise _invalid(f"'{key}' must be true or false")
    elif key in _RANGES:
        _check_number(key, value)
    elif key == "iys_credentials":
        _check_credentials(value)
    elif key == "brand_names":
        _check_brands(value)
    else:
        raise InputError("unknown_field", f"unknown setting '{key}'")


def validated(changes: dict) -> dict:
    """The changes if every one is a known setting with a valid value; InputError naming the
    first that is not. A field naming a provider address is refused first, whatever else is
    wrong: İYS's address is the operator's (providers.iys_url), and the password must never
    follow a tenant's."""
    try:
        refuse_addresses(changes, SETTINGS_FIELDS)
        if isinstance(changes, dict):
            refuse_addresses(changes.get("iys_credentials"), IYS_ACCOUNT, "iys_credentials.")
    except ApiError as exc:
        raise InputError(exc.code, exc.message) from None
    for key, value in changes.items():
        _check_one(key, value)
    if changes.get("sender_name", "x").strip() == "":
        raise _invalid("'sender_name' must not be empty")
    return dict(changes)


def settings_dict(p: TenantProfile) -> dict:
    """The settings as the API shows them (and the settings page reads them)."""
    return {"sender_name": p.sender_name, "sender_contact": p.sender_contact,
            "language": p.language, "brand_names": list(p.brand_names),
            "iys_enabled": p.iys_enabled, "iys_code": p.iys_code,
            "iys_brand_code": p.iys_brand_code, "timezone": p.timezone,
            "quiet_hours": p.quiet_hours, "quiet_start_hour": p.quiet_start_hour,
            "quiet_end_hour": p.quiet_end_hour, "iys_connected": p.iys_connected,
            "frequency_cap": p.frequency_cap, "frequency_window_days": p.frequency_window_days}


async def get_settings(ctx: Context) -> TenantProfile:
    async with ctx[db_key].connect() as conn:
        return await ctx[directory_key].profile(conn, ctx.tenant_id)


async def change_settings(ctx: Context, changes: dict) -> TenantProfile:
    """Applies `changes` (field → new value, as the API names them) and returns the new
    settings. İYS credentials are stored wrapped by the master key, never shown again."""
    changes = validated(changes)
    async with ctx[db_key].begin() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
        code = changes.get("iys_code", profile.iys_code)
        brand = changes.get("iys_brand_code", profile.iys_brand_code)
        if changes.get("iys_enabled") and not (code and brand):
            raise _invalid("enabling İYS needs iys_code and iys_brand_code")
        if "iys_credentials" in changes:
            given = changes.pop("iys_credentials")
            if not (code and brand):
                raise _invalid("set iys_code and iys_brand_code with the İYS credentials")
            plain = json.dumps({**{k: given[k] for k in IYS_ACCOUNT}, "iys_code": code,
                                "brand_code": brand}).encode()
            changes["iys_credentials"] = ctx[master_key].wrap(plain)
            changes["iys_credentials_format"] = ADDRESS_FORMAT
            changes["iys_cursor"] = None
        await update_settings(conn, ctx.tenant_id, changes)
        await audit.record(conn, ctx.tenant_id, ctx.actor, "settings.update",
                           keys=sorted(changes))
    return await get_settings(ctx)


@dataclass(frozen=True)
class IysState:
    enabled: bool
    connected: bool
    state: dict  # iys_sync.status: counts, nearest deadline, rejections (times as epochs)


def iys_dict(found: IysState) -> dict:
    """The İYS state as the API shows it (times as ISO 8601 UTC)."""
    state = dict(found.state)
    state["rejections"] = [{**item, "occurred_at": iso(item["occurred_at"])}
                           for item in state["rejections"]]
    state["nearest_deadline"] = iso(state["nearest_deadline"])
    return {"enabled": found.enabled, "connected": found.connected, **state}


async def iys_state(ctx: Context) -> IysState:
    """İYS upload state: pending/sent/failed counts, the nearest deadline, and every record
    İYS refused with its reason, so the owner can fix and re-queue them."""
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
        state = await iys_sync.status(conn, ctx.tenant_id)
    return IysState(profile.iys_enabled, profile.iys_connected, state)


async def retry_iys(ctx: Context) -> int:
    """Re-queues records İYS refused (after the cause is fixed); the next push sends them.
    Returns how many."""
    async with ctx[db_key].begin() as conn:
        count = await raw.execute(
            conn, "UPDATE consent_events SET iys_sync_state = 'pending', iys_error = NULL "
                  "WHERE tenant_id = ? AND iys_sync_state = 'failed'", (ctx.tenant_id,))
        await audit.record(conn, ctx.tenant_id, ctx.actor, "iys.retry", records=count)
    return count
