"""The consent ledger: append-only events and the current state per (address, consent type),
updated in the same transaction; a state only moves forward in time."""
from __future__ import annotations

import functools
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dt_time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from optout import channels
from optout.deadlines import TZ, iys_upload_deadline
from store import raw
from store.ids import new_ids
from store.tables import consent_events, consent_state

GRANTED, REVOKED = "granted", "revoked"
INDIVIDUAL, MERCHANT = "individual", "merchant"
IYS_TYPES = ("MESAJ", "ARAMA", "EPOSTA")
# What İYS calls the ways a consent reaches a person; the sending channels (WhatsApp, Telegram,
# the sandbox…) add theirs when they are registered (bot.registry → optout.channels).
CHANNEL_TYPES = {"sms": "MESAJ", "call": "ARAMA", "email": "EPOSTA"}
IYS_SOURCES = frozenset({
    "HS_2015", "HS_ATM", "HS_CAGRI_MERKEZI", "HS_E_TICARET", "HS_EORTAM", "HS_EPOSTA",
    "HS_FIZIKSEL_ORTAM", "HS_ISLAK_IMZA", "HS_KARAR", "HS_MESAJ", "HS_MOBIL", "HS_SOSYAL_MEDYA",
    "HS_WEB", "HS_KAMPANYA", "HS_KARTVIZIT", "HS_TAAHHUTNAME", "HS_ETKINLIK", "HS_OTOMATIK"})


class ConsentInputError(ValueError):
    code = "invalid_consent"


def consent_type_for(channel: str) -> str:
    """The consent type a channel (or an İYS type given directly) is recorded under."""
    upper = channel.strip().upper()
    if upper in IYS_TYPES or upper == "TELEGRAM":
        return upper
    known = channels.consent_types() | CHANNEL_TYPES
    try:
        return known[channel.strip().lower()]
    except KeyError:
        raise ConsentInputError(
            f"unknown channel '{channel}'; use one of {', '.join(known)}") from None


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    address_index: bytes
    consent_type: str
    status: str
    source: str
    recipient_type: str
    evidence_sealed: bytes
    occurred_at: float


async def record(conn: AsyncConnection, tenant_id: str, events: Sequence[ConsentEvent],
                 iys_enabled: bool = False, lifts_refusal: bool = False) -> list[str]:
    """Appends the events and moves each key's state forward; returns the event ids. A granted
    event moves a revoked state back only with `lifts_refusal`: the person's own act
    (optout.refusals.grant_by_person), never an import or a plain API call."""
    rows = event_rows(tenant_id, events, time.time(), iys_enabled)
    await insert_rows(conn, tenant_id, rows, lifts_refusal)
    return [r["id"] for r in rows]


def event_rows(tenant_id: str, events: Sequence[ConsentEvent], now: float,
               iys_enabled: bool) -> list[dict]:
    """The rows `insert_rows` writes; built apart so bulk writers can prepare them early."""
    return [_event_row(tenant_id, e, now, iys_enabled, event_id)
            for e, event_id in zip(events, new_ids(len(events)), strict=True)]


_EVENT_COLUMNS = ("id", "tenant_id", "address_index", "consent_type", "status", "source",
                  "iys_source", "recipient_type", "evidence_sealed", "occurred_at",
                  "recorded_at", "iys_sync_state", "iys_deadline")
_INSERT_EVENTS = (f"INSERT INTO consent_events ({', '.join(_EVENT_COLUMNS)}) "
                  f"VALUES ({raw.marks(len(_EVENT_COLUMNS))})")
_EVENT_TYPES = ("text", "text", "bytea", "text", "text", "text", "text", "text", "bytea",
                "float8", "float8", "text", "float8")
_STATE_COLUMNS = ("tenant_id", "address_index", "consent_type", "status", "recipient_type",
                  "source", "occurred_at", "event_id", "ended_at")
# A state only moves forward in time: an older event arriving late is kept in the history
# but does not overwrite a newer state.
_UPSERT_STATE = (
    f"INSERT INTO consent_state ({', '.join(_STATE_COLUMNS)}) "
    f"VALUES ({raw.marks(len(_STATE_COLUMNS))}) "
    "ON CONFLICT (tenant_id, address_index, consent_type) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS[3:])
    + " WHERE consent_state.occurred_at <= excluded.occurred_at")
# Checked in the statement itself, so a STOP committed while an import runs still holds.
_UPSERT_STATE_KEEPING_REFUSAL = (
    _UPSERT_STATE + f" AND (consent_state.status = '{GRANTED}' OR excluded.status = '{REVOKED}')")
_STATE_TYPES = ("text", "bytea", "text", "text", "text", "text", "float8", "text", "float8")
# PostgreSQL: the same statements reading a batch from one array per column (store.raw).
_PG_INSERT_EVENTS = raw.from_arrays(_INSERT_EVENTS, _EVENT_TYPES)
_PG_UPSERT = {sql: raw.from_arrays(sql, _STATE_TYPES)
              for sql in (_UPSERT_STATE, _UPSERT_STATE_KEEPING_REFUSAL)}


async def insert_rows(conn: AsyncConnection, tenant_id: str, rows: list[dict],
                      lifts_refusal: bool = False) -> None:
    if rows:
        values = operator.itemgetter(*_EVENT_COLUMNS)
        await raw.execute_batch(conn, _INSERT_EVENTS, [values(r) for r in rows],
                                _PG_INSERT_EVENTS)
        await _advance_state(conn, tenant_id, rows, lifts_refusal)


_RECIPIENT_TYPES = {"individual": INDIVIDUAL, "bireysel": INDIVIDUAL,
                    "merchant": MERCHANT, "tacir": MERCHANT}


def recipient_type_of(value: str) -> str:
    """individual / merchant, also from İYS's BIREYSEL / TACIR."""
    try:
        return _RECIPIENT_TYPES[value.strip().lower()]
    except KeyError:
        raise ConsentInputError(
            "recipient_type must be individual or merchant (BIREYSEL or TACIR)") from None


def _event_row(tenant_id: str, e: ConsentEvent, now: float, iys_enabled: bool,
               event_id: str) -> dict:
    if e.status not in (GRANTED, REVOKED):
        raise ConsentInputError("status must be granted or revoked")
    if e.recipient_type not in (INDIVIDUAL, MERCHANT):
        raise ConsentInputError("recipient_type must be individual or merchant")
    iys_type = e.consent_type in IYS_TYPES
    source = e.source.strip()[:200] or "unknown"
    return {
        "id": event_id, "tenant_id": tenant_id, "address_index": e.address_index,
        "consent_type": e.consent_type, "status": e.status, "source": source,
        "iys_source": iys_source_for(source),
        "recipient_type": e.recipient_type, "evidence_sealed": e.evidence_sealed,
        "occurred_at": e.occurred_at, "recorded_at": now,
        "iys_sync_state": "pending" if iys_enabled and iys_type else "not_applicable",
        "iys_deadline": _deadline(e.occurred_at) if iys_type else None,
    }


def iys_source_for(source: str) -> str | None:
    """The İYS source code of a consent: given directly (HS_WEB, …), or HS_MESAJ for what a
    person did by replying to a message (STOP, START, a consent reply)."""
    upper = source.strip().upper()
    if upper in IYS_SOURCES:
        return upper
    if upper.startswith("INBOUND:") and upper.split(":", 1)[1] in ("WHATSAPP", "SANDBOX", "SMS"):
        return "HS_MESAJ"
    return None


def _deadline(occurred_at: float) -> float:
    # Every event of an import shares a handful of days: compute each day's deadline once.
    return _deadline_for_day(datetime.fromtimestamp(occurred_at, TZ).date())


@functools.lru_cache(maxsize=4096)
def _deadline_for_day(day: date) -> float:
    return iys_upload_deadline(datetime.combine(day, dt_time(12), TZ)).timestamp()


async def _advance_state(conn: AsyncConnection, tenant_id: str, rows: list[dict],
                         lifts_refusal: bool) -> None:
    # Within one batch the newest event per key wins; across batches the WHERE below keeps
    # an older, late-arriving event from overwriting a newer state.
    latest: dict[tuple[bytes, str], dict] = {}
    for r in rows:
        key = (r["address_index"], r["consent_type"])
        if key not in latest or latest[key]["occurred_at"] <= r["occurred_at"]:
            latest[key] = r
    states = [(tenant_id, r["address_index"], r["consent_type"], r["status"],
               r["recipient_type"], r["source"], r["occurred_at"], r["id"],
               r["occurred_at"] if r["status"] == REVOKED else None)
              for r in latest.values()]
    sql = _UPSERT_STATE if lifts_refusal else _UPSERT_STATE_KEEPING_REFUSAL
    await raw.execute_batch(conn, sql, states, _PG_UPSERT[sql])


async def state_and_history(conn: AsyncConnection, tenant_id: str, address_index: bytes,
                            consent_type: str) -> tuple[dict | None, list[dict]]:
    key = (consent_state.c.tenant_id == tenant_id,
           consent_state.c.address_index == address_index,
           consent_state.c.consent_type == consent_type)
    state = (await conn.execute(sa.select(consent_state).where(*key))).mappings().first()
    q = sa.select(consent_events).where(
        consent_events.c.tenant_id == tenant_id, consent_events.c.address_index == address_index,
        consent_events.c.consent_type == consent_type).order_by(
        consent_events.c.occurred_at, consent_events.c.recorded_at)
    history = [dict(r) for r in (await conn.execute(q)).mappings()]
    return (dict(state) if state else None), history
