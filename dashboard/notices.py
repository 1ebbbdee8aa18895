"""Security notices to a tenant's operators through the operator bot (when one is linked).
They are sent where the action happens — the API handler that every entry point runs (the
dashboard's pages call the same handlers) — so an action taken with an API key is told just
like one taken in the dashboard, and once."""
from __future__ import annotations

import logging

from aiohttp import web

from dashboard import i18n
from dashboard.keys import TENANT, actor_of, operator_desk_key

log = logging.getLogger(__name__)


def via(request: web.Request) -> str:
    """Which entry point acted, as the notice names it: the dashboard or an API key."""
    return "panel" if actor_of(request).startswith("user:") else "API"


async def security_notice(app: web.Application, tenant_id: str, kind: str,
                          entry: str | None = None) -> None:
    text = i18n.ALERTS[kind] + (f" ({entry})" if entry else "")
    try:
        await app[operator_desk_key].campaign_event(tenant_id, None, "security", text)
    except Exception:  # a notice that cannot be delivered must not break the action
        log.warning("security notice not delivered", extra={"tenant_id": tenant_id})


async def notify(request: web.Request, kind: str) -> None:
    """The notice `kind` for the calling tenant, naming the entry point."""
    await security_notice(request.app, request[TENANT], kind, via(request))
