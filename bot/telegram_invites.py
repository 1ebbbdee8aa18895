"""Telegram invitations: a deep link `https://t.me/<bot>?start=<token>` (and its QR code) per
contact list and Telegram line, which a business prints or posts. Pressing it sends
`/start <token>` to the bot; the consent offer it answers carries the token in its buttons, and
the tap joins the invite's list (bot.telegram_inbound). A bot cannot write to a phone number,
so this, or /start, is the only way a person becomes reachable on Telegram.

The token is random (192 bits), not derived from ids: printed on a poster it names no list and
no business account, and nobody can guess another business's invite."""
from __future__ import annotations

import io
import re
import secrets
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.telegram import TelegramChannel, TelegramLineError
from campaigns.audiences import list_exists
from campaigns.lines import get_line
from campaigns.ports import Line
from optout import audit
from store.engine import Database, dialect_insert
from store.tables import telegram_invites

# Telegram's start parameter: up to 64 characters of A-Z, a-z, 0-9, _ and -. Ours are 32
# (token_urlsafe(24)), short enough to also ride in a button's 64-byte callback data.
TOKEN_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_BYTES = 24
# A bot's username as Telegram allows it (5-32 characters, ends in "bot"; checked loosely so a
# username Telegram issues is never refused, but nothing else reaches a link).
_USERNAME = re.compile(r"[A-Za-z0-9_]{3,64}")


class InviteError(ValueError):
    """Why an invite cannot be made or shown; `code` is stable, the message safe to show."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Invite:
    id: str
    token: str
    tenant_id: str
    line_id: str
    list_id: str
    bot_username: str
    created_at: float
    revoked_at: float | None = None

    @property
    def link(self) -> str:
        return f"https://t.me/{self.bot_username}?start={self.token}"

    def evidence(self) -> dict:
        """What a consent given through this invite records about it (sealed with it)."""
        return {"id": self.id, "token": self.token, "list_id": self.list_id,
                "line_id": self.line_id, "link": self.link}


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def qr_svg(link: str) -> bytes:
    """The link as a QR code, SVG (scales to any print size). Error correction M survives a
    crease or a smudge on a poster; the 4-module quiet zone is what scanners expect."""
    import segno
    out = io.BytesIO()
    segno.make(link, error="m", micro=False).save(
        out, kind="svg", scale=8, border=4, xmldecl=False, title="Telegram", unit="px")
    return out.getvalue()


def _invite(row) -> Invite:
    return Invite(id=row.id, token=row.token, tenant_id=row.tenant_id, line_id=row.line_id,
                  list_id=row.list_id, bot_username=row.bot_username,
                  created_at=row.created_at, revoked_at=row.revoked_at)


async def active(conn: AsyncConnection, tenant_id: str, list_id: str,
                 line_id: str | None = None) -> list[Invite]:
    """The list's invites not revoked (one per line at most), oldest first."""
    q = sa.select(telegram_invites).where(telegram_invites.c.tenant_id == tenant_id,
                                          telegram_invites.c.list_id == list_id,
                                          telegram_invites.c.revoked_at.is_(None))
    if line_id is not None:
        q = q.where(telegram_invites.c.line_id == line_id)
    return [_invite(r) for r in (await conn.execute(q.order_by(
        telegram_invites.c.created_at, telegram_invites.c.id))).all()]


async def by_token(conn: AsyncConnection, token: str, line: Line) -> Invite | None:
    """The active invite `token` names for `line`; None for anything else (unknown, revoked,
    another bot's), which then gets the plain /start behaviour."""
    if not isinstance(token, str) or not TOKEN_FORMAT.fullmatch(token):
        return None
    row = (await conn.execute(sa.select(telegram_invites).where(
        telegram_invites.c.token == token, telegram_invites.c.revoked_at.is_(None),
        telegram_invites.c.line_id == line.id,
        telegram_invites.c.tenant_id == line.tenant_id))).first()
    return _invite(row) if row else None


async def insert(conn: AsyncConnection, tenant_id: str, list_id: str, line_id: str,
                 bot_username: str) -> tuple[Invite, bool]:
    """A new active invite, or the one a concurrent request made first (False)."""
    row = {"id": str(uuid.uuid4()), "token": new_token(), "tenant_id": tenant_id,
           "line_id": line_id, "list_id": list_id, "bot_username": bot_username,
           "created_at": time.time()}
    stmt = dialect_insert(conn, telegram_invites).values(**row).on_conflict_do_nothing(
        index_elements=["tenant_id", "list_id", "line_id"],
        index_where=telegram_invites.c.revoked_at.is_(None))
    made = (await conn.execute(stmt)).rowcount == 1
    (found,) = await active(conn, tenant_id, list_id, line_id)
    return found, made


async def revoke(conn: AsyncConnection, tenant_id: str, list_id: str,
                 line_id: str | None = None) -> list[Invite]:
    """Revokes the list's active invites (only `line_id`'s when given); the revoked ones. A
    revoked link then opens the plain consent offer, joining no list."""
    found = await active(conn, tenant_id, list_id, line_id)
    if found:
        await conn.execute(telegram_invites.update().where(
            telegram_invites.c.id.in_([i.id for i in found])).values(revoked_at=time.time()))
    return found


class TelegramInvites:
    """The application service the API and the dashboard share."""

    def __init__(self, db: Database, channel: TelegramChannel):
        self.db, self.channel = db, channel

    async def create(self, tenant_id: str, list_id: str, line_id: str, actor: str
                     ) -> tuple[Invite, bool]:
        """The list's active invite for the line, made now (True) unless one exists (False):
        a printed link keeps working until it is revoked."""
        line = await self._line(tenant_id, list_id, line_id)
        async with self.db.connect() as conn:
            existing = await active(conn, tenant_id, list_id, line_id)
        if existing:
            return existing[0], False
        username = await self._username(line)
        async with self.db.begin() as conn:
            invite, made = await insert(conn, tenant_id, list_id, line_id, username)
            if made:
                await audit.record(conn, tenant_id, actor, "telegram_invite.create",
                                   invite_id=invite.id, list_id=list_id, line_id=line_id)
        return invite, made

    async def find(self, tenant_id: str, list_id: str, line_id: str | None) -> Invite:
        """The list's active invite (for `line_id`, or its only one); 404 when none."""
        async with self.db.connect() as conn:
            if not await list_exists(conn, tenant_id, list_id):
                raise InviteError(404, "not_found", "no such list")
            found = await active(conn, tenant_id, list_id, line_id)
        if not found:
            raise InviteError(404, "not_found", "this list has no active Telegram invite"
                              + (" for that line" if line_id else ""))
        if len(found) > 1:
            raise InviteError(400, "missing_field", "this list has invites on several "
                                                    "Telegram lines: give 'line_id'")
        return found[0]

    async def listed(self, tenant_id: str, list_id: str) -> list[Invite]:
        async with self.db.connect() as conn:
            return await active(conn, tenant_id, list_id)

    async def revoke(self, tenant_id: str, list_id: str, line_id: str | None,
                     actor: str) -> list[Invite]:
        async with self.db.begin() as conn:
            if not await list_exists(conn, tenant_id, list_id):
                raise InviteError(404, "not_found", "no such list")
            revoked = await revoke(conn, tenant_id, list_id, line_id)
            for invite in revoked:
                await audit.record(conn, tenant_id, actor, "telegram_invite.revoke",
                                   invite_id=invite.id, list_id=list_id,
                                   line_id=invite.line_id)
        return revoked

    async def _line(self, tenant_id: str, list_id: str, line_id: str) -> Line:
        async with self.db.connect() as conn:
            if not await list_exists(conn, tenant_id, list_id):
                raise InviteError(404, "not_found", "no such list")
            line = await get_line(conn, tenant_id, line_id)
        if line is None:
            raise InviteError(404, "not_found", "no such line")
        if line.channel != "telegram":
            raise InviteError(400, "not_telegram", "invite links are for Telegram lines; this "
                                                   f"line is {line.channel}")
        return line

    async def _username(self, line: Line) -> str:
        try:
            username = await self.channel.bot_username(line)
        except TelegramLineError as exc:
            raise InviteError(502, "telegram_unavailable",
                              f"Telegram did not tell the bot's username ({exc.code}); check "
                              "the line's bot token and try again") from None
        if not username or not _USERNAME.fullmatch(username):
            raise InviteError(502, "telegram_unavailable",
                              "Telegram gave this bot no username usable in a t.me link")
        return username
