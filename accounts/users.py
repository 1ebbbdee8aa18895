"""Dashboard users and their server-side sessions.

A user belongs to one tenant with a role. The login e-mail is personal data: it is found by a
master-keyed digest and stored wrapped by the master key. Passwords are Argon2id
(`nacl.pwhash`). A session is a random cookie whose BLAKE2b digest is the row key, so a database
reader cannot ride a session; it ends after 30 idle minutes or 12 hours, or when revoked."""
from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.pwhash
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from accounts import ROLES, AccountError, NotFoundError, at_least, check_role_grant
from crypto.master import MasterKey
from optout import audit
from store import raw
from store.bus import Bus
from store.engine import Database
from store.tables import tenants, users, web_sessions

IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 3600
MIN_PASSWORD = 10
# Touching last_seen on every request would make every page a write: once a minute is enough
# for a 30-minute idle limit.
TOUCH_SECONDS = 60
_KDF = {"moderate": (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                     nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE),
        "interactive": (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                        nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE),
        "min": (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)}
# A page load looks its session up once; the answer is kept this long in the process (logout,
# role changes and disabling clear it in every process when they commit: SessionCache).
CACHE_SECONDS = 5.0
SESSIONS_TOPIC = "sessions.forget"  # bus: "t:<token hash, hex>" or "u:<user id>"
# Verifying an unknown e-mail still costs one hash, so timing does not tell who has an account.
_DUMMY_HASH: dict[str, bytes] = {}


# Runs a blocking function off the event loop: asyncio.to_thread, or the web's HashSlots.run.
Runner = Callable[..., Awaitable[Any]]


class LoginError(AccountError):
    """Wrong e-mail or password (one generic message), or too many attempts."""


@dataclass(frozen=True)
class SessionUser:
    user_id: str
    tenant_id: str
    tenant_name: str
    role: str
    csrf: str
    language: str
    token_hash: bytes

    def can(self, needed: str) -> bool:
        return at_least(self.role, needed)


class SessionCache:
    """Sessions looked up in the last CACHE_SECONDS, in this process (owned by the app). The
    change that makes an entry wrong — logout, a role change, disabling a user, a language
    switch — clears it here at once and, through the bus, in every other process when its
    transaction commits. A lookup that overlapped a clear is not kept (it may have read the
    row before the change)."""

    def __init__(self, bus: Bus | None = None, seconds: float = CACHE_SECONDS,
                 size: int = 10_000):
        self._bus, self.seconds, self.size = bus, seconds, size
        self._entries: dict[bytes, tuple[float, SessionUser, float, float]] = {}
        self.generation = 0  # moves on at every clear
        if bus is not None:
            bus.subscribe(SESSIONS_TOPIC, self._announced)

    def get(self, key: bytes) -> tuple[SessionUser, float, float] | None:
        """(user, created_at, last_seen) while fresh."""
        found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] >= self.seconds:
            return None
        return found[1:]

    def put(self, key: bytes, user: SessionUser, created_at: float, last_seen: float,
            generation: int) -> None:
        """Keeps a lookup that began at `generation`, unless something was cleared since."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), user, created_at, last_seen)

    def forget(self, token_hash: bytes | None = None, user_id: str | None = None) -> None:
        self.generation += 1
        if token_hash is not None:
            self._entries.pop(token_hash, None)
        if user_id is not None:
            for key in [k for k, v in self._entries.items() if v[1].user_id == user_id]:
                self._entries.pop(key, None)

    async def announce(self, conn: AsyncConnection, token_hash: bytes | None = None,
                       user_id: str | None = None) -> None:
        """Clears here now, and in every process when `conn`'s transaction commits."""
        self.forget(token_hash, user_id)
        if self._bus is not None:
            payload = f"t:{token_hash.hex()}" if token_hash is not None else f"u:{user_id}"
            await self._bus.publish(conn, SESSIONS_TOPIC, payload)

    def _announced(self, payload: str) -> None:
        kind, _, value = payload.partition(":")
        if kind == "t":
            self.forget(token_hash=bytes.fromhex(value))
        elif kind == "u":
            self.forget(user_id=value)


def _email_key(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip()).casefold()


def email_index(master: MasterKey, email: str) -> bytes:
    return hashlib.blake2b(_email_key(email).encode(), digest_size=16,
                           key=master.derive("izinli user e-mail index")).digest()


def _token_hash(token: str) -> bytes:
    return hashlib.blake2b(token.encode(), digest_size=32).digest()


def check_email(email: str) -> str:
    email = email.strip()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 254 or " " in email:
        raise AccountError("enter a valid e-mail address", "invalid_email")
    return email


def check_password(password: str) -> str:
    password = unicodedata.normalize("NFC", password)
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters",
                           "weak_password")
    return password


def _hash_password(password: str, kdf: str) -> str:
    ops, mem = _KDF.get(kdf, _KDF["moderate"])
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=ops, memlimit=mem).decode()


def _verify(stored: bytes, password: str) -> bool:
    try:
        return nacl.pwhash.verify(stored, unicodedata.normalize("NFC", password).encode())
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError):
        return False


async def create_user(db: Database, master: MasterKey, tenant_id: str, email: str,
                      password: str, role: str, actor: str, kdf: str = "moderate", *,
                      granted_by_key: str | None = None, run: Runner = asyncio.to_thread
                      ) -> str:
    """`granted_by_key`: the role of the API key asking (None for a dashboard owner or the
    CLI); `run` runs the hash off the loop (the web passes its bounded HashSlots.run)."""
    check_role_grant(role, granted_by_key)
    email, password = check_email(email), check_password(password)
    hashed = await run(_hash_password, password, kdf)
    user_id = str(uuid.uuid4())
    async with db.begin() as conn:
        if (await conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id))
                ).first() is None:
            raise NotFoundError("no such tenant")
        index = email_index(master, email)
        if (await conn.execute(sa.select(users.c.id).where(users.c.email_index == index))
                ).first() is not None:
            raise AccountError("a user with this e-mail already exists", "email_taken")
        await conn.execute(users.insert().values(
            id=user_id, tenant_id=tenant_id, email_index=index,
            email_wrapped=master.wrap(email.encode()), password_hash=hashed, role=role,
            created_at=time.time()))
        await audit.record(conn, tenant_id, actor, "user.create", user_id=user_id, role=role)
    return user_id


async def authenticate(db: Database, master: MasterKey, email: str, password: str,
                       kdf: str = "moderate", run: Runner = asyncio.to_thread):
    """The user row for these credentials, or None (one hash is computed either way)."""
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(users).where(
            users.c.email_index == email_index(master, email),
            users.c.disabled_at.is_(None)))).first()
    if row is None:
        dummy = _DUMMY_HASH.get(kdf) or _DUMMY_HASH.setdefault(
            kdf, (await run(_hash_password, secrets.token_hex(8), kdf)).encode())
        await run(_verify, dummy, password)
        return None
    ok = await run(_verify, row.password_hash.encode(), password)
    return row if ok else None


async def verify_password(db: Database, user_id: str, password: str,
                          run: Runner = asyncio.to_thread) -> bool:
    """Re-entering the password before a sensitive action."""
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(users.c.password_hash).where(
            users.c.id == user_id))).first()
    return row is not None and await run(_verify, row.password_hash.encode(), password)


def _device_hash(device: str) -> bytes:
    return hashlib.blake2b(device.encode(), digest_size=16).digest()


async def known_device(db: Database, master: MasterKey, email: str, device: str) -> bool:
    """Whether this browser (its random device cookie, which a guesser elsewhere does not
    have) has signed in to this account before: the sign-in throttle lets it past the limits
    that guesses from other places fill up."""
    if not device or len(device) > 100:
        return False
    async with db.connect() as conn:
        return (await conn.execute(sa.select(web_sessions.c.user_id).join(
            users, users.c.id == web_sessions.c.user_id).where(
            users.c.email_index == email_index(master, email),
            web_sessions.c.device_hash == _device_hash(device)).limit(1))).first() is not None


async def start_session(db: Database, user, device: str, language: str = "tr"
                        ) -> tuple[str, bool]:
    """A new session for the user; returns (cookie token, first login from this device)."""
    token, now = secrets.token_urlsafe(32), time.time()
    device_hash = _device_hash(device)
    async with db.begin() as conn:
        known = (await conn.execute(sa.select(web_sessions.c.user_id).where(
            web_sessions.c.user_id == user.id,
            web_sessions.c.device_hash == device_hash).limit(1))).first() is not None
        await conn.execute(web_sessions.insert().values(
            token_hash=_token_hash(token), user_id=user.id, tenant_id=user.tenant_id,
            csrf=secrets.token_urlsafe(32), device_hash=device_hash, language=language,
            created_at=now, last_seen_at=now))
        await audit.record(conn, user.tenant_id, f"user:{user.id}", "user.login",
                           new_device=not known)
    return token, not known


async def session_user(db: Database, token: str, now: float | None = None,
                       cache: SessionCache | None = None) -> SessionUser | None:
    """The signed-in user of a session cookie, or None when unknown, expired or revoked."""
    if not token or len(token) > 100:
        return None
    now = time.time() if now is None else now
    key = _token_hash(token)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        user, created_at, last_seen = cached
        if now - last_seen <= TOUCH_SECONDS and now - created_at <= ABSOLUTE_SECONDS:
            return user
    generation = cache.generation if cache is not None else 0
    async with db.connect() as conn:
        row = (await conn.execute(
            sa.select(web_sessions, users.c.role, users.c.disabled_at, tenants.c.name)
            .join(users, users.c.id == web_sessions.c.user_id)
            .join(tenants, tenants.c.id == web_sessions.c.tenant_id)
            .where(web_sessions.c.token_hash == key))).first()
    if (row is None or row.revoked_at is not None or row.disabled_at is not None
            or now - row.last_seen_at > IDLE_SECONDS or now - row.created_at > ABSOLUTE_SECONDS):
        return None
    last_seen = row.last_seen_at
    if now - last_seen > TOUCH_SECONDS:
        async with db.begin() as conn:
            await raw.execute(conn, "UPDATE web_sessions SET last_seen_at = ? "
                                    "WHERE token_hash = ?", (now, key))
        last_seen = now
    user = SessionUser(row.user_id, row.tenant_id, row.name, row.role, row.csrf, row.language,
                       key)
    if cache is not None:
        cache.put(key, user, row.created_at, last_seen, generation)
    return user


async def _changed(db: Database, cache: SessionCache | None, sql: str, params: tuple,
                   token_hash: bytes) -> None:
    async with db.begin() as conn:
        await raw.execute(conn, sql, params)
        if cache is not None:
            await cache.announce(conn, token_hash)
    if cache is not None:  # again: a request here may have read the old row meanwhile
        cache.forget(token_hash)


async def end_session(db: Database, token_hash: bytes, cache: SessionCache | None = None
                      ) -> None:
    await _changed(db, cache, "UPDATE web_sessions SET revoked_at = ? WHERE token_hash = ?",
                   (time.time(), token_hash), token_hash)


async def set_language(db: Database, token_hash: bytes, language: str,
                       cache: SessionCache | None = None) -> None:
    await _changed(db, cache, "UPDATE web_sessions SET language = ? WHERE token_hash = ?",
                   (language, token_hash), token_hash)


async def list_users(db: Database, master: MasterKey, tenant_id: str) -> list[dict]:
    async with db.connect() as conn:
        rows = list(await conn.execute(sa.select(users).where(
            users.c.tenant_id == tenant_id).order_by(users.c.created_at)))
    return [{"id": r.id, "email": master.unwrap(bytes(r.email_wrapped)).decode(),
             "role": r.role, "created_at": r.created_at,
             "disabled": r.disabled_at is not None} for r in rows]


async def change_role(db: Database, tenant_id: str, user_id: str, role: str | None,
                      actor: str, cache: SessionCache | None = None) -> None:
    """New role, or `None` to disable the user (and end their sessions)."""
    if role is not None and role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}", "invalid_role")
    now = time.time()
    async with db.begin() as conn:
        if role is None:
            changed = await raw.execute(conn, "UPDATE users SET disabled_at = ? WHERE id = ? "
                                              "AND tenant_id = ?", (now, user_id, tenant_id))
            await raw.execute(conn, "UPDATE web_sessions SET revoked_at = ? WHERE user_id = ? "
                                    "AND revoked_at IS NULL", (now, user_id))
        else:
            changed = await raw.execute(conn, "UPDATE users SET role = ? WHERE id = ? AND "
                                              "tenant_id = ?", (role, user_id, tenant_id))
        if not changed:
            raise NotFoundError("no such user")
        await audit.record(conn, tenant_id, actor, "user.disable" if role is None
                           else "user.role", user_id=user_id, role=role)
        if cache is not None:
            await cache.announce(conn, user_id=user_id)
    if cache is not None:  # again: a request here may have cached the old role meanwhile
        cache.forget(user_id=user_id)


async def tenant_count(db: Database) -> int:
    async with db.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(tenants))).scalar()
