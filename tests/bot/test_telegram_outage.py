"""Telegram long polling through a database outage: the poller survives it, and an update that
could not be stored (a STOP) is not confirmed to Telegram, so it comes again and lands."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bot.telegram_inbound import TelegramPoller
from campaigns.ports import Line
from store.faults import DatabaseUnavailableError

LINE = Line(id="tg-line", tenant_id="tenant-1", channel="telegram", name="bot",
            rate_per_second=25.0, state="active")
STOP = {"update_id": 7, "message": {"message_id": 1, "date": 0, "text": "/stop",
                                    "chat": {"id": 42, "type": "private"}}}


class BotApi:
    """Keeps updates until an offset past them confirms them, as Telegram does."""

    def __init__(self, updates: list[dict]):
        self.updates = updates

    async def poll(self, line: Line, offset: int | None, timeout: float) -> list[dict]:
        if offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates:
            await asyncio.sleep(0.05)
        return list(self.updates)


async def test_stop_polled_during_an_outage_is_redelivered_and_lands():
    api = BotApi([STOP])
    handled: list[int] = []
    outage = {"lines": 1, "handle": 2}

    async def handle(line: Line, update: dict) -> None:
        if outage["handle"]:
            outage["handle"] -= 1
            raise DatabaseUnavailableError("unreachable")
        handled.append(update["update_id"])

    async def lines() -> list[Line]:
        if outage["lines"]:
            outage["lines"] -= 1
            raise DatabaseUnavailableError("unreachable")
        return [LINE]
    poller = TelegramPoller(SimpleNamespace(channel=api, handle=handle), lines, timeout=25)
    task = asyncio.create_task(poller.run(every=0.1))
    try:
        for _ in range(100):
            if handled and not api.updates:
                break
            await asyncio.sleep(0.05)
        survived = not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await poller.stop()
    assert survived  # the poller itself lived through the outage
    assert handled == [7]  # once, after the database came back
    assert api.updates == []  # confirmed only then
