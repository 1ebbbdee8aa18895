"""WhatsApp templates from the Graph API: the paged listing of a business account's templates
(GET /{waba_id}/message_templates), a line's refresh, and Meta's template status webhooks.
Campaigns whose template Meta pauses or disables are paused with the reason."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import quote

import aiohttp

from bot.whatsapp import WhatsAppChannel, WhatsAppCredentialsError
from bot.whatsapp_webhook import TemplateStatusChange
from campaigns import provider_templates as store
from campaigns import service
from campaigns.ports import Line
from campaigns.provider_templates import STOPPING, TEMPLATE_PAUSED, StoredTemplate
from store.engine import Database

log = logging.getLogger(__name__)

FIELDS = "name,language,category,status,components,rejected_reason"
PAGE_SIZE = 100  # Graph's listing pages; its default is 25
# 100 pages of 100: far above Meta's per-account template limit (250 unverified, 6,000).
MAX_PAGES = 100
# Campaigns that would still send a template that has stopped.
OPEN_STATES = ("running", "scheduled", "waiting_unlock")
# Webhook events that are not a template's status in Graph's listing.
_STATUS_OF_EVENT: dict[str, str | None] = {"REINSTATED": "APPROVED", "UNPAUSED": "APPROVED",
                                           "FLAGGED": None}  # None: status kept, reason noted
# Graph's error codes on a listing, as a stable code of ours (docs: Graph API error codes).
_AUTH, _NO_OBJECT, _PERMISSION = {190, 102, 2500}, {100, 803}, {10, 200, 294}
_THROTTLED, _TEMPORARY = {4, 17, 32, 613, 80007, 80008}, {1, 2}

GraphGet = Callable[[str, dict], Awaitable[tuple[int, dict | None]]]


class TemplateSyncError(Exception):
    """The templates could not be listed; nothing was stored. `code`: not_whatsapp,
    no_waba_id, invalid_credentials, whatsapp_auth_failed, whatsapp_unknown_account,
    whatsapp_permission_denied, provider_rate_limited, provider_unavailable,
    provider_malformed, provider_refused, too_many_templates."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SyncResult:
    templates: int
    by_status: dict[str, int]
    paused_campaigns: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


async def fetch_templates(get: GraphGet, waba_id: str, *, page_size: int = PAGE_SIZE,
                          max_pages: int = MAX_PAGES) -> list[StoredTemplate]:
    """Every page of the account's templates. Pages follow `paging.cursors.after` against
    our own Graph URL (never `paging.next`'s address); the last page has no `paging.next`."""
    path = f"{quote(waba_id, safe='')}/message_templates"
    params = {"fields": FIELDS, "limit": str(page_size)}
    found: list[StoredTemplate] = []
    seen: set[str] = set()
    for _ in range(max_pages):
        try:
            status, body = await get(path, params)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TemplateSyncError("provider_unavailable", "the WhatsApp Graph API could "
                                    f"not be reached ({type(exc).__name__})") from None
        if status != 200:
            raise refused(status, body)
        page, after = parse_page(body)
        found += page
        if after is None or after in seen:
            return found
        seen.add(after)
        params = {**params, "after": after}
    raise TemplateSyncError("too_many_templates",
                            f"the account lists more than {max_pages * page_size} templates")


def parse_page(body: dict | None) -> tuple[list[StoredTemplate], str | None]:
    """One listing page: its templates (malformed entries skipped) and the next cursor."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise TemplateSyncError("provider_malformed", "Graph's answer has no template list")
    templates = [t for t in map(_template, data) if t is not None]
    if len(templates) < len(data):
        log.warning("whatsapp templates skipped", extra={"skipped": len(data) - len(templates)})
    paging = body.get("paging") if isinstance(body.get("paging"), dict) else {}
    cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
    after = cursors.get("after")
    more = isinstance(paging.get("next"), str) and isinstance(after, str) and after
    return templates, after if more else None


def _template(item) -> StoredTemplate | None:
    if not isinstance(item, dict):
        return None
    name, language, status = item.get("name"), item.get("language"), item.get("status")
    if not all(isinstance(v, str) and v for v in (name, language, status)):
        return None
    if len(name) > 512 or len(language) > 16:
        return None
    components = item.get("components")
    components = [c for c in components if isinstance(c, dict)] if isinstance(
        components, list) else []
    rejected = item.get("rejected_reason")
    category = item.get("category")
    return StoredTemplate(
        name=name, language=language, status=status.upper()[:32], components=tuple(components),
        category=category[:32] if isinstance(category, str) else None,
        template_id=str(item["id"])[:64] if isinstance(item.get("id"), str | int) else None,
        reason=rejected[:500] if isinstance(rejected, str) and rejected != "NONE" else None)


def refused(status: int, body: dict | None) -> TemplateSyncError:
    """Graph's error answer as a TemplateSyncError (codes and trace id, never the token)."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    trace = error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None
    said = f"Graph answered {status}" + (f", error {code}" if code is not None else "") + (
        f" (fbtrace_id {trace})" if trace else "")
    if code in _AUTH or (code is None and status == 401):
        return TemplateSyncError("whatsapp_auth_failed", f"{said}: the line's access token "
                                 "is invalid or expired; set a new one (a permanent "
                                 "system-user token)")
    if code in _PERMISSION or (code is None and status == 403):
        return TemplateSyncError("whatsapp_permission_denied", f"{said}: the line's token "
                                 "lacks the whatsapp_business_management permission for "
                                 "this account")
    if code in _NO_OBJECT or (code is None and status == 404):
        return TemplateSyncError("whatsapp_unknown_account", f"{said}: check the line's "
                                 "WABA id (WhatsApp Business Account id)")
    if code in _THROTTLED or status == 429:
        return TemplateSyncError("provider_rate_limited", f"{said}: try again in a minute")
    if code in _TEMPORARY or status >= 500:
        return TemplateSyncError("provider_unavailable", f"{said}: try again later")
    return TemplateSyncError("provider_refused", said)


def waba_of(line: Line) -> str | None:
    waba = (line.options or {}).get("waba_id")
    return waba if isinstance(waba, str) and waba else None


async def sync_line(db: Database, channel: WhatsAppChannel, line: Line) -> SyncResult:
    """Lists the line's account templates and stores them all in one transaction (nothing
    when listing fails); campaigns whose template is now paused or disabled are paused."""
    if line.channel != "whatsapp":
        raise TemplateSyncError("not_whatsapp", "only WhatsApp lines have templates")
    waba = waba_of(line)
    if waba is None:
        raise TemplateSyncError("no_waba_id", "the line has no WABA id (WhatsApp Business "
                                "Account id): set waba_id on the line")
    try:
        found = await fetch_templates(partial(channel.graph_get, line), waba)
    except (LookupError, WhatsAppCredentialsError):
        raise TemplateSyncError("invalid_credentials",
                                "the line's credentials cannot be read") from None
    stopped = [(t.name, t.language, t.status, t.reason) for t in found if t.status in STOPPING]
    async with db.begin() as conn:
        count = await store.replace_line_templates(conn, line.tenant_id, line.id, waba, found)
        paused = await pause_campaigns(conn, line.tenant_id, {line.id}, stopped)
    by_status: dict[str, int] = {}
    for t in found:
        by_status[t.status] = by_status.get(t.status, 0) + 1
    return SyncResult(count, by_status, paused)


async def apply_status_change(db: Database, line: Line, change: TemplateStatusChange
                              ) -> tuple[int, list[tuple[str, str]]]:
    """A status webhook: the stored template's status on every line of that account, and
    the campaigns paused when it stopped. (rows changed, [(campaign id, reason)])."""
    waba = waba_of(line)
    if waba and change.waba_id and change.waba_id != waba:
        return 0, []  # another business account of the same Meta app
    status = _STATUS_OF_EVENT.get(change.event, change.event[:32])
    reason = f"{change.event}: {change.reason}" if change.reason else None
    async with db.begin() as conn:
        account = change.waba_id or waba
        lines = {line.id} | (await store.lines_of_account(conn, line.tenant_id, account)
                             if account else set())
        changed = await store.set_status(conn, line.tenant_id, lines, change.name,
                                         change.language, status, reason and reason[:500])
        paused = []
        if change.event in STOPPING:
            paused = await pause_campaigns(conn, line.tenant_id, lines, [
                (change.name, change.language, change.event, change.reason)])
    return changed, paused


async def pause_campaigns(conn, tenant_id: str, line_ids: Iterable[str],
                          stopped: list[tuple[str, str, str, str | None]]
                          ) -> list[tuple[str, str]]:
    """Pauses the open campaigns sending one of `stopped` (name, language, status, why)."""
    paused: list[tuple[str, str]] = []
    lines = list(line_ids)
    for name, language, status, why in stopped:
        using = await store.campaigns_using(conn, tenant_id, lines, [(name, language)],
                                            OPEN_STATES)
        if not using:
            continue
        reason = (f"{TEMPLATE_PAUSED}: WhatsApp template '{name}' ({language}) is {status}"
                  + (f" — {why}" if why else ""))[:200]
        ids = [campaign_id for campaign_id, _, _ in using]
        await service.set_state(conn, ids, "paused", reason, only_from=OPEN_STATES)
        log.warning("campaigns paused: template stopped", extra={
            "campaigns": len(ids), "template_status": status})
        paused += [(campaign_id, reason) for campaign_id in ids]
    return paused
