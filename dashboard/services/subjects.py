"""KVKK data-subject requests: what is held about a person (also as an export), correcting
and erasing them, and the request log with its 30-day deadlines — what the JSON API
(dashboard.api.subjects) and the KVKK page (dashboard.pages.people) both do. Each access,
export, correction and erasure is logged as a request and audited under the context's actor.
Errors: ServiceError (invalid address, nothing to correct, no such contact), VaultLockedError."""
from __future__ import annotations

import json
from dataclasses import dataclass

from crypto.errors import VaultLockedError
from dashboard.keys import (
    db_key,
    directory_key,
    erasures_key,
    fields_key,
    inbound_key,
    keyring_key,
    watch_key,
)
from dashboard.services import Context, ServiceError, ServiceNotFoundError
from dashboard.services.values import address_param, iso
from optout import audit, subjects
from optout.subject_deadlines import due_soon


async def _index(ctx: Context, raw_address: str | None, channel: str) -> tuple[str, bytes]:
    address = address_param(raw_address, channel, "address")
    async with ctx[db_key].connect() as conn:
        index = (await ctx[directory_key].indexer(conn, ctx.tenant_id))(address)
    return address, index


async def _log_request(ctx: Context, index: bytes, kind: str) -> str:
    async with ctx[db_key].begin() as conn:
        request_id = await subjects.record_request(conn, ctx.tenant_id, index, kind, "api",
                                                   done=True)
        await audit.record(conn, ctx.tenant_id, ctx.actor, f"subject.{kind}",
                           request_id=request_id)
    return request_id


async def access(ctx: Context, raw_address: str | None, channel: str = "sandbox") -> dict:
    """What is held (KVKK art. 11), decrypted: VaultLockedError while locked."""
    address, index = await _index(ctx, raw_address, channel)
    async with ctx[db_key].connect() as conn:
        held = await subjects.holdings(conn, ctx.tenant_id, index)
    report = subjects.build_report(address, held, await ctx[fields_key].open_fields(
        ctx.tenant_id, subjects.sealed_fields(held)))
    report["request_id"] = await _log_request(ctx, index, "access")
    return report


async def _erase_later(ctx: Context, address: str) -> dict:
    backlog = ctx[inbound_key].backlog
    if backlog is None:
        raise VaultLockedError("vault is locked")
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
    async with ctx[db_key].begin() as conn:
        await backlog.keep(ctx.tenant_id, profile.public_key, "erase",
                           {"address": address, "channel": "api", "line_id": None}, conn=conn)
        await audit.record(conn, ctx.tenant_id, ctx.actor, "subject.erase_kept")
    return {"request_id": None, "erased": {}, "completed": False}


@dataclass(frozen=True)
class Export:
    request_id: str
    document: dict


async def export(ctx: Context, raw_address: str | None, channel: str = "sandbox",
                 sealed: bool = False) -> Export:
    """The person's data as a document: decrypted while unlocked; while locked (or asked
    `sealed`) sealed to the tenant key, for `izinli subject open-export`."""
    address, index = await _index(ctx, raw_address, channel)
    async with ctx[db_key].connect() as conn:
        held = await subjects.holdings(conn, ctx.tenant_id, index)
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
    blobs = subjects.sealed_fields(held)
    if sealed or not ctx[keyring_key].is_unlocked(ctx.tenant_id):
        document = subjects.sealed_export(ctx.tenant_id, profile.public_key, address, held,
                                          await ctx[fields_key].sealed_keys_for(
                                              ctx.tenant_id, blobs))
    else:
        document = subjects.build_report(address, held, await ctx[fields_key].open_fields(
            ctx.tenant_id, blobs))
        document["format"] = subjects.EXPORT_FORMAT
    return Export(await _log_request(ctx, index, "export"), document)


async def erase(ctx: Context, raw_address: str | None, channel: str = "sandbox") -> dict:
    """Erases the person; {request_id, erased (counts), completed}. While the vault is locked
    the person cannot be found (the number index is the tenant's): the request is kept sealed
    and carried out first thing at the next unlock (request_id null, completed false)."""
    try:
        _, index = await _index(ctx, raw_address, channel)
    except VaultLockedError:
        return await _erase_later(ctx, address_param(raw_address, channel, "address"))
    ctx[watch_key].note(ctx.tenant_id, index)  # before the commit: optout.watch
    async with ctx[db_key].begin() as conn:
        counts = await subjects.erase(conn, ctx.tenant_id, index)
        request_id = await subjects.record_request(conn, ctx.tenant_id, index, "erasure",
                                                   "api", done=False)
        await audit.record(conn, ctx.tenant_id, ctx.actor, "subject.erase",
                           request_id=request_id, **counts)
    completed = await ctx[erasures_key].finish(ctx.tenant_id) > 0
    return {"request_id": request_id, "erased": counts, "completed": completed}


async def correct(ctx: Context, raw_address: str | None, name: str | None = None,
                  attributes: dict | None = None, channel: str = "sandbox") -> dict:
    """KVKK art. 11(1)(d): corrects the person's name or attributes (sealed like on import)."""
    _, index = await _index(ctx, raw_address, channel)
    if name is None and attributes is None:
        raise ServiceError("missing_field", "give 'name' and/or 'attributes' to correct")
    if attributes is not None and not all(isinstance(v, str) for v in attributes.values()):
        raise ServiceError("invalid_field", "'attributes' values must be strings")
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
    sealer = await ctx[fields_key].shared_sealer(ctx.tenant_id, profile.public_key)
    async with ctx[db_key].begin() as conn:
        changed = await subjects.correct(
            conn, ctx.tenant_id, index,
            sealer.seal_field(name.encode()) if name is not None else None,
            sealer.seal_field(json.dumps(attributes, ensure_ascii=False).encode())
            if attributes is not None else None)
        if not changed:
            raise ServiceNotFoundError("no contact with that address")
        request_id = await subjects.record_request(conn, ctx.tenant_id, index, "correction",
                                                   "api", done=True)
        await audit.record(conn, ctx.tenant_id, ctx.actor, "subject.correct",
                           request_id=request_id)
    return {"request_id": request_id, "corrected": True}


async def requests(ctx: Context) -> list[dict]:
    """The request log: kind, channel, received, due and completed (ISO), due_soon."""
    async with ctx[db_key].connect() as conn:
        rows = await subjects.requests(conn, ctx.tenant_id)
    return [{"id": r.id, "kind": r.kind, "channel": r.channel,
             "received_at": iso(r.received_at), "due_at": iso(r.due_at),
             "completed_at": iso(r.completed_at),
             "due_soon": due_soon(r.due_at, r.completed_at)} for r in rows]
