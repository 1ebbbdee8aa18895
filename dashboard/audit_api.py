"""API: the tenant's audit log, newest first (ids, counts and states only — no personal data)."""
from __future__ import annotations

import json

import sqlalchemy as sa
from aiohttp import web

from dashboard.errors import int_query, json_response
from dashboard.keys import TENANT, db_key
from dashboard.lines_api import iso
from dashboard.routing import Operation
from store.tables import audit_log

DEFAULT_LIMIT, MAX_LIMIT = 50, 500


def _detail(text: str) -> dict:
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {"value": found}


async def get_audit(request: web.Request) -> web.Response:
    """Entries with a sequence number below `before` (all when absent), newest first;
    `next_before` pages on (null at the end)."""
    before = int_query(request, "before", None, 1)  # bounded: the seq column is a BIGINT
    limit = int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    q = sa.select(audit_log.c.seq, audit_log.c.at, audit_log.c.actor, audit_log.c.action,
                  audit_log.c.detail).where(audit_log.c.tenant_id == request[TENANT])
    if before is not None:
        q = q.where(audit_log.c.seq < before)
    q = q.order_by(audit_log.c.seq.desc()).limit(limit + 1)
    async with request.app[db_key].connect() as conn:
        rows = list(await conn.execute(q))
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response({
        "entries": [{"seq": r.seq, "at": iso(r.at), "actor": r.actor, "action": r.action,
                     "detail": _detail(r.detail)} for r in rows],
        "next_before": rows[-1].seq if more and rows else None})


OPERATIONS = [
    Operation("GET", "/api/v1/audit", get_audit,
              "The tenant's audit log, newest first: who did what and when (ids, counts and "
              "states only); page on with before=<next_before>", query=("before", "limit"),
              responses={200: "{entries: [{seq, at, actor, action, detail}], next_before}",
                         400: "Invalid paging"}),
]
