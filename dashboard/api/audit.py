"""API: the tenant's audit log, newest first (ids, counts and states only — no personal data)."""
from __future__ import annotations

from aiohttp import web

from dashboard.context import context_of
from dashboard.errors import int_query, json_response
from dashboard.routing import Operation
from dashboard.services import audit as service
from dashboard.services.values import iso

DEFAULT_LIMIT, MAX_LIMIT = 50, 500


def entry_json(e: service.AuditEntry) -> dict:
    return {"seq": e.seq, "at": iso(e.at), "actor": e.actor, "action": e.action,
            "detail": e.detail}


async def get_audit(request: web.Request) -> web.Response:
    """Entries with a sequence number below `before` (all when absent), newest first;
    `next_before` pages on (null at the end)."""
    before = int_query(request, "before", None, 1)  # bounded: the seq column is a BIGINT
    limit = int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    found = await service.audit_entries(context_of(request), before, limit)
    return json_response({"entries": [entry_json(e) for e in found.entries],
                          "next_before": found.next_before})


OPERATIONS = [
    Operation("GET", "/api/v1/audit", get_audit,
              "The tenant's audit log, newest first: who did what and when (ids, counts and "
              "states only); page on with before=<next_before>", query=("before", "limit"),
              responses={200: "{entries: [{seq, at, actor, action, detail}], next_before}",
                         400: "Invalid paging"}),
]
