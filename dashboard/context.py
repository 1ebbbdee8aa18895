"""The services' Context of a request: who acts, for which tenant (dashboard.services)."""
from __future__ import annotations

from aiohttp import web

from dashboard.keys import ACTOR, API_KEY_ROLE, TENANT, actor_of
from dashboard.services import Context


def context_of(request: web.Request) -> Context:
    """The acting tenant and caller of an authenticated request (API key or session)."""
    from dashboard.pages.web import USER  # pages set it; imported late (web imports services)
    user = request.get(USER)
    role = user.role if user is not None else request.get(API_KEY_ROLE)
    actor = request.get(ACTOR) or actor_of(request)
    return Context(tenant_id=request[TENANT], actor=actor, role=role, components=request.app)
