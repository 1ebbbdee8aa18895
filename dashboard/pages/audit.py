"""The audit log, newest first, with simple paging (`?before=<seq>`). Dashboard users are
shown by e-mail; entries hold ids, counts and states, never recipients' data."""
from __future__ import annotations

from aiohttp import web

from dashboard import i18n, labels
from dashboard.context import context_of
from dashboard.inputs import MAX_INT
from dashboard.pages.web import page, render
from dashboard.services import accounts
from dashboard.services import audit as service
from dashboard.services.values import iso

PAGE_SIZE = 50


# Details whose values are names of other fields (a line's or the settings' changed fields).
_FIELD_LISTS = ("fields", "keys")
_YES_NO = {True: ("evet", "yes"), False: ("hayır", "no")}


def shown(key: str, value, lang: str = "tr") -> str:
    """A detail's value as a reader sees it: states, roles and field names translated,
    durations in minutes and hours, yes/no for flags; ids and counts as they are."""
    if isinstance(value, bool):
        return _YES_NO[value][1 if lang == "en" else 0]
    if isinstance(value, list):
        return ", ".join(shown(key, v, lang) for v in value)
    if value is None:
        return "—"
    if key == "ttl_seconds":
        return labels.duration(value, lang)
    if key in _FIELD_LISTS and isinstance(value, str):
        return labels.audit_label(value, labels.AUDIT_FIELDS, lang)
    if isinstance(value, str) and value in labels.known_codes():
        return labels.label(value, "state", lang)
    return str(value)


def actor_label(actor: str, emails: dict[str, str], lang: str = "tr") -> str:
    kind, _, ident = actor.partition(":")
    if kind == "user" and ident in emails:
        return emails[ident]
    text = labels.audit_label(kind, labels.AUDIT_ACTORS, lang)
    return f"{text} {ident}" if ident else text


@page("GET", "/audit")
async def audit_page(request: web.Request) -> web.StreamResponse:
    before = request.query.get("before", "")
    ctx = context_of(request)
    seq = int(before) if before.isascii() and before.isdigit() else None
    found = await service.audit_entries(ctx, seq if seq and seq <= MAX_INT else None,
                                        PAGE_SIZE)
    emails = {u.id: u.email for u in await accounts.list_users(ctx)}
    lang = i18n.language(request)
    entries = [{"seq": e.seq, "at": iso(e.at), "actor": e.actor, "action": e.action,
                "what": labels.audit_label(e.action, labels.AUDIT_ACTIONS, lang),
                "detail": e.detail, "who": actor_label(e.actor, emails, lang),
                "details": [(labels.audit_label(k, labels.AUDIT_FIELDS, lang),
                             shown(k, v, lang)) for k, v in sorted(e.detail.items())]}
               for e in found.entries]
    return render(request, "audit.html", entries=entries, next_before=found.next_before,
                  paged=bool(before))
