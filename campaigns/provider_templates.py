"""WhatsApp message templates of a line's business account: stored as Graph lists them, checked
when a campaign names one, and found again when Meta pauses or disables one.

The checks are pure functions over Graph's `components` (HEADER, BODY, FOOTER, BUTTONS):
- a campaign's template must be APPROVED, fill exactly the body's {{1}}…{{n}} slots, and use
  nothing izinli cannot fill (media headers, header or URL-button variables, named slots);
- a commercial campaign's template must carry the sender identity and a free way to refuse,
  as Law 6563 asks of every commercial message (izinli appends its legal footer to free text
  only: a template is sent as Meta approved it). Identity: the template's text names the
  business — its sender name or one of its brand names (settings), compared folded (case,
  Turkish letters, punctuation) as whole words. Refusal: the body or footer holds a STOP
  keyword as a word ("RET yazın", "… RET yazıp yanıtlayın", "reply STOP"), or a QUICK_REPLY
  button's text is one the inbound classifier reads as STOP, so that tapping it really stops.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from optout.keywords import STOP_WORDS, Intent, classify, fold
from store.tables import campaigns, tenant_settings, whatsapp_templates

APPROVED = "APPROVED"
# A template in one of these states can no longer be sent: its campaigns are paused.
STOPPING = frozenset({"PAUSED", "DISABLED"})
TEMPLATE_PAUSED = "template_paused"  # campaigns.state_reason prefix
_SLOT = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_MEDIA = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})


class ProviderTemplateError(ValueError):
    """A template a campaign cannot use; `code` is stable (unknown_template,
    template_not_approved, template_parameters, unsupported_template, template_lacks_opt_out,
    template_lacks_sender, marketing_template)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StoredTemplate:
    name: str
    language: str
    status: str
    components: tuple[dict, ...]
    category: str | None = None
    template_id: str | None = None
    reason: str | None = None
    updated_at: float | None = None

    @property
    def parameter_count(self) -> int:
        return body_parameter_count(self.components)

    def as_json(self) -> dict:
        return {"name": self.name, "language": self.language, "status": self.status,
                "category": self.category, "id": self.template_id, "reason": self.reason,
                "parameter_count": self.parameter_count,
                "unsupported": unsupported(self.components), "text": text_of(self.components),
                "buttons": [b.get("text") for b in _buttons(self.components)],
                "components": list(self.components), "updated_at": self.updated_at}


# --- pure checks ------------------------------------------------------------------------------

def _component(components: Iterable[dict], kind: str) -> dict | None:
    return next((c for c in components if isinstance(c, dict) and c.get("type") == kind), None)


def _text(component: dict | None) -> str:
    value = (component or {}).get("text")
    return value if isinstance(value, str) else ""


def _buttons(components: Iterable[dict]) -> list[dict]:
    found = (_component(components, "BUTTONS") or {}).get("buttons")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def _slots(text: str) -> list[str]:
    return _SLOT.findall(text)


def body_parameter_count(components: Sequence[dict]) -> int:
    """How many distinct {{n}} slots the body has (what `parameters` must fill)."""
    return len({s for s in _slots(_text(_component(components, "BODY"))) if s.isdigit()})


def unsupported(components: Sequence[dict]) -> str | None:
    """Why izinli cannot send this template (it fills body text slots only), or None."""
    header = _component(components, "HEADER") or {}
    if header.get("format") in _MEDIA:
        return f"a media header ({str(header['format']).lower()})"
    if _slots(_text(header)):
        return "a variable in the header"
    if any(not s.isdigit() for s in _slots(_text(_component(components, "BODY")))):
        return "named variables in the body"
    for button in _buttons(components):
        if button.get("type") == "URL" and _slots(str(button.get("url", ""))):
            return "a variable in a URL button"
        if button.get("type") in ("COPY_CODE", "OTP"):
            return "a code button"
    if _component(components, "CAROUSEL") is not None:
        return "a carousel"
    return None


def text_of(components: Sequence[dict]) -> str:
    """Header, body and footer text as the recipient reads them, slots unfilled."""
    parts = [_text(_component(components, k)) for k in ("HEADER", "BODY", "FOOTER")]
    return "\n\n".join(p for p in parts if p)


def filled(components: Sequence[dict], values: Sequence[str]) -> str:
    """The template as a recipient reads it with `values` in {{1}}…, its buttons as [text]."""
    def slot(match: re.Match) -> str:
        key = match.group(1)
        index = int(key) - 1 if key.isdigit() else -1
        return values[index] if 0 <= index < len(values) else match.group(0)
    text = _SLOT.sub(slot, text_of(components))
    buttons = " ".join(f"[{b['text']}]" for b in _buttons(components)
                       if isinstance(b.get("text"), str))
    return f"{text}\n\n{buttons}" if buttons else text


def _has_words(text: str, phrase: str) -> bool:
    """`phrase` (folded) occurs in `text` (folded) as whole words."""
    return bool(phrase) and f" {phrase} " in f" {text} "


def has_refusal_path(components: Sequence[dict], brand_names: Iterable[str] = ()) -> bool:
    """A STOP keyword in the body or footer, or an opt-out QUICK_REPLY button."""
    for kind in ("BODY", "FOOTER"):
        text = fold(_text(_component(components, kind)))
        if any(_has_words(text, word) for word in STOP_WORDS):
            return True
    return any(b.get("type") == "QUICK_REPLY" and isinstance(b.get("text"), str)
               and classify(b["text"], brand_names) == Intent.STOP
               for b in _buttons(components))


def names_sender(components: Sequence[dict], names: Iterable[str]) -> bool:
    """The header, body or footer names the business (one of `names`)."""
    text = fold(text_of(components))
    return any(_has_words(text, fold(name)) for name in names if name and name.strip())


def check_for_campaign(template: StoredTemplate | None, parameters: Sequence[str], *,
                       commercial: bool, names: Sequence[str], name: str,
                       language: str) -> None:
    """Raises ProviderTemplateError unless a campaign may send `template` with `parameters`."""
    label = f"'{name}' ({language})"
    if template is None:
        raise ProviderTemplateError("unknown_template", (
            f"the line has no WhatsApp template {label}: create it in WhatsApp Manager, and "
            "refresh the line's templates (POST /api/v1/lines/{id}/templates/sync)"))
    if template.status != APPROVED:
        raise ProviderTemplateError("template_not_approved", (
            f"WhatsApp template {label} is {template.status}, not APPROVED"
            + (f" ({template.reason})" if template.reason else "")))
    if (why := unsupported(template.components)) is not None:
        raise ProviderTemplateError("unsupported_template", (
            f"WhatsApp template {label} has {why}; izinli fills body text variables only"))
    if len(parameters) != template.parameter_count:
        raise ProviderTemplateError("template_parameters", (
            f"WhatsApp template {label} has {template.parameter_count} variable(s) in its "
            f"body ({{{{1}}}}…); {len(parameters)} parameter(s) were given"))
    if not commercial:
        if template.category == "MARKETING":
            raise ProviderTemplateError("marketing_template", (
                f"WhatsApp template {label} is in Meta's MARKETING category: promotions are "
                "commercial messages, so send it as a commercial campaign (consent and a "
                "refusal path needed), or use a UTILITY template for a notice"))
        return
    if not has_refusal_path(template.components, names):
        raise ProviderTemplateError("template_lacks_opt_out", (
            f"WhatsApp template {label} gives no free way to refuse: a commercial message "
            "must say how to stop (e.g. a footer \"Mesaj almak istemiyorsanız RET yazıp "
            "yanıtlayın.\") or carry an opt-out quick-reply button (\"Stop promotions\", "
            "\"RET\", \"İptal\"). Add one in WhatsApp Manager and have it approved"))
    if not names_sender(template.components, names):
        listed = ", ".join(f"\"{n}\"" for n in names if n.strip()) or "none set"
        raise ProviderTemplateError("template_lacks_sender", (
            f"WhatsApp template {label} does not name the sender: a commercial message must "
            f"identify the business (its sender name or a brand name: {listed}), e.g. in "
            "the footer"))


# --- store ------------------------------------------------------------------------------------

def _stored(row) -> StoredTemplate:
    components = row.components if isinstance(row.components, list) else json.loads(
        row.components or "[]")
    return StoredTemplate(name=row.name, language=row.language, status=row.status,
                          components=tuple(components), category=row.category,
                          template_id=row.template_id, reason=row.reason,
                          updated_at=row.updated_at)


async def replace_line_templates(conn: AsyncConnection, tenant_id: str, line_id: str,
                                 waba_id: str, found: Iterable[StoredTemplate],
                                 now: float | None = None) -> int:
    """The line's templates become `found` (a full listing), in the caller's transaction."""
    now = time.time() if now is None else now
    unique = {(t.name, t.language): t for t in found}
    await conn.execute(whatsapp_templates.delete().where(
        whatsapp_templates.c.line_id == line_id))
    if unique:
        await conn.execute(whatsapp_templates.insert(), [
            {"line_id": line_id, "tenant_id": tenant_id, "waba_id": waba_id, "name": t.name,
             "language": t.language, "template_id": t.template_id, "category": t.category,
             "status": t.status, "components": list(t.components),
             "parameter_count": t.parameter_count, "reason": t.reason, "updated_at": now}
            for t in unique.values()])
    return len(unique)


async def line_templates(conn: AsyncConnection, tenant_id: str, line_id: str,
                         status: str | None = None) -> list[StoredTemplate]:
    q = sa.select(whatsapp_templates).where(whatsapp_templates.c.tenant_id == tenant_id,
                                            whatsapp_templates.c.line_id == line_id)
    if status is not None:
        q = q.where(whatsapp_templates.c.status == status)
    q = q.order_by(whatsapp_templates.c.name, whatsapp_templates.c.language)
    return [_stored(r) for r in await conn.execute(q)]


async def get_template(conn: AsyncConnection, tenant_id: str, line_id: str, name: str,
                       language: str) -> StoredTemplate | None:
    row = (await conn.execute(sa.select(whatsapp_templates).where(
        whatsapp_templates.c.tenant_id == tenant_id, whatsapp_templates.c.line_id == line_id,
        whatsapp_templates.c.name == name, whatsapp_templates.c.language == language))).first()
    return None if row is None else _stored(row)


async def lines_of_account(conn: AsyncConnection, tenant_id: str, waba_id: str) -> set[str]:
    """Lines whose stored templates come from this business account."""
    q = sa.select(whatsapp_templates.c.line_id).distinct().where(
        whatsapp_templates.c.tenant_id == tenant_id, whatsapp_templates.c.waba_id == waba_id)
    return {r.line_id for r in await conn.execute(q)}


async def set_status(conn: AsyncConnection, tenant_id: str, line_ids: Iterable[str],
                     name: str, language: str, status: str | None, reason: str | None,
                     now: float | None = None) -> int:
    """A status webhook's change to the stored template on these lines (status None: only
    the reason, e.g. FLAGGED); rows changed."""
    ids = list(line_ids)
    if not ids:
        return 0
    values = {"reason": reason, "updated_at": time.time() if now is None else now}
    if status is not None:
        values["status"] = status
    result = await conn.execute(whatsapp_templates.update().where(
        whatsapp_templates.c.tenant_id == tenant_id, whatsapp_templates.c.line_id.in_(ids),
        whatsapp_templates.c.name == name, whatsapp_templates.c.language == language).values(
        **values))
    return result.rowcount or 0


async def campaigns_using(conn: AsyncConnection, tenant_id: str, line_ids: Iterable[str],
                          templates: Iterable[tuple[str, str]],
                          states: Sequence[str]) -> list[tuple[str, str, str]]:
    """(campaign id, name, language) of campaigns on these lines in these states that send one
    of `templates` ((name, language) pairs). Filtered here: JSON paths differ by dialect, and a
    line has few open campaigns."""
    wanted, ids = set(templates), list(line_ids)
    if not wanted or not ids:
        return []
    q = sa.select(campaigns.c.id, campaigns.c.channel_template).where(
        campaigns.c.tenant_id == tenant_id, campaigns.c.line_id.in_(ids),
        campaigns.c.state.in_(list(states)), campaigns.c.channel_template.is_not(None))
    found = []
    for row in await conn.execute(q):
        spec = row.channel_template if isinstance(row.channel_template, Mapping) else {}
        key = (spec.get("name"), spec.get("language", "tr"))
        if key in wanted:
            found.append((row.id, *key))
    return found


async def sender_names(conn: AsyncConnection, tenant_id: str) -> list[str]:
    """What may identify the business in a template: its sender name and brand names."""
    row = (await conn.execute(sa.select(tenant_settings.c.sender_name,
                                        tenant_settings.c.brand_names).where(
        tenant_settings.c.tenant_id == tenant_id))).first()
    if row is None:
        return []
    brands = row.brand_names if isinstance(row.brand_names, list) else json.loads(
        row.brand_names or "[]")
    return [n for n in [row.sender_name, *brands] if isinstance(n, str) and n.strip()]
