"""Retention (KVKK destruction): consent records go 3 years after the consent ended, inbound
and sandbox messages after their period, and erased contacts as soon as their grace ends.
Suppressions are kept: they are what stops a person from being messaged again, and so is the
event-order clock of a stop (a replayed older resume must keep finding it)."""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import (
    consent_events,
    consent_state,
    contacts,
    inbound_messages,
    inbound_window,
    preference_clock,
    sandbox_messages,
    tenant_day_counts,
    webhook_deliveries,
)

YEAR = 365.25 * 86400


@dataclass(frozen=True)
class RetentionPolicy:
    consent_years: float = 3.0
    message_years: float = 3.0
    erased_contact_days: float = 0.0
    # Providers redeliver webhooks for up to 36 h; a week of remembered deliveries covers it.
    delivery_days: float = 7.0


async def purge(conn: AsyncConnection, now: float, policy: RetentionPolicy) -> dict[str, int]:
    """Deletes what is past its period; returns how many rows of each kind went."""
    consent_cutoff = now - policy.consent_years * YEAR
    ended = sa.select(consent_state.c.tenant_id).where(
        consent_state.c.tenant_id == consent_events.c.tenant_id,
        consent_state.c.address_index == consent_events.c.address_index,
        consent_state.c.consent_type == consent_events.c.consent_type,
        consent_state.c.ended_at < consent_cutoff)
    counts = {
        "consent_events": await _delete(conn, consent_events.delete().where(ended.exists())),
        "consent_state": await _delete(conn, consent_state.delete().where(
            consent_state.c.ended_at < consent_cutoff)),
        "contacts": await _delete(conn, contacts.delete().where(
            contacts.c.erased_at < now - policy.erased_contact_days * 86400)),
        "preference_clock": await _delete(conn, preference_clock.delete().where(
            preference_clock.c.stopped.is_(False),
            preference_clock.c.event_at < int(consent_cutoff))),
        "webhook_deliveries": await _delete(conn, webhook_deliveries.delete().where(
            webhook_deliveries.c.received_at < now - policy.delivery_days * 86400)),
    }
    message_cutoff = now - policy.message_years * YEAR
    counts["inbound_messages"] = await _delete(conn, inbound_messages.delete().where(
        inbound_messages.c.received_at < message_cutoff))
    counts["sandbox_messages"] = await _delete(conn, sandbox_messages.delete().where(
        sandbox_messages.c.at < message_cutoff))
    # A window closed for a day decides nothing any more (campaigns.window).
    counts["inbound_window"] = await _delete(conn, inbound_window.delete().where(
        inbound_window.c.last_inbound_at < now - 2 * 86400))
    # Today's figures need a day; a year and a little is kept for comparisons.
    counts["tenant_day_counts"] = await _delete(conn, tenant_day_counts.delete().where(
        tenant_day_counts.c.bucket < int(now - 400 * 86400)))
    return counts


async def _delete(conn: AsyncConnection, stmt) -> int:
    return (await conn.execute(stmt)).rowcount
