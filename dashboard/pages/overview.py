"""The overview: today's sends, the delivery funnel, refusals people made today, the last 14
days of sends by outcome, recent campaigns and line health — from the application services
(dashboard.services.overview), never through the JSON API."""
from __future__ import annotations

from aiohttp import web

from dashboard import i18n, labels
from dashboard.context import context_of
from dashboard.pages.web import USER, page, render
from dashboard.services import accounts as account_services
from dashboard.services import lines as line_services
from dashboard.services import overview as overview_services
from dashboard.services import subjects as subject_services

# Funnel geometry (SVG user units; the drawing scales to the page's width).
FUNNEL_WIDTH, LABEL_WIDTH, VALUE_WIDTH = 560, 190, 70
# The 14-day chart: bar colours per outcome (SVG fill attributes; the CSP allows no styles).
OUTCOME_FILLS = {"read": "#1b5e20", "delivered": "#43a047", "sent": "#0d47a1",
                 "failed": "#c62828", "skipped": "#9e9e9e"}
OUTCOME_LABELS = {"read": ("okundu", "read"), "delivered": ("iletildi", "delivered"),
                  "sent": ("gönderildi", "sent"), "failed": ("başarısız", "failed"),
                  "skipped": ("atlandı", "skipped")}


def funnel_svg(steps: list[tuple[str, int]], width: int = FUNNEL_WIDTH, bar: int = 22
               ) -> dict:
    """Horizontal bars for the funnel, as numbers a template draws as SVG: the largest value
    spans the bar area, and its figure still fits after it (nothing is clipped)."""
    top = max([n for _, n in steps] + [1])
    area = width - LABEL_WIDTH - VALUE_WIDTH
    rows = []
    for i, (label, n) in enumerate(steps):
        length = max(1, round(area * n / top)) if n else 0
        rows.append({"label": label, "value": n, "y": i * (bar + 10), "width": length,
                     "value_x": LABEL_WIDTH + length + 6})
    return {"rows": rows, "width": width, "height": len(steps) * (bar + 10), "bar": bar,
            "bar_x": LABEL_WIDTH}


def days_svg(days: list, lang: str, width: int = 560, height: int = 180) -> dict:
    """Stacked bars, one a day (oldest left), scaled to the busiest day; each segment with
    its outcome's fill and a <title> (its figures) for screen readers and hovering."""
    axis, top_gap = 18, 16
    area = height - axis - top_gap
    busiest = max([d.total for d in days] + [1])
    step = width / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        y = top_gap + area
        segments = []
        for outcome in overview_services.OUTCOMES:
            n = day.outcomes.get(outcome, 0)
            if not n:
                continue
            h = max(1.0, area * n / busiest)
            y -= h
            segments.append({"y": round(y, 1), "height": round(h, 1),
                             "fill": OUTCOME_FILLS[outcome], "outcome": outcome, "n": n})
        bars.append({"x": round(i * step + step * 0.15, 1), "width": round(step * 0.7, 1),
                     "label_x": round(i * step + step / 2, 1), "segments": segments,
                     "total": day.total, "day": f"{day.day.day}",
                     "title": _day_name(day.day, lang)})
    legend = [{"fill": OUTCOME_FILLS[o], "label": OUTCOME_LABELS[o][lang == "en"]}
              for o in reversed(overview_services.OUTCOMES)]
    return {"width": width, "height": height, "bars": bars, "axis_y": height - 4,
            "legend": legend, "busiest": busiest if any(d.total for d in days) else 0}


def _day_name(day, lang: str) -> str:
    """"30 Kasım" ("30 November")."""
    months = labels.EN_MONTHS if lang == "en" else labels.TR_MONTHS
    return f"{day.day} {months[day.month - 1]}"


@page("GET", "/")
async def overview(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    figures = await overview_services.overview(ctx)
    messages = figures.messages
    totals = {k: messages.get(k, 0) for k in ("sent", "delivered", "read", "failed",
                                               "skipped")}
    totals["opt_outs"] = figures.opt_outs  # people who refused today themselves
    totals["pending"] = figures.waiting  # waiting now, not entered today

    def _(tr: str, en: str) -> str:
        return i18n.t(request, tr, en)
    # Messages entering each state today; a read receipt may arrive without a delivery one.
    steps = [(_("Gönderildi", "Sent"), totals["sent"]),
             (_("İletildi", "Delivered"), max(totals["delivered"], totals["read"])),
             (_("Okundu", "Read"), totals["read"]),
             (_("Atlandı", "Skipped"), totals["skipped"]),
             (_("Başarısız", "Failed"), totals["failed"])]
    return render(request, "overview.html", totals=totals, funnel=funnel_svg(steps),
                  chart=days_svg(figures.days, i18n.language(request)),
                  campaigns=figures.campaigns[:5], lines=await line_services.lines(ctx),
                  vault=await account_services.vault_status(ctx),
                  kvkk_due=await _kvkk_due(request))


async def _kvkk_due(request: web.Request) -> list:
    """Open KVKK requests 5 days or less from their deadline (optout.subject_deadlines),
    for those who may act on them (the KVKK page is for admins)."""
    if not request[USER].can("admin"):
        return []
    return [r for r in await subject_services.requests(context_of(request)) if r["due_soon"]]
