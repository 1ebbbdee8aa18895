"""Managing a tenant's sending lines — add, edit (name, rate, tier, a token rotation), pause,
resume, archive, delete — as the API, the dashboard and the CLI do it, driven by each
channel's description (bot.registry). Changes are audited without their secrets and announced
on the bus, so every process drops what it caches of the line."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot import registry
from bot.credentials import CredentialStore
from bot.registry import ChannelSpec, LineHooks
from campaigns.lines import (
    ARCHIVED,
    LineDeleteError,
    LineInputError,
    LineNotFoundError,
    LineStateError,
    add_provider_line,
    archive_line,
    check_rate,
    delete_line,
    get_line,
    line_by_id,
    set_line_state,
    update_line,
)
from campaigns.ports import Line
from optout import audit
from store.bus import Bus
from store.engine import Database

log = logging.getLogger(__name__)
LINE_GONE_TOPIC = "line.gone"  # bus: the id of a deleted line
LINE_CHANGED_TOPIC = "line.changed"  # bus: the id of a line edited, paused, resumed, archived
OWNER_PAUSE = "paused by owner"
COMMON_FIELDS = ("name", "rate_per_second")

__all__ = ["LineDeleteError", "LineInputError", "LineNotFoundError", "LineStateError"]


@dataclass(frozen=True)
class Resumed:
    line: Line
    previous_reason: str | None  # why it was paused (a provider's signal, the owner…)


def check_name(name: Any) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 200:
        raise LineInputError("'name' must be 1 to 200 characters", "invalid_field")
    return name


class LineAdmin:
    def __init__(self, db: Database, credentials: CredentialStore, bus: Bus,
                 channels: dict | None = None, public_url: str | None = None):
        self.db, self.credentials, self.bus = db, credentials, bus
        # None (the CLI): no provider is told anything, e.g. of a new Telegram webhook.
        self.channels, self.public_url = channels, public_url

    async def line(self, tenant_id: str, line_id: str) -> Line:
        async with self.db.connect() as conn:
            line = await get_line(conn, tenant_id, line_id)
        if line is None:
            raise LineNotFoundError("no such line")
        return line

    async def add(self, tenant_id: str, channel: str, name: str, rate: float | None,
                  values: dict) -> Line:
        """A new line; `values` holds the spec's credential and option fields by name."""
        spec = registry.get(channel)
        name = check_name(name)
        secrets = {f.name: _checked(f, values.get(f.name)) for f in spec.credentials}
        options = {}
        for f in spec.options:
            value = values.get(f.name)
            if value is not None or f.default is not None:
                options[f.name] = f.default if value is None else _checked(f, value)
        wrapped = (self.credentials.wrap(spec.credentials_json(secrets))
                   if spec.has_credentials else None)
        async with self.db.begin() as conn:
            line = await add_provider_line(conn, tenant_id, spec.name, name, rate, wrapped,
                                           options or None, (spec.default_rate, spec.max_rate))
        if spec.after_add is not None and self.channels is not None:
            await spec.after_add(self._hooks(spec), line, await self.credentials.load(line))
        return line

    async def update(self, tenant_id: str, actor: str, line_id: str, changes: dict) -> Line:
        """Name, rate (up to the channel's maximum) and the spec's editable fields; a secret
        among them is a rotation: the credentials are rewrapped, the other fields kept."""
        line = await self.line(tenant_id, line_id)
        spec = registry.get(line.channel)
        editable = {f.name: f for f in spec.credentials + spec.options if f.editable}
        unknown = sorted(set(changes) - set(editable) - set(COMMON_FIELDS))
        if unknown:
            raise LineInputError(f"'{unknown[0]}' cannot be changed; editable: "
                                 f"{', '.join([*COMMON_FIELDS, *editable])}", "unknown_field")
        if line.state == ARCHIVED:
            raise LineStateError("an archived line cannot be changed", "line_archived")
        values: dict = {}
        if "name" in changes:
            values["name"] = check_name(changes["name"])
        if "rate_per_second" in changes:
            values["rate_per_second"] = check_rate(line.channel, changes["rate_per_second"],
                                                   spec.max_rate)
        options = dict(line.options or {})
        secrets = {}
        for name, f in editable.items():
            if name in changes:
                value = _checked(f, changes[name])
                (secrets if f in spec.credentials else options)[name] = value
        if options != (line.options or {}):
            values["options"] = options
        if secrets:
            merged = await self.credentials.values(line.id) | secrets
            values["wrapped_credentials"] = self.credentials.wrap(spec.credentials_json(merged))
        async with self.db.begin() as conn:
            await update_line(conn, line.id, **values)
            await audit.record(conn, tenant_id, actor, "line.update", line_id=line.id,
                               channel=line.channel, fields=sorted(changes),
                               **{k: v for k, v in changes.items() if k in _SHOWN})
            await self.bus.publish(conn, LINE_CHANGED_TOPIC, line.id)
        await self._changed(spec, line.id, rotated=bool(secrets))
        return await self.line(tenant_id, line.id)

    async def pause(self, tenant_id: str, actor: str, line_id: str) -> Line:
        line = await self.line(tenant_id, line_id)
        if line.state == ARCHIVED:
            raise LineStateError("an archived line cannot be paused or resumed",
                                 "line_archived")
        if line.state != "paused":
            await self._set_state(line, actor, "paused", OWNER_PAUSE, "line.pause")
        return await self.line(tenant_id, line.id)

    async def resume(self, tenant_id: str, actor: str, line_id: str) -> Resumed:
        """A paused line sends again, whoever paused it (the owner, or the provider: WhatsApp
        131048 / 368, a quality warning); the reason it was paused is returned."""
        line = await self.line(tenant_id, line_id)
        if line.state == ARCHIVED:
            raise LineStateError("an archived line cannot be resumed", "line_archived")
        if line.state == "paused":
            await self._set_state(line, actor, "active", None, "line.resume",
                                  previous_reason=line.state_reason)
        return Resumed(await self.line(tenant_id, line.id), line.state_reason)

    async def archive(self, tenant_id: str, actor: str, line_id: str) -> tuple[Line, list[str]]:
        """The line stops sending for good but stays listed; campaigns still expecting to
        send on it are paused ("line archived"). Returns the line and those campaigns."""
        line = await self.line(tenant_id, line_id)
        paused: list[str] = []
        if line.state != ARCHIVED:
            async with self.db.begin() as conn:
                paused = await archive_line(conn, line)
                await audit.record(conn, tenant_id, actor, "line.archive", line_id=line.id,
                                   channel=line.channel, paused_campaigns=paused)
                await self.bus.publish(conn, LINE_CHANGED_TOPIC, line.id)
            await self._changed(registry.get(line.channel), line.id)
        return await self.line(tenant_id, line.id), paused

    async def delete(self, tenant_id: str, actor: str, line_id: str) -> int:
        """Deletes the line (campaigns.lines.delete_line says when it may); returns how many
        drafts were cancelled. The provider is told after the commit (Telegram: its webhook
        is removed) with the credentials read before they are destroyed."""
        line = await self.line(tenant_id, line_id)
        spec = registry.get(line.channel)
        credentials = None
        if spec.after_delete is not None and self.channels is not None and self.public_url:
            try:
                credentials = await self.credentials.load(line)
            except Exception as exc:  # unreadable credentials: nothing to tell it with
                log.warning("provider cannot be told of the deletion", extra={
                    "line_id": line.id, "error": type(exc).__name__})
        async with self.db.begin() as conn:
            drafts = await delete_line(conn, line)
            await audit.record(conn, tenant_id, actor, "line.delete", line_id=line.id,
                               channel=line.channel, cancelled_drafts=drafts)
        if credentials is not None:
            await spec.after_delete(self._hooks(spec), line, credentials)
        self.credentials.forget(line.id)
        if spec.forget is not None and self.channels is not None:
            await spec.forget(self.channels[spec.name], line.id)
        try:  # the other processes drop theirs (the line is gone either way)
            await self.bus.announce(LINE_GONE_TOPIC, line.id)
        except Exception as exc:  # their webhook lookups then lapse within a minute
            log.warning("line deletion not announced", extra={"line_id": line.id,
                                                              "error": type(exc).__name__})
        return drafts

    async def _set_state(self, line: Line, actor: str, state: str, reason: str | None,
                         action: str, **detail) -> None:
        async with self.db.begin() as conn:
            await set_line_state(conn, line.id, state, reason)
            await audit.record(conn, line.tenant_id, actor, action, line_id=line.id,
                               channel=line.channel, **detail)
            await self.bus.publish(conn, LINE_CHANGED_TOPIC, line.id)
        await self._changed(registry.get(line.channel), line.id)

    async def _changed(self, spec: ChannelSpec, line_id: str, rotated: bool = False) -> None:
        # Also here, after the commit: on SQLite the bus delivered inside the transaction,
        # and a send in between may have cached the old credentials again.
        self.credentials.forget(line_id)
        if rotated and spec.after_add is not None and self.channels is not None:
            async with self.db.connect() as conn:
                line = await line_by_id(conn, line_id)
            if line is not None:  # e.g. Telegram: the webhook again, with the new token
                await spec.after_add(self._hooks(spec), line, await self.credentials.load(line))

    def _hooks(self, spec: ChannelSpec) -> LineHooks:
        return LineHooks(channel=self.channels[spec.name], public_url=self.public_url)


# What line.update audits of the new values: never a secret.
# (The name is the business's own text, sealed: only "name" in `fields` says it changed.)
_SHOWN = ("rate_per_second", "messaging_tier", "waba_id")


def _checked(f, value):
    if value is None or (isinstance(value, str) and not value.strip()):
        if f.required:
            raise LineInputError(f"'{f.name}' is required", "missing_field")
        return None
    try:
        return f.validate(value)
    except ValueError as exc:
        raise LineInputError(str(exc), "invalid_field") from None
