"""Provider credentials of lines: stored wrapped by the operator master key, unwrapped on
demand and kept in memory per line (webhooks and sends need them while the vault is locked)."""
from __future__ import annotations

import json

from bot.whatsapp import WhatsAppCredentials
from campaigns.lines import wrapped_credentials
from campaigns.ports import Line
from crypto.master import MasterKey
from optout.outbound import drop_stored_addresses
from store.engine import Database
from store.tables import lines


class CredentialStore:
    def __init__(self, db: Database, master: MasterKey):
        self._db, self._master = db, master
        self._cache: dict[str, bytes] = {}

    def wrap(self, plaintext_json: bytes | str) -> bytes:
        if isinstance(plaintext_json, str):
            plaintext_json = plaintext_json.encode()
        return self._master.wrap(plaintext_json)

    async def _json(self, line_id: str) -> bytes:
        found = self._cache.get(line_id)
        if found is None:
            async with self._db.connect() as conn:
                blob = await wrapped_credentials(conn, line_id)
            if blob is None:
                raise LookupError("line has no credentials")
            found = self._cache[line_id] = self._master.unwrap(blob)
        return found

    async def load(self, line: Line):
        """The line's credentials as its channel's adapter reads them (bot.registry)."""
        from bot import registry
        parse = registry.get(line.channel).parse_credentials
        if parse is None:
            raise LookupError("line has no credentials")
        return parse(await self._json(line.id))

    async def values(self, line_id: str) -> dict:
        """The stored credential fields (a token rotation keeps the others)."""
        found = json.loads(await self._json(line_id))
        return found if isinstance(found, dict) else {}

    async def whatsapp(self, line: Line) -> WhatsAppCredentials:
        return await self.load(line)

    async def telegram(self, line: Line):
        return await self.load(line)

    def forget(self, line_id: str) -> None:
        self._cache.pop(line_id, None)

    async def drop_stored_addresses(self) -> int:
        """Once, at start-up: rewraps credentials stored with a tenant's base_url without it
        (migration 0014 marked them; it cannot open them without the master key)."""
        return await drop_stored_addresses(
            self._db, self._master.unwrap, self._master.wrap, lines, lines.c.id,
            lines.c.wrapped_credentials, lines.c.credentials_format)
