"""The overview: today's sends, the delivery funnel, opt-outs and line health."""
from __future__ import annotations

from aiohttp import web

from dashboard.web import USER, api, api_cached, page, render


def funnel_svg(steps: list[tuple[str, int]], width: int = 480, bar: int = 22) -> dict:
    """Horizontal bars for the funnel, as numbers a template draws as inline SVG."""
    top = max([n for _, n in steps] + [1])
    rows = []
    for i, (label, n) in enumerate(steps):
        rows.append({"label": label, "value": n, "y": i * (bar + 10),
                     "width": max(1, round((width - 160) * n / top)) if n else 0})
    return {"rows": rows, "width": width, "height": len(steps) * (bar + 10), "bar": bar}


FIGURES_SECONDS = 5.0  # today's figures and recent campaigns: aggregate reads


async def _figures(request: web.Request) -> tuple[dict, dict]:
    campaigns = (await api_cached(request, FIGURES_SECONDS, "/campaigns",
                                  query={"limit": 5})).data or {}
    today = (await api_cached(request, FIGURES_SECONDS, "/stats")).data or {}
    return campaigns, today


@page("GET", "/")
async def overview(request: web.Request) -> web.StreamResponse:
    campaigns, today = await _figures(request)
    items = campaigns.get("campaigns", []) if isinstance(campaigns, dict) else []
    totals = {k: 0 for k in ("sent", "delivered", "read", "failed", "skipped")}
    totals.update({k: v for k, v in (today.get("messages") or {}).items() if k in totals})
    totals["opt_outs"] = today.get("opt_outs", 0)
    totals["pending"] = today.get("waiting", 0)  # waiting now, not entered today
    lines = (await api(request, "GET", "/lines")).data or {}
    vault = (await api(request, "GET", "/vault")).data or {}
    # Messages entering each state today; a read receipt may arrive without a delivery one.
    steps = [("gönderildi / sent", totals["sent"]),
             ("iletildi / delivered", max(totals["delivered"], totals["read"])),
             ("okundu / read", totals["read"]),
             ("atlandı / skipped", totals["skipped"]),
             ("başarısız / failed", totals["failed"])]
    return render(request, "overview.html", totals=totals, funnel=funnel_svg(steps),
                  campaigns=items[:5], lines=lines.get("lines", []), vault=vault,
                  kvkk_due=await _kvkk_due(request))


async def _kvkk_due(request: web.Request) -> list[dict]:
    """Open KVKK requests 5 days or less from their deadline (optout.subject_deadlines),
    for those who may act on them (the KVKK page is for admins)."""
    if not request[USER].can("admin"):
        return []
    found = await api(request, "GET", "/subjects/requests")
    return [r for r in (found.data or {}).get("requests", []) if r.get("due_soon")] \
        if found.ok else []
