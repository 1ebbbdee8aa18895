"""Records what API callers do in the audit log (ids, counts and states only)."""
from __future__ import annotations

from aiohttp import web

from dashboard.keys import TENANT, actor_of, db_key
from optout import audit


async def audited(request: web.Request, action: str, **detail) -> None:
    await audit.write(request.app[db_key], request[TENANT],
                      actor_of(request), action, **detail)
