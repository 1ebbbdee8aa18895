"""A dry run of the gate over a campaign's list: who would receive it and who would be skipped
(with the dispatcher's reasons), read-only — it writes nothing and opens nothing sealed.

The dispatcher decides per claimed row (campaigns.dispatcher._plan_tenant); this repeats the
same decisions for every member of the list now: the gate (optout.gate.decide over the facts
optout.facts.gather would give), the commercial frequency cap, and the WhatsApp 24 h window for
free text. Facts
can change before the campaign sends (a consent, a refusal, a message to the line), so the
figures are an estimate of the moment."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns import outbox, window
from campaigns.throttle import frequency_capped
from optout.gate import FREQUENCY_CAP, Facts, Purpose, decide
from optout.ledger import consent_type_for
from optout.suppression import EVERYTHING, PRECEDENCE
from optout.tenants import TenantProfile
from store.tables import consent_state, contacts, list_members, suppressions

CHUNK = 5000


@dataclass(frozen=True)
class DryRun:
    recipients: int  # the list's members (erased people left out)
    will_send: int
    will_skip: int
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    # {"inside", "of"} for WhatsApp free text (campaigns.window.estimate); None otherwise.
    window: dict | None = None

    def as_dict(self) -> dict:
        return {"recipients": self.recipients, "will_send": self.will_send,
                "will_skip": self.will_skip, "skipped_by_reason": dict(self.skipped_by_reason),
                "window": self.window}


async def members(conn: AsyncConnection, list_id: str) -> list[tuple[str, bytes]]:
    """(contact id, blind index) of a list's people who are not erased."""
    q = sa.select(contacts.c.id, contacts.c.address_index).join(
        list_members, list_members.c.contact_id == contacts.c.id).where(
        list_members.c.list_id == list_id, contacts.c.erased_at.is_(None))
    return [(r[0], bytes(r[1])) for r in await conn.execute(q)]


async def list_facts(conn: AsyncConnection, profile: TenantProfile, list_id: str,
                     consent_type: str) -> list[tuple[str, bytes, Facts]]:
    """(contact id, blind index, the gate's facts) of a list's people, in three set-based
    queries over the list (optout.facts.gather asks per blind index: the dispatcher's batches
    are small, a list may hold a million). The same facts: consent state of the channel's
    type, the strongest suppression of that scope or of all, merchants by any contact row."""
    tenant_id = profile.id
    people = sa.select(contacts.c.id, contacts.c.address_index).join(
        list_members, list_members.c.contact_id == contacts.c.id).where(
        list_members.c.list_id == list_id, contacts.c.erased_at.is_(None)).subquery()
    consent = sa.select(people.c.id, people.c.address_index, consent_state.c.status,
                        consent_state.c.recipient_type, consent_state.c.iys_status
                        ).select_from(people).outerjoin(consent_state, sa.and_(
                            consent_state.c.tenant_id == tenant_id,
                            consent_state.c.consent_type == consent_type,
                            consent_state.c.address_index == people.c.address_index))
    suppressed: dict[bytes, str] = {}
    for index, kind in await conn.execute(sa.select(
            people.c.address_index, suppressions.c.kind).select_from(people).join(
            suppressions, sa.and_(suppressions.c.tenant_id == tenant_id,
                                  suppressions.c.scope.in_((consent_type, EVERYTHING)),
                                  suppressions.c.address_index == people.c.address_index))):
        index = bytes(index)
        if index not in suppressed or PRECEDENCE[kind] < PRECEDENCE[suppressed[index]]:
            suppressed[index] = kind
    merchants: set[bytes] = set()
    if profile.has_merchant_contacts:
        others = contacts.alias("others")
        merchants = {bytes(r[0]) for r in await conn.execute(sa.select(
            people.c.address_index).select_from(people).join(others, sa.and_(
                others.c.tenant_id == tenant_id, others.c.recipient_type == "merchant",
                others.c.address_index == people.c.address_index)).distinct())}
    found = []
    iys = profile.iys_enabled
    for contact_id, raw_index, status, recipient_type, iys_status in await conn.execute(consent):
        index = bytes(raw_index)
        if status is None:
            facts = Facts(suppression=suppressed.get(index), iys_enabled=iys,
                          recipient_type="merchant" if index in merchants else "individual")
        else:
            facts = Facts(consent=status, recipient_type=recipient_type,
                          suppression=suppressed.get(index), iys_enabled=iys,
                          iys_status=iys_status)
        found.append((contact_id, index, facts))
    return found


async def dry_run(conn: AsyncConnection, profile: TenantProfile, *, channel: str, line_id: str,
                  list_id: str, purpose: str, has_template: bool, outside_window: str | None,
                  now: float | None = None) -> DryRun:
    now = time.time() if now is None else now
    consent_type = consent_type_for(channel)
    people = await list_facts(conn, profile, list_id, consent_type)
    seconds = window.window_of(channel)
    uses_window = seconds is not None and window.uses_window(has_template, outside_window)
    commercial = purpose == Purpose.COMMERCIAL
    cap = profile.frequency_cap if commercial else 0
    skipped: Counter[str] = Counter()
    inside_count = 0
    for start in range(0, len(people), CHUNK):
        chunk = people[start:start + CHUNK]
        indexes = [index for _, index, _ in chunk]
        sent = await outbox.sent_recently(
            conn, profile.id, [c for c, _, _ in chunk] if cap else [],
            now - profile.frequency_window_days * 86400)
        inside = await window.inside(conn, line_id, indexes, now - seconds) \
            if uses_window else set()
        inside_count += sum(1 for index in indexes if index in inside)
        for contact_id, index, facts in chunk:
            decision = decide(facts, Purpose(purpose))
            reason = None if decision.allowed else decision.reason
            if reason is None and cap and frequency_capped(sent.get(contact_id, 0), cap):
                reason = FREQUENCY_CAP
            if reason is None and uses_window and window.choose(
                    has_template, outside_window, index in inside) is None:
                reason = window.OUTSIDE_WINDOW
            if reason is not None:
                skipped[reason] += 1
    will_skip = sum(skipped.values())
    return DryRun(recipients=len(people), will_send=len(people) - will_skip,
                  will_skip=will_skip, skipped_by_reason=dict(skipped.most_common()),
                  window={"inside": inside_count, "of": len(people)} if uses_window else None)
