"""Application services: what the dashboard's pages and the JSON API both do, written once.

A service is a plain async function (or a small class) that takes a `Context` — who acts, for
which tenant, with the application's components — and typed arguments, and returns dataclasses
or raises the domain's errors (campaigns.service.CampaignError, …), which the JSON API maps to
`{"error": …}` answers (dashboard.errors) and pages to a message. Neither side reimplements the
other: a JSON handler parses, calls, maps; a page reads its form, calls, renders."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dashboard.keys import ACTOR, API_KEY_ROLE, TENANT, actor_of


@dataclass(frozen=True)
class Context:
    tenant_id: str
    actor: str  # as the audit log names it: "user:<id>" or "api_key:<id>"
    role: str | None  # the caller's role; None where the caller checked it already
    components: Mapping[Any, Any]  # the application (read its dashboard.keys entries)

    def __getitem__(self, key):
        return self.components[key]


def context_of(request: web.Request) -> Context:
    """The acting tenant and caller of an authenticated request (API key or session)."""
    from dashboard.pages.web import USER  # pages set it; imported late (web imports services)
    user = request.get(USER)
    role = user.role if user is not None else request.get(API_KEY_ROLE)
    actor = request.get(ACTOR) or actor_of(request)
    return Context(tenant_id=request[TENANT], actor=actor, role=role, components=request.app)
