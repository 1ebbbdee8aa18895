"""The overview: today's sends, the delivery funnel, opt-outs and line health."""
from __future__ import annotations

import time

from aiohttp import web

from dashboard.web import USER, api, page, render


def funnel_svg(steps: list[tuple[str, int]], width: int = 480, bar: int = 22) -> dict:
    """Horizontal bars for the funnel, as numbers a template draws as inline SVG."""
    top = max([n for _, n in steps] + [1])
    rows = []
    for i, (label, n) in enumerate(steps):
        rows.append({"label": label, "value": n, "y": i * (bar + 10),
                     "width": max(1, round((width - 160) * n / top)) if n else 0})
    return {"rows": rows, "width": width, "height": len(steps) * (bar + 10), "bar": bar}


# The overview's figures are the costliest read of the dashboard (several aggregate queries):
# kept per tenant for a few seconds, so a team refreshing it does not repeat them. The vault
# state and lines are read fresh on every view.
FIGURES_SECONDS = 5.0
_figures_cache: dict[str, tuple[float, dict, dict]] = {}


def forget_figures(tenant_id: str) -> None:
    """After a change made in the dashboard (a campaign created or started), show it at once."""
    _figures_cache.pop(tenant_id, None)


async def _figures(request: web.Request) -> tuple[dict, dict]:
    tenant_id = request[USER].tenant_id
    cached = _figures_cache.get(tenant_id)
    if cached is not None and time.monotonic() - cached[0] < FIGURES_SECONDS:
        return cached[1], cached[2]
    campaigns = (await api(request, "GET", "/campaigns", query={"limit": 5})).data or {}
    today = (await api(request, "GET", "/stats")).data or {}
    if len(_figures_cache) > 10_000:
        _figures_cache.clear()
    _figures_cache[tenant_id] = (time.monotonic(), campaigns, today)
    return campaigns, today


@page("GET", "/")
async def overview(request: web.Request) -> web.StreamResponse:
    campaigns, today = await _figures(request)
    items = campaigns.get("campaigns", []) if isinstance(campaigns, dict) else []
    totals = {k: 0 for k in ("sent", "delivered", "read", "failed", "skipped", "pending")}
    totals.update({k: v for k, v in (today.get("messages") or {}).items() if k in totals})
    totals["opt_outs"] = today.get("opt_outs", 0)
    lines = (await api(request, "GET", "/lines")).data or {}
    vault = (await api(request, "GET", "/vault")).data or {}
    steps = [("gönderildi / sent", totals["sent"] + totals["delivered"] + totals["read"]),
             ("iletildi / delivered", totals["delivered"] + totals["read"]),
             ("okundu / read", totals["read"]),
             ("atlandı / skipped", totals["skipped"]),
             ("başarısız / failed", totals["failed"])]
    return render(request, "overview.html", totals=totals, funnel=funnel_svg(steps),
                  campaigns=items[:5], lines=lines.get("lines", []), vault=vault)
