"""Timers through a database outage: a campaign that falls due while the database is away is
not lost with its one-shot timer; it is tried again a few seconds later."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import pytest

from crypto.vault import Keyring
from izinli.scheduler import DUE_RETRY_SECONDS, Timers
from optout.retention import RetentionPolicy
from store.faults import DatabaseUnavailableError


class DownDatabase:
    @asynccontextmanager
    async def begin(self):
        raise DatabaseUnavailableError("unreachable")
        yield  # pragma: no cover — an async context manager needs a yield


async def test_campaign_due_during_an_outage_is_tried_again():
    timers = Timers(DownDatabase(), Keyring(), RetentionPolicy())
    timers.scheduler.start()
    try:
        due = time.time()
        timers.campaign_due_at("c-1", due)  # fires at once, into the outage
        job = None
        for _ in range(40):
            await asyncio.sleep(0.05)
            job = timers.scheduler.get_job("campaign-c-1")
            if job is not None and job.trigger.run_date.timestamp() > due + 1:
                break
        assert job is not None, "the one-shot timer was lost"
        assert job.trigger.run_date.timestamp() == pytest.approx(
            due + DUE_RETRY_SECONDS, abs=1.5)
    finally:
        timers.stop()
