"""Cluster notifications: what one process commits that the others must act on at once (a
revocation, a vault unlock or lock, a session ended, a cache gone stale), announced through
the database itself: PostgreSQL's LISTEN/NOTIFY on one channel, no new moving parts.

`publish` runs inside the caller's transaction, so PostgreSQL delivers the notice to every
listening process (this one included) when that transaction commits, and never when it rolls
back. Each process listens on a connection of its own, outside the pool. When that connection
is lost, notices sent meanwhile are lost with it: after every reconnect the `on_reconnect`
callbacks run, so each subscriber can catch up from the tables (which stay the truth).

SQLite serves one process (izinli.serve refuses a second), so there is nobody to tell: a
notice goes straight to this process's own handlers, at once (before the commit). Handlers
therefore must be idempotent and must not assume the notice's transaction has committed.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from store.engine import Database

log = logging.getLogger(__name__)

CHANNEL = "izinli_bus"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8,000 bytes and more

Handler = Callable[[str], None]
Reconnected = Callable[[], Awaitable[None] | None]


class Bus:
    """Topics with handlers. A handler gets the payload (a str) on the event loop and must
    return quickly (start a task for slow work); its exceptions are logged by type only."""

    def __init__(self, db: Database, health_seconds: float = 2.0, retry_max_seconds: float = 5.0):
        self.db = db
        self.shared = db.dialect == "postgresql"
        self.health_seconds, self.retry_max_seconds = health_seconds, retry_max_seconds
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._reconnected: list[Reconnected] = []
        self._task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self.listening = asyncio.Event()  # set while the listening connection is up
        self.received = 0  # notices handled (for benchmarks and tests)

    def subscribe(self, topic: str, handler: Handler) -> None:
        if "\n" in topic:
            raise ValueError("a topic is one line")
        self._handlers[topic].append(handler)

    def on_reconnect(self, callback: Reconnected) -> None:
        """Called after the listening connection came back (not after the first connect):
        notices published while it was down were lost, so read the truth again."""
        self._reconnected.append(callback)

    async def publish(self, conn: AsyncConnection, topic: str, payload: str = "") -> None:
        """Announce `topic` with `payload` when `conn`'s transaction commits."""
        message = f"{topic}\n{payload}"
        if len(message.encode()) > MAX_PAYLOAD:
            raise ValueError("bus payload too large")
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("SELECT pg_notify($1, $2)", (CHANNEL, message))
        else:
            self._deliver(message)

    async def announce(self, topic: str, payload: str = "") -> None:
        """`publish` in a transaction of its own."""
        if not self.shared:
            self._deliver(f"{topic}\n{payload}")
            return
        async with self.db.begin() as conn:
            await self.publish(conn, topic, payload)

    async def start(self) -> None:
        """Starts listening (PostgreSQL) and waits up to 5 s for the first connection; a
        database that is away does not stop the start: the loop keeps trying."""
        if not self.shared or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), 5)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    async def _listen(self) -> None:
        delay, first = 0.1, True
        while True:
            try:
                await self._session(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the type only: driver texts can quote parameters
                log.warning("bus connection lost", extra={"error": type(exc).__name__})
            self.listening.clear()
            first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_seconds)

    async def _session(self, first: bool) -> None:
        pooled = await self.db.engine.raw_connection()
        driver = pooled.driver_connection  # asyncpg.Connection
        pooled.detach()  # ours alone: never handed to another caller with a listener on it
        lost = asyncio.Event()
        try:
            driver.add_termination_listener(lambda _conn: lost.set())
            await driver.add_listener(CHANNEL, self._notified)
            self.listening.set()
            if not first:
                log.info("bus connection back")
                await self._catch_up()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.health_seconds)
                except TimeoutError:  # a silent network loses nothing but this probe's time
                    await asyncio.wait_for(driver.execute("SELECT 1"), self.health_seconds)
            raise ConnectionError("listening connection closed")
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(_close(driver)), 2)

    async def _catch_up(self) -> None:
        for callback in self._reconnected:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.error("bus catch-up failed", extra={"error": type(exc).__name__})

    def _notified(self, _conn, _pid, _channel, message: str) -> None:
        self._deliver(message)

    def _deliver(self, message: str) -> None:
        topic, _, payload = message.partition("\n")
        self.received += 1
        for handler in self._handlers.get(topic, ()):
            try:
                handler(payload)
            except Exception as exc:
                log.error("bus handler failed", extra={"topic": topic,
                                                       "error": type(exc).__name__})

    def spawn(self, work: Awaitable[None]) -> None:
        """Run a handler's slow part as a task the bus keeps (and cancels at stop)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bus task failed", extra={"error": type(task.exception()).__name__})


async def _close(driver) -> None:
    # Detached from the pool, the driver's connection is closed by hand (the proxy's own
    # close() wants SQLAlchemy's greenlet context).
    with contextlib.suppress(Exception):
        await driver.close(timeout=1)
