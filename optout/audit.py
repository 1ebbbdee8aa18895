"""The audit log: who did what and when, append-only and hash-chained (each entry holds the
hash of the previous one), with checkpoints signed by the operator's Ed25519 key (wrapped by the
master key). Entries carry ids, counts and states — never personal data in clear. It lives here,
the lowest package that may use both crypto/ and store/."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.master import MasterKey
from crypto.signing import new_signing_seed, sign, verify, verify_key_of
from store.engine import Database
from store.tables import audit_checkpoints, audit_log, operator_keys

GENESIS = bytes(32)
_PG_AUDIT_LOCK = 0x61756469746C6F67  # serialises appends across PostgreSQL sessions


def entry_hash(prev: bytes, seq: int, at: float, tenant_id: str | None, actor: str,
               action: str, detail: str) -> bytes:
    canonical = json.dumps([seq, repr(at), tenant_id, actor, action, detail],
                           ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(prev + canonical, digest_size=32).digest()


async def record(conn: AsyncConnection, tenant_id: str | None, actor: str, action: str,
                 **detail) -> int:
    """Appends one entry inside the caller's write transaction; returns its sequence number."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = (await conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(
        audit_log.c.seq.desc()).limit(1))).first()
    seq, prev = (last.seq + 1, bytes(last.hash)) if last else (1, GENESIS)
    at, text = time.time(), json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    await conn.execute(audit_log.insert().values(
        seq=seq, at=at, tenant_id=tenant_id, actor=actor[:100], action=action, detail=text,
        prev_hash=prev, hash=entry_hash(prev, seq, at, tenant_id, actor[:100], action, text)))
    return seq


async def write(db: Database, tenant_id: str | None, actor: str, action: str, **detail) -> int:
    async with db.begin() as conn:
        return await record(conn, tenant_id, actor, action, **detail)


def _message(seq: int, digest: bytes) -> bytes:
    return f"izinli-audit:{seq}:{digest.hex()}".encode()


async def _signing_seed(conn: AsyncConnection, master: MasterKey) -> bytes:
    row = (await conn.execute(sa.select(operator_keys).where(
        operator_keys.c.name == "audit"))).first()
    if row is not None:
        return master.unwrap(bytes(row.wrapped_seed))
    seed = new_signing_seed()
    await conn.execute(operator_keys.insert().values(
        name="audit", wrapped_seed=master.wrap(seed), verify_key=verify_key_of(seed)))
    return seed


async def checkpoint(db: Database, master: MasterKey) -> int | None:
    """Signs the chain's current head; returns the sequence signed (None: nothing new)."""
    async with db.begin() as conn:
        head = (await conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(
            audit_log.c.seq.desc()).limit(1))).first()
        done = (await conn.execute(sa.select(sa.func.max(audit_checkpoints.c.seq)))).scalar()
        if head is None or head.seq == done:
            return None
        seed = await _signing_seed(conn, master)
        digest = bytes(head.hash)
        await conn.execute(audit_checkpoints.insert().values(
            seq=head.seq, at=time.time(), hash=digest,
            signature=sign(seed, _message(head.seq, digest)), verify_key=verify_key_of(seed)))
        return head.seq


@dataclass(frozen=True)
class Verdict:
    entries: int
    checkpoints: int
    broken_at: int | None = None
    reason: str | None = None


async def verify_chain(db: Database) -> Verdict:
    """Recomputes every hash and checks every checkpoint's signature; names the first break."""
    async with db.connect() as conn:
        marks = {r.seq: r for r in await conn.execute(sa.select(audit_checkpoints))}
        trusted = {bytes(r.verify_key) for r in await conn.execute(
            sa.select(operator_keys.c.verify_key))}
        prev, count, expected = GENESIS, 0, 1
        result = await conn.stream(sa.select(audit_log).order_by(audit_log.c.seq))
        async for row in result:
            count += 1
            problem = _check(row, prev, expected, marks.get(row.seq), trusted)
            if problem:
                return Verdict(count, len(marks), row.seq, problem)
            prev, expected = bytes(row.hash), row.seq + 1
    missing = [s for s in marks if s >= expected]
    if missing:
        return Verdict(count, len(marks), min(missing), "checkpoint beyond the last entry")
    return Verdict(count, len(marks))


def _check(row, prev: bytes, expected: int, mark, trusted: set[bytes]) -> str | None:
    if row.seq != expected:
        return f"entry {expected} is missing"
    if bytes(row.prev_hash) != prev:
        return "previous-hash link does not match"
    if entry_hash(prev, row.seq, row.at, row.tenant_id, row.actor, row.action,
                  row.detail) != bytes(row.hash):
        return "entry content does not match its hash"
    if mark is not None:
        if bytes(mark.hash) != bytes(row.hash):
            return "checkpoint hash does not match the chain"
        if bytes(mark.verify_key) not in trusted or not verify(
                bytes(mark.verify_key), _message(row.seq, bytes(row.hash)),
                bytes(mark.signature)):
            return "checkpoint signature is not valid"
    return None
