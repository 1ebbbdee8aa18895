"""The audit log: who did what and when, append-only and hash-chained (each entry holds the
hash of the previous one), with checkpoints that sign the entry count and the head hash under
the audit key derived from the master key. The key is never stored, so write access to the
database is not enough to forge a checkpoint, and a checkpoint also proves how long the log
was. Each checkpoint is appended to a file outside the database as well (the journal), which
still holds when someone deletes checkpoints together with entries. Entries carry ids, counts
and states — never personal data in clear. It lives here, the lowest package that may use both
crypto/ and store/."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto.audit_key import AuditKey, fingerprint, signed_by
from crypto.master import MasterKey
from store.engine import Database
from store.tables import audit_checkpoints, audit_log

log = logging.getLogger(__name__)
GENESIS = bytes(32)
_PG_AUDIT_LOCK = 0x61756469746C6F67  # serialises appends across PostgreSQL sessions
JOURNAL_VERSION = 2


def entry_hash(prev: bytes, seq: int, at: float, tenant_id: str | None, actor: str,
               action: str, detail: str) -> bytes:
    canonical = json.dumps([seq, repr(at), tenant_id, actor, action, detail],
                           ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(prev + canonical, digest_size=32).digest()


async def _serialise(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})


async def record(conn: AsyncConnection, tenant_id: str | None, actor: str, action: str,
                 **detail) -> int:
    """Appends one entry inside the caller's write transaction; returns its sequence number."""
    await _serialise(conn)
    last = (await conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(
        audit_log.c.seq.desc()).limit(1))).first()
    seq, prev = (last.seq + 1, bytes(last.hash)) if last else (1, GENESIS)
    at, text = time.time(), json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    await conn.execute(audit_log.insert().values(
        seq=seq, at=at, tenant_id=tenant_id, actor=actor[:100], action=action, detail=text,
        prev_hash=prev, hash=entry_hash(prev, seq, at, tenant_id, actor[:100], action, text)))
    return seq


# A deleted tenant's entries are blanked in place (the chain's hashes stay, so the entries
# after them still verify): tenant, actor and detail emptied, the action set to REDACTED. Each
# blanked entry must be named by a later operator-level DELETION entry (tenant_id NULL), whose
# `redacted` lists the blanked sequence numbers as [first, last] ranges; verification refuses
# a blank no deletion names.
REDACTED = "redacted"
DELETION = "tenant.delete"


async def redact_tenant(conn: AsyncConnection, tenant_id: str) -> list[list[int]]:
    """Blanks the tenant's entries inside the caller's transaction; their seqs as ranges, for
    the DELETION entry the caller then records."""
    await _serialise(conn)
    seqs = [r.seq for r in await conn.execute(sa.select(audit_log.c.seq).where(
        audit_log.c.tenant_id == tenant_id).order_by(audit_log.c.seq))]
    await conn.execute(audit_log.update().where(audit_log.c.tenant_id == tenant_id).values(
        tenant_id=None, actor="", action=REDACTED, detail=""))
    ranges: list[list[int]] = []
    for seq in seqs:
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def _blank(row) -> bool:
    return row.action == REDACTED and row.tenant_id is None and not row.actor


def _named_redactions(row) -> set[int]:
    """The seqs a DELETION entry names as blanked (none for any other entry)."""
    if row.action != DELETION or row.tenant_id is not None:
        return set()
    try:
        ranges = json.loads(row.detail).get("redacted", [])
        return {seq for first, last in ranges for seq in range(int(first), int(last) + 1)
                if seq < row.seq}
    except (ValueError, TypeError, AttributeError):
        return set()


async def write(db: Database, tenant_id: str | None, actor: str, action: str, **detail) -> int:
    async with db.begin() as conn:
        return await record(conn, tenant_id, actor, action, **detail)


@dataclass(frozen=True)
class Mark:
    """A signed checkpoint: when it was made the log held `entries` entries, the last being
    `seq` with hash `head`. `where` names it for people (a table row or a journal line)."""
    entries: int
    seq: int
    head: bytes
    at: float
    signature: bytes
    where: str = ""

    def message(self) -> bytes:
        return (f"izinli-audit-checkpoint:v2:{self.entries}:{self.seq}:{self.head.hex()}:"
                f"{self.at:.3f}").encode()

    def named(self) -> str:
        return f"{self.where} (signed {_when(self.at)})" if self.at else self.where


def _when(at: float) -> str:
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "at an impossible time"


async def checkpoint(db: Database, master: MasterKey, journal: Path | None = None) -> int | None:
    """Signs the chain's current length and head; returns the sequence signed (None: nothing
    new). With `journal`, the checkpoint is also appended to that file."""
    key = AuditKey(master)
    async with db.begin() as conn:
        await _serialise(conn)  # the head and the count must describe the same chain
        head = (await conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash).order_by(
            audit_log.c.seq.desc()).limit(1))).first()
        done = (await conn.execute(sa.select(sa.func.max(audit_checkpoints.c.seq)).where(
            audit_checkpoints.c.entries.is_not(None)))).scalar()
        if head is None or head.seq == done:
            return None
        count = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar()
        mark = Mark(count, head.seq, bytes(head.hash), round(time.time(), 3), b"")
        mark = replace(mark, signature=key.sign(mark.message()))
        # A legacy checkpoint of the same head gives way to the one that can be trusted.
        await conn.execute(audit_checkpoints.delete().where(
            audit_checkpoints.c.seq == head.seq, audit_checkpoints.c.entries.is_(None)))
        await conn.execute(audit_checkpoints.insert().values(
            seq=mark.seq, entries=mark.entries, at=mark.at, hash=mark.head,
            signature=mark.signature, verify_key=key.public))
    if journal is not None:
        append_journal(journal, mark)
    return mark.seq


# --- the journal: one JSON line per checkpoint, in a file outside the database ---------------

def append_journal(path: Path, mark: Mark) -> None:
    line = json.dumps({"v": JOURNAL_VERSION, "entries": mark.entries, "seq": mark.seq,
                       "hash": mark.head.hex(), "at": mark.at,
                       "signature": mark.signature.hex()}, separators=(",", ":")) + "\n"
    try:
        # One short O_APPEND write: lines from two writers never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:  # the database copy stands; the journal only misses this one
        log.warning("could not append the audit checkpoint to the journal",
                    extra={"path": str(path), "error": type(exc).__name__})


def read_journal(path: Path) -> list[Mark]:
    """The journal's checkpoints; a line that is not one comes back unsigned, so verification
    reports it as forged. OSError when the file cannot be read."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [_journal_mark(line, n, path.name) for n, line in enumerate(f, 1) if line.strip()]


def _journal_mark(line: str, number: int, name: str) -> Mark:
    where = f"{name} line {number}"
    try:
        d = json.loads(line)
        return Mark(int(d["entries"]), int(d["seq"]), bytes.fromhex(d["hash"]), float(d["at"]),
                    bytes.fromhex(d["signature"]), where)
    except (ValueError, KeyError, TypeError, OverflowError):
        return Mark(0, 0, b"", 0.0, b"", where)


# --- verification -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    entries: int
    checkpoints: int  # trusted checkpoints in the database
    legacy: int = 0  # checkpoints from before migration 0019: signed by a stored key, ignored
    journal: int = 0  # checkpoints read from the journal
    signed_through: int = 0  # the last entry a trusted checkpoint covers
    broken_at: int | None = None
    code: str | None = None  # stable: entry_missing, link_broken, entry_altered,
    reason: str | None = None  # checkpoint_forged, checkpoint_mismatch, truncated
    redacted: int = 0  # entries blanked by a business's deletion, each named by it


async def verify_chain(db: Database, public_key: bytes,
                       journal: Iterable[Mark] = ()) -> Verdict:
    """Recomputes every hash and checks every checkpoint (the database's and the journal's)
    against `public_key` alone; names the first break, or the entries cut off the end."""
    journal = list(journal)
    async with db.connect() as conn:
        rows = list(await conn.execute(sa.select(audit_checkpoints).order_by(
            audit_checkpoints.c.seq)))
        stored = [_stored_mark(r) for r in rows if r.entries is not None]
        base = Verdict(0, len(stored), len(rows) - len(stored), len(journal))
        forged = next((m for m in stored + journal
                       if not signed_by(public_key, m.message(), m.signature)), None)
        if forged is not None:
            return replace(base, broken_at=forged.seq, code="checkpoint_forged", reason=(
                f"{forged.named()} is forged: not signed by audit key "
                f"{fingerprint(public_key)}"))
        marks: dict[int, list[Mark]] = {}
        for m in stored + journal:
            marks.setdefault(m.seq, []).append(m)
        prev, count, last = GENESIS, 0, 0
        blanks: set[int] = set()  # blanked entries no deletion has named yet
        redacted = 0
        result = await conn.stream(sa.select(audit_log).order_by(audit_log.c.seq))
        async for row in result:
            count += 1
            code, problem = _check(row, prev, last + 1, count, marks.get(row.seq, ()))
            if problem:
                return replace(base, entries=count, signed_through=_covered(marks, last),
                               broken_at=row.seq, code=code, reason=problem)
            if _blank(row):
                blanks.add(row.seq)
                redacted += 1
            blanks -= _named_redactions(row)
            prev, last = bytes(row.hash), row.seq
    verdict = replace(base, entries=count, signed_through=_covered(marks, last),
                      redacted=redacted)
    if blanks:
        return replace(verdict, broken_at=min(blanks), code="entry_altered",
                       reason="entry content was blanked without a deletion that names it")
    return _judge_end(verdict, marks, last)


def _stored_mark(row) -> Mark:
    return Mark(row.entries, row.seq, bytes(row.hash), row.at, bytes(row.signature),
                f"checkpoint at entry {row.seq}")


def _covered(marks: dict[int, list[Mark]], last: int) -> int:
    return max((seq for seq in marks if seq <= last), default=0)


def _check(row, prev: bytes, expected: int, count: int,
           marks: Iterable[Mark]) -> tuple[str | None, str | None]:
    if row.seq != expected:
        gap = f"entry {expected} is" if row.seq == expected + 1 else \
            f"entries {expected}–{row.seq - 1} are"
        return "entry_missing", f"{gap} missing"
    if bytes(row.prev_hash) != prev:
        return "link_broken", "previous-hash link does not match"
    if not _blank(row) and entry_hash(prev, row.seq, row.at, row.tenant_id, row.actor, row.action,
                                row.detail) != bytes(row.hash):
        return "entry_altered", "entry content does not match its hash"
    for mark in marks:
        if mark.head != bytes(row.hash) or mark.entries != count:
            return "checkpoint_mismatch", (
                f"the log up to here does not match {mark.named()}, which covers "
                f"{_plural(mark.entries)} ending in hash {mark.head.hex()[:16]}")
    return None, None


def _judge_end(verdict: Verdict, marks: dict[int, list[Mark]], last: int) -> Verdict:
    """Truncation: a trusted checkpoint that covers more than the log still holds."""
    beyond = [m for ms in marks.values() for m in ms if m.seq > last]
    if not beyond:
        return verdict
    far = max(beyond, key=lambda m: (m.seq, m.entries))
    cut = f"entry {far.seq}" if far.seq == last + 1 else f"entries {last + 1}–{far.seq}"
    return replace(verdict, broken_at=last + 1, code="truncated", reason=(
        f"{cut} missing after the end of the log: it ends at entry {last} but "
        f"{far.named()} covers {_plural(far.entries)}"))


def _plural(entries: int) -> str:
    return "1 entry" if entries == 1 else f"{entries} entries"
