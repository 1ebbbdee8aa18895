"""Contact lists, CSV imports, one contact's details and browsing a list — what the JSON API
(dashboard.api.audience) and the contacts pages both do. Names, numbers and attributes are
sealed: reading them needs the vault unlocked (VaultLockedError otherwise). Refusals are
ServiceError (dashboard.services) and campaigns.audiences.AudienceError."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import BinaryIO

import sqlalchemy as sa

from campaigns import audiences
from campaigns.audiences import (
    MAX_CONSENT_TEXT,
    PHONE_CONSENT_TYPE,
    ImportSource,
    create_list,
    list_exists,
)
from campaigns.csvparse import CsvFormatError
from crypto.errors import VaultLockedError
from dashboard.inputs import clean_text
from dashboard.keys import db_key, directory_key, fields_key, importer_key
from dashboard.services import Context, ServiceError, ServiceNotFoundError
from dashboard.services.names import list_names, shown
from dashboard.services.values import address_param, iso
from optout import audit
from store.tables import (
    consent_state,
    contact_lists,
    contacts,
    list_member_moves,
    list_members,
)

PAGE_SIZE = 50
# The consent states a list can be browsed by ("none": no consent recorded).
CONSENT_FILTERS = ("granted", "revoked", "none")


def consent_text_param(value: str | None) -> str:
    """The consent statement people were shown, as given with an import (the API's query
    parameter, the dashboard form's field): trimmed, at most MAX_CONSENT_TEXT characters."""
    text = clean_text((value or "").strip())
    if len(text) > MAX_CONSENT_TEXT:
        raise ServiceError("invalid_field",
                       f"'consent_text' is over {MAX_CONSENT_TEXT} characters")
    return text


async def lists(ctx: Context) -> list[dict]:
    """The tenant's contact lists with their member counts and CSV columns, oldest first.
    Names are opened while unlocked; locked, each is None with "name_locked": true."""
    q = sa.select(contact_lists.c.id, contact_lists.c.name_sealed,
                  contact_lists.c.subscribers_of, contact_lists.c.created_at,
                  contact_lists.c.columns, audiences.members_column()).where(
        contact_lists.c.tenant_id == ctx.tenant_id).order_by(contact_lists.c.created_at)
    async with ctx[db_key].connect() as conn:
        rows = list(await conn.execute(q))
    names = await list_names(ctx, rows)
    return [{"id": r.id, **shown(None if names is None else names[i], names is None),
             "members": int(r.members), "created_at": r.created_at,
             "columns": list(r.columns or [])} for i, r in enumerate(rows)]


async def new_list(ctx: Context, name: str) -> dict:
    """{id, name, created_at}; AudienceError for a name that is empty or too long."""
    async with ctx[db_key].begin() as conn:
        return await create_list(conn, ctx.tenant_id, name)


async def check_list(ctx: Context, list_id: str) -> None:
    """ServiceNotFoundError unless the tenant has the list."""
    async with ctx[db_key].connect() as conn:
        if not await list_exists(conn, ctx.tenant_id, list_id):
            raise ServiceNotFoundError("no such list")


async def _drop_list(ctx: Context, list_id: str) -> None:
    """Removes a list this import created (with whatever it added to it)."""
    async with ctx[db_key].begin() as conn:
        await conn.execute(list_members.delete().where(list_members.c.list_id == list_id))
        await conn.execute(list_member_moves.delete().where(
            list_member_moves.c.list_id == list_id))
        await conn.execute(contact_lists.delete().where(
            contact_lists.c.tenant_id == ctx.tenant_id, contact_lists.c.id == list_id))


@dataclass(frozen=True)
class Imported:
    result: dict  # the API's import result (IMPORT_RESULT_SCHEMA)
    list_id: str | None  # the list imported into (None: none, or the new one was removed)


async def import_csv(ctx: Context, spool: BinaryIO, filename: str, consent_text: str = "",
                     list_id: str | None = None, new_list_name: str | None = None
                     ) -> Imported:
    """Imports a CSV already spooled to `spool` (its position at the end of what was written)
    into `list_id`, into a new list named `new_list_name`, or into no list. A new list is
    created only for the import and removed again when the import fails or nothing of the
    file landed: a failed import leaves no empty list behind. ServiceError: empty_file,
    not_found (no such list), invalid_csv, …"""
    if spool.tell() == 0:
        raise ServiceError("empty_file", "the request body is empty: send the CSV file")
    created = None
    if list_id is not None:
        await check_list(ctx, list_id)
    elif new_list_name is not None:
        created = list_id = (await new_list(ctx, new_list_name))["id"]
    spool.seek(0)
    # A header or a multipart part can carry NUL or undecodable bytes: stored as text, cleaned.
    source = ImportSource(filename=clean_text(filename)[:200] or "upload.csv",
                          uploader=ctx.actor, consent_text=consent_text)
    try:
        result = await ctx[importer_key].run(ctx.tenant_id, list_id, spool, source)
    except CsvFormatError as exc:
        if created is not None:
            await _drop_list(ctx, created)
        raise ServiceError(getattr(exc, "code", "invalid_csv"), str(exc)) from None
    except BaseException:
        if created is not None:
            await _drop_list(ctx, created)
        raise
    if created is not None and result.imported + result.updated == 0:
        await _drop_list(ctx, created)  # nothing landed: no empty list left behind
        list_id = None
    await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "contacts.import",
                      list_id=list_id, imported=result.imported, updated=result.updated,
                      invalid=result.invalid_total, kept_refusal=result.kept_refusal,
                      undated=result.undated, erased=result.erased,
                      consent_text=bool(consent_text))
    return Imported(result.as_json(), list_id)


async def contact(ctx: Context, raw_address: str | None, channel: str = "sandbox") -> dict:
    """One contact's details (name, attributes, lists), opened: VaultLockedError while
    locked; ServiceNotFoundError when there is no such contact."""
    address = address_param(raw_address, channel, "address")
    async with ctx[db_key].connect() as conn:
        index = (await ctx[directory_key].indexer(conn, ctx.tenant_id))(address)
        row = (await conn.execute(sa.select(contacts).where(
            contacts.c.tenant_id == ctx.tenant_id, contacts.c.address_index == index,
            contacts.c.erased_at.is_(None)))).first()
        if row is None:
            raise ServiceNotFoundError("no contact with that address")
        joined = list(await conn.execute(sa.select(
            contact_lists.c.name_sealed, contact_lists.c.subscribers_of).join(
            list_members, list_members.c.list_id == contact_lists.c.id).where(
            list_members.c.contact_id == row.id)))
    names = await list_names(ctx, joined)
    if names is None:
        raise VaultLockedError("vault is locked")
    sealed = [bytes(b) for b in (row.name_sealed, row.attributes_sealed) if b]
    opened = iter(await ctx[fields_key].open_fields(ctx.tenant_id, sealed))
    name = next(opened).decode() if row.name_sealed else ""
    attributes = json.loads(next(opened)) if row.attributes_sealed else {}
    return {"address": address, "name": name, "attributes": attributes, "lists": names,
            "since": iso(row.created_at)}


@dataclass(frozen=True)
class Member:
    phone: str
    name: str
    consent: str  # granted | revoked | none
    since: str | None  # when they were added (ISO)


@dataclass(frozen=True)
class ListPage:
    list: dict  # {id, name, members, …}
    members: list[Member]
    page: int  # from 1
    has_next: bool
    consent: str | None  # the filter in force (CONSENT_FILTERS), None for everyone


async def browse(ctx: Context, list_id: str, page: int = 1, consent: str | None = None,
                 size: int = PAGE_SIZE) -> ListPage:
    """A page of a list's members, opened (VaultLockedError while locked), in the order they
    were added; `consent` keeps only those whose phone consent is in that state.
    ServiceNotFoundError for an unknown list, invalid_field for an unknown filter."""
    if consent is not None and consent not in CONSENT_FILTERS:
        raise ServiceError("invalid_field",
                       f"'consent' must be one of {', '.join(CONSENT_FILTERS)}")
    page = max(1, page)
    found = next((item for item in await lists(ctx) if item["id"] == list_id), None)
    if found is None:
        raise ServiceNotFoundError("no such list")
    state = consent_state.c.status
    q = (sa.select(contacts.c.address_sealed, contacts.c.name_sealed, contacts.c.created_at,
                   state.label("status"))
         .select_from(list_members.join(contacts, contacts.c.id == list_members.c.contact_id)
                      .outerjoin(consent_state, sa.and_(
                          consent_state.c.tenant_id == contacts.c.tenant_id,
                          consent_state.c.address_index == contacts.c.address_index,
                          consent_state.c.consent_type == PHONE_CONSENT_TYPE)))
         .where(list_members.c.list_id == list_id, contacts.c.tenant_id == ctx.tenant_id,
                contacts.c.erased_at.is_(None)))
    if consent == "none":
        q = q.where(state.is_(None))
    elif consent is not None:
        q = q.where(state == consent)
    q = q.order_by(contacts.c.created_at, contacts.c.id).limit(size + 1).offset(
        (page - 1) * size)
    async with ctx[db_key].connect() as conn:
        rows = list(await conn.execute(q))
    rows, has_next = rows[:size], len(rows) > size
    blobs = [bytes(b) for r in rows for b in (r.address_sealed, r.name_sealed) if b]
    opened = iter(await ctx[fields_key].open_fields(ctx.tenant_id, blobs) if blobs else [])
    members = []
    for r in rows:
        phone = next(opened).decode()
        name = next(opened).decode() if r.name_sealed else ""
        members.append(Member(phone, name, r.status or "none", iso(r.created_at)))
    return ListPage(found, members, page, has_next, consent)
