"""One Telegram poller per bot across processes: pollers sharing a database through polling
leases (campaigns.leases.Keeper) poll each bot from one of them only, and a poller that stops
hands its bots over at once."""
from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

from bot.telegram_inbound import TelegramPoller
from campaigns.leases import Keeper
from campaigns.ports import Line

LINES = [Line(id=f"tg-{i}", tenant_id="tenant-1", channel="telegram", name="bot",
              rate_per_second=25.0, state="active") for i in range(3)]


class BotApi:
    """Counts getUpdates calls by (poller, bot)."""

    def __init__(self, name: str, calls: Counter):
        self.name, self.calls = name, calls

    async def poll(self, line: Line, offset: int | None, timeout: float) -> list[dict]:
        self.calls[(self.name, line.id)] += 1
        await asyncio.sleep(0.02)
        return []


async def _lines() -> list[Line]:
    return LINES


async def _handle(line: Line, update: dict) -> None:
    raise AssertionError("no updates are sent")


async def test_each_bot_is_polled_by_one_process_and_handed_over_on_stop(db):
    if db.dialect != "postgresql":  # SQLite serves one process: the app polls without leases
        pytest.skip("polling leases are used on PostgreSQL only")
    calls: Counter = Counter()
    pollers = [TelegramPoller(SimpleNamespace(channel=BotApi(name, calls), handle=_handle),
                              _lines, timeout=25, leases=Keeper(db))
               for name in ("a", "b")]
    tasks = [asyncio.create_task(p.run(every=0.1)) for p in pollers]
    try:
        await asyncio.sleep(0.6)
        polled_by = {line.id: {name for name, bot in calls if bot == line.id} for line in LINES}
        assert all(len(names) == 1 for names in polled_by.values()), polled_by
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        await pollers[0].stop()
        calls.clear()
        await asyncio.sleep(0.6)  # leases released: b takes every bot well before they expire
        assert {bot for name, bot in calls if name == "b"} == {line.id for line in LINES}
        assert not [bot for name, bot in calls if name == "a"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pollers[1].stop()
