"""Settings services: the tenant's recipient-facing settings (sender identity, language, time
zone, quiet hours, frequency cap, brands, İYS) and the İYS upload state — what
the /settings and /iys API and the settings page both do.

Invalid input is an InputError (400 with its code: invalid_field, unknown_field,
address_not_allowed), the same for the API and the pages."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dashboard.inputs import InputError
from dashboard.keys import db_key, directory_key, master_key
from dashboard.models import ABSENT, given, parse, request_model, rule
from dashboard.services import Context, ServiceError
from dashboard.services.values import iso, refuse_addresses
from optout import audit, iys_sync
from optout.outbound import ADDRESS_FORMAT
from optout.tenants import TenantProfile, update_settings
from store import raw

LANGUAGES = ("tr", "en")
IYS_ACCOUNT = ("username", "password")


def _invalid(message: str) -> InputError:
    return InputError("invalid_field", message)


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise _invalid("'timezone' must be an IANA zone name") from None


def _check_credentials(value: dict) -> None:
    if not all(isinstance(value.get(k), str) and value.get(k) for k in IYS_ACCOUNT):
        raise _invalid("'iys_credentials' needs username and password")
    if unknown := sorted(set(value) - set(IYS_ACCOUNT)):
        raise InputError("unknown_field", f"unknown field 'iys_credentials.{unknown[0]}'")


def _check_brands(value: list) -> None:
    if not all(v.strip() for v in value):
        raise _invalid("'brand_names' must be a list of names")


def _screen(changes: dict) -> None:
    """A field naming a provider address is refused first, whatever else is wrong: İYS's
    address is the operator's (providers.iys_url), and the password must never follow a
    tenant's."""
    try:
        refuse_addresses(changes, SETTINGS_FIELDS)
        refuse_addresses(changes.get("iys_credentials"), IYS_ACCOUNT, "iys_credentials.")
    except ServiceError as exc:
        raise InputError(exc.code, exc.message) from None


def _text(limit: int, **options):
    return rule(str, max_length=limit, **options)


@request_model(closed=True, nulls=False, screen=_screen)
class SettingsChange:
    """PATCH /settings (and the settings page): every field optional, nothing else taken."""
    sender_name: str = _text(200, default=ABSENT, description="not empty")
    sender_contact: str = _text(200, default=ABSENT)
    iys_code: str = _text(32, default=ABSENT)
    iys_brand_code: str = _text(32, default=ABSENT)
    timezone: str = _text(64, default=ABSENT, check=_check_zone,
                          description="an IANA zone name, e.g. Europe/Istanbul")
    language: str = rule(str, default=ABSENT, enum=LANGUAGES)
    iys_enabled: bool = rule(bool, default=ABSENT)
    quiet_hours: bool = rule(bool, default=ABSENT)
    quiet_start_hour: int = rule(int, default=ABSENT, minimum=0, maximum=23)
    quiet_end_hour: int = rule(int, default=ABSENT, minimum=0, maximum=23)
    frequency_cap: int = rule(int, default=ABSENT, minimum=0, maximum=100, description=(
        "commercial messages per person per window; 0: off"))
    frequency_window_days: int = rule(int, default=ABSENT, minimum=1, maximum=90)
    iys_credentials: dict = rule(dict, default=ABSENT, check=_check_credentials, schema={
        "required": list(IYS_ACCOUNT), "additionalProperties": False, "writeOnly": True,
        "properties": {k: {"type": "string", "minLength": 1} for k in IYS_ACCOUNT}})
    brand_names: list = rule(list, default=ABSENT, items=str, max_length=20,
                             check=_check_brands)


SETTINGS_FIELDS = tuple(f.name for f in fields(SettingsChange))


def validated(changes: dict) -> dict:
    """The changes if every one is a known setting with a valid value (SettingsChange);
    InputError naming the first that is not."""
    found = given(parse(SettingsChange, changes))
    if found.get("sender_name", "x").strip() == "":
        raise _invalid("'sender_name' must not be empty")
    return found


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
