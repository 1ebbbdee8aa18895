"""Campaign lifecycle: create (template checked and sealed), start (outbox built), pause,
resume, cancel, retry; the state machine of DESIGN.md lives here and nowhere else."""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns import outbox, window
from campaigns.audiences import list_columns
from campaigns.commercial import commercial_words, described, texts_of
from campaigns.lines import ARCHIVED, get_line
from campaigns.provider_templates import (
    APPROVED,
    TEMPLATE_PAUSED,
    ProviderTemplateError,
    check_for_campaign,
    get_template,
    sender_names,
)
from campaigns.render import DEFAULT_FIELDS, TemplateError, check_placeholders, compile_template
from crypto.fields import FieldSealer
from store.tables import campaigns

PURPOSES = ("commercial", "informational")
# Why the dispatcher paused a campaign (state_reason starts with one): a run of send errors, or
# too many opt-outs among its first sends. Separate, so that resuming one disarms nothing else.
ERROR_RUN = "error_run"
OPTOUT_RATE = "optout_rate"
TERMINAL = ("completed", "cancelled", "failed")
# action → states it may start from
_FROM = {
    "start": ("draft",),
    "pause": ("running", "waiting_unlock", "scheduled"),
    "resume": ("paused",),
    "cancel": ("draft", "scheduled", "running", "paused", "waiting_unlock"),
    "retry": ("running", "paused", "completed", "waiting_unlock"),
}


class CampaignError(ValueError):
    code = "invalid_campaign"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code or self.code


class CampaignNotFoundError(CampaignError):
    code = "not_found"


class CampaignStateError(CampaignError):
    code = "invalid_state"


class CommercialTextError(CampaignError):
    """An informational campaign whose text reads as commercial, without the owner's
    confirmation; `details` names the words (campaigns.commercial)."""
    code = "looks_commercial"

    def __init__(self, words: list[str]):
        super().__init__(
            f"the text reads as commercial ({described(words)}): promotions, greetings and "
            "celebrations are commercial messages under Law 6563 and need consent and the "
            "refusal footer. Send it as commercial, or confirm that it is informational with "
            '"confirm_informational": true')
        self.words = list(words)
        self.details = {"words": self.words}


@dataclass(frozen=True)
class NewCampaign:
    name: str
    line_id: str
    list_id: str
    purpose: str
    template: str
    send_at: float | None = None
    # {"name", "language", "parameters": [template strings]} for WhatsApp lines
    channel_template: dict | None = None
    # The owner confirms that an informational text which reads as commercial is not.
    confirm_informational: bool = False
    # WhatsApp 24 h window: "template" sends free text inside it, channel_template outside
    # (campaigns.window.check_mode for the rule).
    outside_window: str | None = None


async def create(conn: AsyncConnection, tenant_id: str, spec: NewCampaign,
                 sealer: FieldSealer) -> str:
    await _check(conn, tenant_id, spec)
    try:
        outside_window = window.check_mode(spec.outside_window, spec.channel_template is not None)
    except window.WindowModeError as exc:
        raise CampaignError(str(exc), exc.code) from None
    words = None
    if spec.purpose == "informational":
        words = commercial_words(*texts_of(spec.template, spec.channel_template))
        check_informational(words, spec.confirm_informational)
    campaign_id = str(uuid.uuid4())
    await conn.execute(campaigns.insert().values(
        id=campaign_id, tenant_id=tenant_id, line_id=spec.line_id,
        name_sealed=sealer.seal_field(spec.name.strip().encode()),
        list_id=spec.list_id, purpose=spec.purpose,
        template_sealed=sealer.seal_field(spec.template.encode()), state="draft",
        channel_template=spec.channel_template, commercial_words=words,
        outside_window=outside_window,
        send_at=spec.send_at, created_at=time.time()))
    return campaign_id


def check_informational(words: list[str], confirmed: bool) -> None:
    """Informational text that reads as commercial goes out only when the owner says it is
    informational, on creating and again on starting the campaign."""
    if words and not confirmed:
        raise CommercialTextError(words)


async def remember_words(conn: AsyncConnection, campaign_id: str, words: list[str]) -> None:
    """For an informational campaign created before texts were checked (commercial_words
    NULL): the words found once its text could be read."""
    await conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(
        commercial_words=words))


async def _check(conn: AsyncConnection, tenant_id: str, spec: NewCampaign) -> None:
    if not spec.name.strip() or len(spec.name) > 200:
        raise CampaignError("'name' must be 1 to 200 characters", "invalid_field")
    if spec.purpose not in PURPOSES:
        raise CampaignError("'purpose' must be commercial or informational", "invalid_field")
    line = await get_line(conn, tenant_id, spec.line_id)
    if line is None:
        raise CampaignNotFoundError("no such line")
    if line.state == ARCHIVED:
        raise CampaignStateError("the line is archived: choose another line", "line_archived")
    columns = await list_columns(conn, tenant_id, spec.list_id)
    if columns is None:
        raise CampaignNotFoundError("no such list")
    available = [*DEFAULT_FIELDS, *columns]
    try:
        check_placeholders(compile_template(spec.template), available)
        for parameter in _template_parameters(spec.channel_template):
            check_placeholders(compile_template(parameter), available)
    except TemplateError as exc:
        raise CampaignError(str(exc), exc.code) from None
    if line.channel == "whatsapp" and spec.channel_template is not None:
        await _check_provider_template(conn, tenant_id, line.id, spec)


async def _check_provider_template(conn: AsyncConnection, tenant_id: str, line_id: str,
                                   spec: NewCampaign) -> None:
    """The named WhatsApp template as synced for the line (campaigns.provider_templates)."""
    name = spec.channel_template["name"]
    language = spec.channel_template.get("language", "tr")
    try:
        check_for_campaign(
            await get_template(conn, tenant_id, line_id, name, language),
            spec.channel_template.get("parameters", []),
            commercial=spec.purpose == "commercial",
            names=await sender_names(conn, tenant_id), name=name, language=language)
    except ProviderTemplateError as exc:
        raise CampaignError(str(exc), exc.code) from None


def _template_parameters(channel_template: dict | None) -> list[str]:
    if channel_template is None:
        return []
    name = channel_template.get("name")
    language = channel_template.get("language", "tr")
    parameters = channel_template.get("parameters", [])
    if not isinstance(name, str) or not name or not isinstance(language, str) or \
            not isinstance(parameters, list) or \
            not all(isinstance(p, str) and p for p in parameters):
        raise CampaignError("'whatsapp_template' needs a name, a language and a list of "
                            "non-empty parameter strings", "invalid_field")
    return parameters


async def get(conn: AsyncConnection, tenant_id: str, campaign_id: str):
    q = sa.select(campaigns).where(campaigns.c.tenant_id == tenant_id,
                                   campaigns.c.id == campaign_id)
    row = (await conn.execute(q)).first()
    if row is None:
        raise CampaignNotFoundError("no such campaign")
    return row


async def transition(conn: AsyncConnection, tenant_id: str, campaign_id: str, action: str,
                     now: float | None = None, *, include_unknown: bool = False,
                     confirm_informational: bool = False) -> str:
    """Applies an owner's action; returns the new state (CampaignStateError if not allowed).
    `retry` sends `failed` messages again; `unknown` ones (which may have been delivered, so
    the person may get them twice) only with include_unknown. Starting an informational
    campaign whose text reads as commercial needs confirm_informational (CommercialTextError);
    one created before texts were checked must have had its words remembered first."""
    row = await get(conn, tenant_id, campaign_id)
    if row.state not in _FROM[action]:
        raise CampaignStateError(f"cannot {action} a campaign that is {row.state}")
    if action == "start" and row.purpose == "informational":
        if row.commercial_words is None:
            raise CampaignStateError("the campaign's text has not been checked yet",
                                     "unchecked_text")
        check_informational(list(row.commercial_words), confirm_informational)
    if action in ("start", "resume", "retry"):
        line = await get_line(conn, tenant_id, row.line_id)
        if line is None:
            raise CampaignStateError("the campaign's line was deleted", "line_deleted")
        if line.state == ARCHIVED:  # it would sit "running" and never send
            raise CampaignStateError("the campaign's line is archived", "line_archived")
    if action == "resume" and (row.state_reason or "").startswith(TEMPLATE_PAUSED):
        await _check_template_back(conn, row)
    now = time.time() if now is None else now
    if action == "start":
        await outbox.build(conn, row.id, tenant_id, row.list_id)
        state = "scheduled" if row.send_at and row.send_at > now else "running"
        return await _set(conn, row.id, state, None, started_at=now)
    if action == "pause":
        return await _set(conn, row.id, "paused", "paused by owner")
    if action == "resume":
        # Resuming after an opt-out-rate pause means the owner accepts that rate: that check
        # stops for this campaign. Any other pause (an error run) leaves it armed.
        acknowledged = row.optout_acknowledged or (row.state_reason or "").startswith(
            OPTOUT_RATE)
        return await _set(conn, row.id, "scheduled" if row.send_at and row.send_at > now
                          else "running", None, optout_acknowledged=acknowledged)
    if action == "cancel":
        # The campaign first, then its pending rows: a round writing rows back to pending
        # meanwhile either waits for this and skips them itself, or is seen by the skip
        # (campaigns.outbox.record).
        await _set(conn, row.id, "cancelled", "cancelled by owner", finished_at=now)
        await outbox.skip_open(conn, row.id, "cancelled")
        return "cancelled"
    await outbox.requeue(conn, row.id, include_unknown=include_unknown)
    return await _set(conn, row.id, "running" if row.state == "completed" else row.state, None)


async def _check_template_back(conn: AsyncConnection, row) -> None:
    """A campaign paused because Meta paused or disabled its template resumes only once the
    template is APPROVED again (a refresh or a status webhook says so)."""
    spec = row.channel_template or {}
    name, language = spec.get("name", ""), spec.get("language", "tr")
    found = await get_template(conn, row.tenant_id, row.line_id, name, language)
    if found is None or found.status != APPROVED:
        status = found.status if found else "unknown"
        raise CampaignStateError(f"WhatsApp template '{name}' ({language}) is {status}, not "
                                 "APPROVED: refresh the line's templates once Meta approves "
                                 "it again", "template_not_approved")


async def _set(conn: AsyncConnection, campaign_id: str, state: str, reason: str | None,
               **extra) -> str:
    await conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(
        state=state, state_reason=reason, **extra))
    return state


async def set_state(conn: AsyncConnection, campaign_ids, state: str, reason: str | None,
                    only_from: tuple[str, ...]) -> None:
    """System transitions (dispatcher, scheduler): waiting_unlock, spam-guard pauses, due."""
    ids = list(campaign_ids)
    if ids:
        await conn.execute(campaigns.update().where(
            campaigns.c.id.in_(ids), campaigns.c.state.in_(only_from)).values(
            state=state, state_reason=reason))


async def start_due(conn: AsyncConnection, campaign_id: str) -> str | None:
    """scheduled → running when send_at has come; the tenant's id when this call made the
    change, None when the campaign is no longer scheduled (another process started it, or the
    owner paused or cancelled it). One statement, so of processes racing exactly one wins."""
    row = (await conn.execute(campaigns.update().where(
        campaigns.c.id == campaign_id, campaigns.c.state == "scheduled").values(
        state="running", state_reason=None).returning(campaigns.c.tenant_id))).first()
    return None if row is None else row.tenant_id


async def active(conn: AsyncConnection, line_id: str | None = None) -> list:
    """Campaigns the dispatcher looks after: running, or waiting for an unlock; those of one
    line only when `line_id` is given (each round of a line reads them: not every tenant's)."""
    q = sa.select(campaigns.c.id, campaigns.c.tenant_id, campaigns.c.line_id,
                  campaigns.c.state, campaigns.c.state_reason, campaigns.c.purpose,
                  campaigns.c.optout_acknowledged).where(
        campaigns.c.state.in_(("running", "waiting_unlock")))
    if line_id is not None:
        q = q.where(campaigns.c.line_id == line_id)
    return list(await conn.execute(q))


async def scheduled(conn: AsyncConnection) -> list:
    q = sa.select(campaigns.c.id, campaigns.c.send_at).where(campaigns.c.state == "scheduled")
    return list(await conn.execute(q))


async def statuses(conn: AsyncConnection, rows) -> list[dict]:
    """`status` of many campaigns with two count queries."""
    ids = [r.id for r in rows]
    counted = await outbox.counts_many(conn, ids)
    failed = await outbox.counts_many(conn, ids, reasons_for="failed")
    return [await status(conn, r, counted[r.id], failed[r.id][1]) for r in rows]


async def status(conn: AsyncConnection, row, counted: tuple[dict, dict] | None = None,
                 failed: dict | None = None) -> dict:
    """A campaign for the owner; `failed_by_reason` says why messages failed (a campaign can
    be completed with some failed, e.g. provider_unavailable after all its retries)."""
    counts, skipped = counted or await outbox.counts(conn, row.id)
    if failed is None:
        failed = (await outbox.counts_many(conn, [row.id], reasons_for="failed"))[row.id][1]
    # "name" is sealed: the dashboard opens it (dashboard.services.names), None here.
    return {"id": row.id, "name": None, "state": row.state, "state_reason": row.state_reason,
            "purpose": row.purpose, "line_id": row.line_id, "list_id": row.list_id,
            "commercial_words": row.commercial_words,
            "whatsapp_template": row.channel_template, "outside_window": row.outside_window,
            "send_at": _finite(row.send_at), "created_at": row.created_at,
            "started_at": row.started_at,
            "finished_at": row.finished_at, "counts": counts, "skipped_by_reason": skipped,
            "failed_by_reason": failed,
            "actions": allowed_actions(row.state, counts)}


def allowed_actions(state: str, counts: dict) -> list[str]:
    """What the owner can do now: the state allows it, and a retry has something to take
    (failed messages, or unknown ones the owner may choose to send again)."""
    retriable = counts.get("failed", 0) or counts.get("unknown", 0)
    return [action for action, states in _FROM.items()
            if state in states and (action != "retry" or retriable)]


def _finite(value: float | None) -> float | None:
    # PostgreSQL keeps NaN and infinity; JSON has no spelling for them (a row stored before
    # send_at was checked, since failed by the scheduler).
    return value if value is None or math.isfinite(value) else None
