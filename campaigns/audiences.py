"""Audiences: contact lists and the CSV import that fills them (sealed, matched by blind
index, consent columns turned into ledger events). Works while the vault is locked. An import
never lifts a refusal and never brings an erased person back (optout.refusals)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns import outbox
from campaigns.csvparse import ContactRow, CsvFormatError, ParsedFile, RowError, parse
from campaigns.forked import WorkerUnavailable, forked_items
from crypto.fields import FieldSealer
from crypto.service import FieldCrypto
from optout import ledger, refusals
from optout.deadlines import TZ, parse_consent_date
from optout.ledger import ConsentEvent
from optout.names import seal_name
from optout.tenants import TenantDirectory, update_settings
from store import raw
from store.engine import Database
from store.ids import new_id, new_ids
from store.tables import contact_lists, list_member_moves

log = logging.getLogger(__name__)

BATCH = 5000
# Rows written after which PostgreSQL's planner statistics are refreshed (`_analyze_after`).
ANALYZE_AFTER = 10_000
_IMPORTED_TABLES = ("contacts", "list_members", "consent_events", "consent_state")
# A file full of bad rows still gets a bounded answer; the total is always reported.
MAX_REPORTED_INVALID = 1000
PHONE_CONSENT_TYPE = "MESAJ"
# The readable source of an imported consent (the file name is sealed in its evidence).
IMPORT_SOURCE = "import"
# The consent statement shown to people, stored in every row's sealed evidence.
MAX_CONSENT_TEXT = 2000
# Why a valid row was not (wholly) applied: its consent, because the person refused since
# (the rest of the row was applied); or all of it, because the person's data was erased.
REFUSED_EARLIER, ERASED = "refused_earlier", "erased"


class AudienceError(ValueError):
    code = "invalid_request"


@dataclass
class BatchCounts:
    """What one written batch did; `skipped` lists (file line, reason), at most
    MAX_REPORTED_INVALID of them."""
    imported: int = 0
    updated: int = 0
    kept_refusal: int = 0
    undated: int = 0
    erased: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        if reason == ERASED:
            self.erased += 1
        else:
            self.kept_refusal += 1
        if len(self.skipped) < MAX_REPORTED_INVALID:
            self.skipped.append((line, reason))


@dataclass
class ImportResult:
    imported: int = 0
    updated: int = 0
    invalid: list[dict] = field(default_factory=list)
    invalid_total: int = 0
    encoding: str = ""
    delimiter: str = ""
    kept_refusal: int = 0
    undated: int = 0
    erased: int = 0
    skipped: list[dict] = field(default_factory=list)

    def add(self, counts: BatchCounts) -> None:
        self.imported += counts.imported
        self.updated += counts.updated
        self.kept_refusal += counts.kept_refusal
        self.undated += counts.undated
        self.erased += counts.erased
        room = MAX_REPORTED_INVALID - len(self.skipped)
        self.skipped += [{"row": line, "reason": reason}
                         for line, reason in sorted(counts.skipped)[:max(room, 0)]]

    def reject(self, line: int, reason: str) -> None:
        self.invalid_total += 1
        if len(self.invalid) < MAX_REPORTED_INVALID:
            self.invalid.append({"row": line, "reason": reason})

    def as_json(self) -> dict:
        return {"imported": self.imported, "updated": self.updated, "invalid": self.invalid,
                "invalid_total": self.invalid_total, "encoding": self.encoding,
                "delimiter": self.delimiter, "kept_refusal": self.kept_refusal,
                "undated": self.undated, "erased": self.erased, "skipped": self.skipped}


def readable_source(given: str | None, fallback: str) -> str:
    """What a consent's readable `source` keeps of the source a business gave: an İYS source
    code (HS_WEB, …) or one of our channel codes as given; any other text (a form's name, a
    shop's address) is the business's own words, kept only in the sealed evidence, and the
    readable source is `fallback` ("import", "api")."""
    given = (given or "").strip()
    return given if given and ledger.iys_source_for(given) is not None else fallback


async def create_list(conn: AsyncConnection, tenant_id: str, name: str) -> dict:
    """A new list; its name is sealed (optout.names), so this works while locked."""
    name = name.strip()
    if not name or len(name) > 200:
        raise AudienceError("list name must be 1 to 200 characters")
    row = {"id": str(uuid.uuid4()), "tenant_id": tenant_id,
           "name_sealed": await seal_name(conn, tenant_id, name), "created_at": time.time()}
    await conn.execute(contact_lists.insert().values(**row))
    return {"id": row["id"], "name": name, "created_at": row["created_at"]}


async def _remember_columns(conn: AsyncConnection, tenant_id: str, list_id: str,
                            keys: list[str]) -> None:
    known = await list_columns(conn, tenant_id, list_id)
    merged = sorted(set(known or []) | set(keys))
    await conn.execute(contact_lists.update().where(contact_lists.c.id == list_id).values(
        columns=merged))


async def list_columns(conn: AsyncConnection, tenant_id: str, list_id: str) -> list[str] | None:
    """Attribute keys the list's contacts may have; None when there is no such list."""
    q = sa.select(contact_lists.c.columns).where(contact_lists.c.tenant_id == tenant_id,
                                                 contact_lists.c.id == list_id)
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    return list(row.columns or [])


async def list_exists(conn: AsyncConnection, tenant_id: str, list_id: str) -> bool:
    q = sa.select(contact_lists.c.id).where(contact_lists.c.tenant_id == tenant_id,
                                            contact_lists.c.id == list_id)
    return (await conn.execute(q)).first() is not None


@dataclass(frozen=True)
class ImportSource:
    filename: str
    uploader: str
    # The consent statement people were shown (the form, the checkbox text), if the business
    # gives it: part of every consent's evidence.
    consent_text: str = ""


# Files at least this large are parsed and sealed in a worker process (campaigns.forked):
# below it, making the process costs more than the work it takes over.
FORK_ABOVE_BYTES = 256 * 1024


class ContactImporter:
    def __init__(self, db: Database, fields: FieldCrypto, directory: TenantDirectory,
                 fork_above_bytes: int | None = FORK_ABOVE_BYTES,
                 max_workers: int | None = None):
        """`fork_above_bytes`: files of at least this size are prepared in a worker process;
        None: never. At most `max_workers` (default: one per core) run at once; further
        imports wait for one."""
        self._db, self._fields, self._directory = db, fields, directory
        self._fork_above = fork_above_bytes
        self._workers = asyncio.Semaphore(max_workers or os.cpu_count() or 1)

    async def run(self, tenant_id: str, list_id: str | None, fileobj: BinaryIO,
                  source: ImportSource) -> ImportResult:
        """Imports in batches, each its own transaction: a long import never holds the write
        lock that an opt-out needs, and re-running a file is idempotent. While one batch is
        being written, the next is parsed and sealed: in a worker process for a large file,
        so the server's event loop stays free and the parsing has a core of its own."""
        parsed = parse(fileobj)  # a file that cannot be read is refused before anything else
        async with self._db.connect() as conn:
            profile = await self._directory.profile(conn, tenant_id)
            index_of = await self._directory.indexer(conn, tenant_id)
        sealer = await self._fields.new_sealer(tenant_id, profile.public_key)
        if list_id is not None:
            keys = [c.key for c in parsed.columns if c.field == "attribute" and c.key]
            async with self._db.begin() as conn:
                await _remember_columns(conn, tenant_id, list_id, keys)
        result = ImportResult(encoding=parsed.encoding, delimiter=parsed.delimiter)
        writer = _BatchWriter(tenant_id, list_id, sealer, source, profile.iys_enabled, index_of)
        in_flight: asyncio.Task | None = None
        try:
            async with contextlib.aclosing(self._prepared(fileobj, parsed, writer)) as items:
                async for item in items:
                    for line, reason in item.rejects:
                        result.reject(line, reason)
                    if in_flight is not None:
                        written, in_flight = in_flight, None
                        result.add(await written)
                    in_flight = asyncio.create_task(self._write(writer, item))
                    await asyncio.sleep(0)  # the write's first statement starts meanwhile
            if in_flight is not None:
                written, in_flight = in_flight, None
                result.add(await written)
        finally:
            if in_flight is not None:  # the file failed mid-way: the batch under way lands
                await asyncio.gather(asyncio.shield(in_flight), return_exceptions=True)
        await self._analyze_after(result)
        return result

    def _prepared(self, fileobj: BinaryIO, parsed: ParsedFile, writer: _BatchWriter
                  ) -> AsyncIterator[_Prepared]:
        """The file's batches ready to write. A large file's are made by a worker process
        that carries on reading `parsed` from where the header left it (campaigns.forked)."""
        if self._fork_above is not None and _size(fileobj) >= self._fork_above:
            return self._in_worker(functools.partial(_prepare_rows, parsed.rows, writer),
                                   _fds_of(fileobj))
        return _inline(_prepare_rows(parsed.rows, writer))

    async def _in_worker(self, produce: Callable[[], Iterator[_Prepared]],
                         fds: list[int]) -> AsyncIterator[_Prepared]:
        # At most one worker per core at a time: many tenants importing at once queue for a
        # worker instead of each taking a process (and the server's cores) of its own.
        async with self._workers:
            try:
                async with contextlib.aclosing(forked_items(
                        produce, passes=(CsvFormatError,), keep_fds=fds)) as items:
                    async for item in items:
                        yield item
                return
            except WorkerUnavailable as exc:  # raised before any item: nothing was read yet
                log.warning("import worker unavailable, preparing in the server process",
                            extra={"error": exc.strerror})
            for item in produce():
                yield item

    async def _analyze_after(self, result: ImportResult) -> None:
        """PostgreSQL: fresh planner statistics after a large import, so the next lookups
        (the gate, a re-import's matches) are not planned for the tables as they were."""
        if self._db.dialect == "postgresql" and result.imported + result.updated > ANALYZE_AFTER:
            async with self._db.begin() as conn:  # statistics are kept only if committed
                await conn.exec_driver_sql(f"ANALYZE {', '.join(_IMPORTED_TABLES)}")

    async def _write(self, writer: _BatchWriter, prepared: _Prepared) -> BatchCounts:
        async with self._db.begin() as conn, self._db.bulk(conn):
            return await writer.write(conn, prepared)


def _fds_of(fileobj: BinaryIO) -> list[int]:
    """The descriptor a file object reads from; none for one in memory."""
    try:
        return [fileobj.fileno()]
    except (AttributeError, OSError):  # io.BytesIO: io.UnsupportedOperation, an OSError
        return []


def _size(fileobj: BinaryIO) -> int:
    position = fileobj.tell()
    try:
        return fileobj.seek(0, io.SEEK_END)
    finally:
        fileobj.seek(position)


async def _inline(items: Iterator[_Prepared]) -> AsyncIterator[_Prepared]:
    for item in items:
        yield item


def _prepare_rows(rows: Iterator[ContactRow | RowError], writer: _BatchWriter
                  ) -> Iterator[_Prepared]:
    """The file's batches ready to write. CPU only, no I/O but the file: what a worker process
    runs (campaigns.forked). CsvFormatError at the line where a file stops making sense."""
    for batch in _batches(rows, BATCH):
        rejects = [(r.line, r.reason) for r in batch if type(r) is RowError]
        valid = [r for r in batch if type(r) is not RowError] if rejects else batch
        yield writer.prepare(valid, rejects)


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


@dataclass
class _Prepared:
    """One batch ready to write: sealed contact values per blind index, the file lines of
    each person, ledger rows with (file line, dated at the upload) for each, and the rows
    that were not valid."""
    contacts: dict[bytes, dict]
    lines: dict[bytes, list[int]]
    events: list[dict]
    event_lines: list[tuple[int, bool]]
    now: float
    rejects: list[tuple[int, str]]  # the batch's invalid rows: (file line, reason)


@dataclass
class _BatchWriter:
    tenant_id: str
    list_id: str | None
    sealer: FieldSealer
    source: ImportSource
    iys_enabled: bool
    index_of: Callable[[str], bytes]

    def prepare(self, rows: list[ContactRow], rejects: list[tuple[int, str]]) -> _Prepared:
        """Everything CPU-bound: indexes, sealing, consent event rows. No I/O. `rejects`:
        the batch's invalid rows so far, (file line, reason); rows found invalid here join."""
        now = time.time()
        evidence = _evidence_object(bool(self.source.consent_text))
        shared = self._shared_evidence(now)
        consents, event_lines, latest, lines = [], [], {}, {}
        for row in rows:
            occurred = _occurred_at(row, now)
            if occurred is None:
                rejects.append((row.line, "invalid_consent_date"))
                continue
            index = self.index_of(row.phone)
            latest[index] = row
            lines.setdefault(index, []).append(row.line)
            if row.consent is not None:
                consents.append((row, index, occurred, evidence.encode(
                    _evidence_values(row, shared))))
                event_lines.append((row.line, not row.consent_date))
        sealed = self._contact_values(latest)
        events = self._events(consents)
        return _Prepared(sealed, lines, ledger.event_rows(self.tenant_id, events, now,
                                                          self.iys_enabled), event_lines, now,
                         sorted(rejects))

    async def write(self, conn: AsyncConnection, batch: _Prepared) -> BatchCounts:
        # In the batch's own transaction, so what it finds still holds when the rows land.
        standing = await refusals.standing(conn, self.tenant_id, list(batch.contacts),
                                           PHONE_CONSENT_TYPE)
        counts = BatchCounts()
        erased = {i for i, s in standing.items() if s.erased}
        for index in erased:
            for line in batch.lines[index]:
                counts.skip(line, ERASED)
        contacts = {i: v for i, v in batch.contacts.items() if i not in erased}
        events = _unrefused(batch, {i for i, s in standing.items() if s.refused}, erased,
                            counts)
        if any(v["recipient_type"] == "merchant" for v in contacts.values()):
            await update_settings(conn, self.tenant_id, {"has_merchant_contacts": True})
        existing = await _existing_ids(conn, self.tenant_id, list(contacts))
        await self._upsert(conn, contacts, existing, batch.now)
        if self.list_id is not None:
            await self._add_members(conn, list(contacts))
        await ledger.insert_rows(conn, self.tenant_id, events)
        # A person twice in the file is one contact: the second row counts as an update.
        counts.imported = sum(1 for i in contacts if i not in existing)
        counts.updated = sum(len(batch.lines[i]) for i in contacts) - counts.imported
        return counts

    def _contact_values(self, latest: dict[bytes, ContactRow]) -> dict[bytes, dict]:
        """The sealed values of each person's last row; all fields of the batch sealed in one
        `seal_many` call (one getrandom for every nonce)."""
        plain: list[bytes] = []
        for row in latest.values():
            plain.append(row.phone.encode())
            if row.name:
                plain.append(row.name.encode())
            if row.attributes:
                plain.append(_json_object(tuple(row.attributes)).encode(
                    row.attributes.values()))
        blobs = iter(self.sealer.seal_many(plain))
        return {index: {"address_sealed": next(blobs),
                        "name_sealed": next(blobs) if row.name else None,
                        "attributes_sealed": next(blobs) if row.attributes else None,
                        "recipient_type": row.recipient_type}
                for index, row in latest.items()}

    async def _upsert(self, conn, sealed: dict[bytes, dict], existing: dict, now: float) -> None:
        added = [(i, v) for i, v in sealed.items() if i not in existing]
        await _write(conn, _INSERT_CONTACT, [
            (contact_id, self.tenant_id, i, v["address_sealed"], v["name_sealed"],
             v["attributes_sealed"], v["recipient_type"], now, now)
            for (i, v), contact_id in zip(added, new_ids(len(added)), strict=True)])
        await _write(conn, _UPDATE_CONTACT, [
            (v["address_sealed"], v["name_sealed"], v["attributes_sealed"],
             v["recipient_type"], now, existing[i])
            for i, v in sealed.items() if i in existing])

    async def _add_members(self, conn, indexes: list[bytes]) -> None:
        ids = await _existing_ids(conn, self.tenant_id, indexes)
        await _write(conn, _INSERT_MEMBER, [(self.list_id, c) for c in ids.values()])

    def _shared_evidence(self, now: float) -> tuple:
        """The evidence values every row of the batch shares (`_evidence_values`)."""
        uploaded_at = datetime.fromtimestamp(now, TZ).isoformat(timespec="seconds")
        return (uploaded_at, self.source.filename, self.source.uploader,
                self.source.consent_text)

    def _events(self, consents: list[tuple]) -> list[ConsentEvent]:
        sealed = self.sealer.seal_many([evidence for *_, evidence in consents])
        return [ConsentEvent(
            address_index=index, consent_type=PHONE_CONSENT_TYPE, status=row.consent,
            # The file's name and a free-text source are the business's own text: only in
            # the sealed evidence; an İYS source code stays readable.
            source=readable_source(row.consent_source, IMPORT_SOURCE),
            recipient_type=row.recipient_type, occurred_at=occurred, evidence_sealed=blob)
            for (row, index, occurred, _), blob in zip(consents, sealed, strict=True)]


# What a consent's sealed evidence holds, in this order; consent_text only when the business
# gave the statement people were shown.
EVIDENCE_KEYS = ("statement", "address", "channel", "source", "consent_date", "date_source",
                 "uploaded_at", "file", "row", "uploader")


def _evidence_values(row: ContactRow, shared: tuple) -> tuple:
    """EVIDENCE_KEYS' values for one row. Without a date in the file the consent is dated at
    the upload, and says so."""
    uploaded_at, filename, uploader, consent_text = shared
    values = (f"consent column: {row.consent}", row.phone, "import", row.consent_source or "",
              row.consent_date or "", "file" if row.consent_date else "upload", uploaded_at,
              filename, row.line, uploader)
    return (*values, consent_text) if consent_text else values


def _evidence_object(with_consent_text: bool) -> _JsonObject:
    return _json_object(EVIDENCE_KEYS + (("consent_text",) if with_consent_text else ()))


# json.dumps' own string encoder (the C one when available), as it runs with ensure_ascii=False.
_json_str = json.encoder.encode_basestring


class _JsonObject:
    """json.dumps(dict(zip(keys, values)), ensure_ascii=False) for one fixed list of keys,
    with the keys encoded once: an import encodes two such objects per row (its attributes,
    its consent evidence), and json.dumps' generic path was a fifth of the per-row cost.
    Values are str or int (the tests compare the two on random input)."""

    def __init__(self, keys: tuple[str, ...]):
        self._heads = [("{" if i == 0 else ", ") + _json_str(k) + ": " for i, k in enumerate(keys)]

    def encode(self, values: Iterable[str | int]) -> bytes:
        parts = [head + (_json_str(v) if type(v) is str else _json_int(v))
                 for head, v in zip(self._heads, values, strict=True)]
        return ("".join(parts) + "}").encode() if parts else b"{}"


def _json_int(value: int) -> str:
    # json.dumps writes an int as int.__repr__ does; its generic path costs 5 µs a call.
    if type(value) is not int:
        raise TypeError(f"not a str or int: {type(value).__name__}")
    return int.__repr__(value)


@functools.lru_cache(maxsize=64)
def _json_object(keys: tuple[str, ...]) -> _JsonObject:
    return _JsonObject(keys)


# A concurrent import may have created the contact a moment ago: then it is left as it is.
_INSERT_CONTACT = (
    "INSERT INTO contacts (id, tenant_id, address_index, address_sealed, name_sealed, "
    "attributes_sealed, recipient_type, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (tenant_id, address_index) DO NOTHING")
# Empty cells keep what the contact had. An erased person's row never gets here (skipped);
# erased_at is cleared for one whose own new consent ended the erasure (optout.refusals).
_UPDATE_CONTACT = (
    "UPDATE contacts SET address_sealed = ?, name_sealed = COALESCE(?, name_sealed), "
    "attributes_sealed = COALESCE(?, attributes_sealed), recipient_type = ?, updated_at = ?, "
    "erased_at = NULL WHERE id = ?")
_INSERT_MEMBER = ("INSERT INTO list_members (list_id, contact_id) VALUES (?, ?) "
                  "ON CONFLICT (list_id, contact_id) DO NOTHING")


# PostgreSQL: the same statements reading a batch from one array per column (store.raw);
# asyncpg's executemany runs a statement per row, these run one per batch.
_PG_BATCH_SQL = {
    _INSERT_CONTACT: raw.from_arrays(_INSERT_CONTACT, ("text", "text", "bytea", "bytea", "bytea",
                                                       "bytea", "text", "float8", "float8")),
    _UPDATE_CONTACT: (
        "UPDATE contacts SET address_sealed = u.address_sealed, "
        "name_sealed = COALESCE(u.name_sealed, contacts.name_sealed), "
        "attributes_sealed = COALESCE(u.attributes_sealed, contacts.attributes_sealed), "
        "recipient_type = u.recipient_type, updated_at = u.updated_at, erased_at = NULL "
        "FROM unnest(?::bytea[], ?::bytea[], ?::bytea[], ?::text[], ?::float8[], ?::text[]) "
        "AS u(address_sealed, name_sealed, attributes_sealed, recipient_type, updated_at, id) "
        "WHERE contacts.id = u.id"),
    _INSERT_MEMBER: raw.from_arrays(_INSERT_MEMBER, ("text", "text")),
}


async def _write(conn, sql: str, rows: list[tuple]) -> None:
    await raw.execute_batch(conn, sql, rows, _PG_BATCH_SQL[sql])


def _unrefused(batch: _Prepared, refused: set[bytes], erased: set[bytes],
               counts: BatchCounts) -> list[dict]:
    """The batch's ledger rows that may be recorded: none for an erased person, and no consent
    for a person who refused since (stored), or whom the file itself shows refusing earlier."""
    refused_in_file: dict[bytes, float] = {}
    for row in batch.events:
        if row["status"] == ledger.REVOKED:
            index, at = row["address_index"], row["occurred_at"]
            refused_in_file[index] = min(at, refused_in_file.get(index, at))
    kept = []
    for row, (line, undated) in zip(batch.events, batch.event_lines, strict=True):
        index = row["address_index"]
        if index in erased:
            continue
        if row["status"] == ledger.GRANTED and (
                index in refused or row["occurred_at"] >= refused_in_file.get(index, math.inf)):
            counts.skip(line, REFUSED_EARLIER)
            continue
        kept.append(row)
        counts.undated += undated
    return kept


def _occurred_at(row: ContactRow, now: float) -> float | None:
    """When the consent was given: the file's date if it has one (never in the future), else
    the upload's whole second — people's replies are dated in whole seconds (optout.order), and
    a STOP of the same second must win over the upload, not lose to its fraction."""
    if row.consent is None or not row.consent_date:
        return float(math.floor(now))
    parsed = parse_consent_date(row.consent_date)
    if parsed is None or parsed.timestamp() > now + 60:
        return None
    return parsed.timestamp()


async def _existing_ids(conn, tenant_id: str, indexes: list[bytes]) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for start in range(0, len(indexes), 5000):
        # One array parameter on PostgreSQL: one plan whatever the batch size.
        among, params = raw.among(conn, "address_index", indexes[start:start + 5000], "bytea")
        rows = await raw.fetch(conn, "SELECT address_index, id FROM contacts WHERE tenant_id = ? "
                                     f"AND {among}", (tenant_id, *params))
        found.update({bytes(r[0]): r[1] for r in rows})
    return found


async def add_subscriber(conn: AsyncConnection, tenant_id: str, line_id: str, index: bytes,
                         address_sealed: bytes) -> str | None:
    """Someone who opted in on a channel itself (a Telegram consent tap) joins the list of the
    line's subscribers, created on first use; returns the list id. The list is found by the
    line's id (names are sealed: none can be matched while locked) and has no sealed name of
    its own: it reads as "Telegram: <line name>". Their consent ended an older erasure
    (optout.refusals), so an erased contact comes back; None, adding nothing, when an
    erasure still stands (one made in the consent's own second)."""
    if await refusals.erased(conn, tenant_id, index):
        return None
    rows = await raw.fetch(conn, "SELECT id FROM contact_lists WHERE tenant_id = ? AND "
                                 "subscribers_of = ? ORDER BY created_at, id", (tenant_id, line_id))
    if rows:
        list_id = rows[0][0]
    else:
        list_id = str(uuid.uuid4())
        await conn.execute(contact_lists.insert().values(
            id=list_id, tenant_id=tenant_id, subscribers_of=line_id, created_at=time.time()))
    return await join_list(conn, tenant_id, list_id, index, address_sealed)


async def join_list(conn: AsyncConnection, tenant_id: str, list_id: str, index: bytes,
                    address_sealed: bytes) -> str | None:
    """Someone who opted in on a channel joins the list `list_id` (a Telegram invite's), as a
    contact sealed like every other; `add_subscriber`'s rules on erasure. None, adding
    nothing, when an erasure still stands."""
    if await refusals.erased(conn, tenant_id, index):
        return None
    now = time.time()
    await raw.execute(conn, _SUBSCRIBE_CONTACT, (new_id(), tenant_id, index, address_sealed,
                                                 None, None, "individual", now, now))
    ids = await _existing_ids(conn, tenant_id, [index])
    await raw.execute(conn, _INSERT_MEMBER, (list_id, ids[index]))
    return list_id


_SUBSCRIBE_CONTACT = (
    _INSERT_CONTACT.removesuffix("DO NOTHING")
    + "DO UPDATE SET address_sealed = excluded.address_sealed, erased_at = NULL, "
      "updated_at = excluded.updated_at WHERE contacts.erased_at IS NOT NULL")


async def fold_members(conn, limit: int = raw.FOLD_BATCH) -> int:
    """Folds up to `limit` list-membership moves into contact_lists.members, in the caller's
    transaction (each move once: `raw.take_oldest`); lists are updated in id order so
    concurrent folds cannot deadlock."""
    moves = await raw.take_oldest(conn, "list_member_moves", "list_id, delta", limit)
    per_list: dict[str, int] = {}
    for list_id, delta in moves:
        per_list[list_id] = per_list.get(list_id, 0) + int(delta)
    await raw.execute_many(conn, "UPDATE contact_lists SET members = members + ? WHERE id = ?",
                           [(n, list_id) for list_id, n in sorted(per_list.items()) if n])
    return len(moves)


async def fold_counters(db: Database) -> int:
    """Folds every waiting move — campaign counters, then list sizes — a batch per short
    transaction; how many moves."""
    return (await raw.in_batches(db, outbox.fold)
            + await raw.in_batches(db, fold_members))


def members_column():
    """A list's size as a select column: the folded count plus the moves not folded yet
    (one statement, so one snapshot)."""
    waiting = sa.select(sa.func.coalesce(sa.func.sum(list_member_moves.c.delta), 0)).where(
        list_member_moves.c.list_id == contact_lists.c.id).scalar_subquery()
    return (contact_lists.c.members + waiting).label("members")
