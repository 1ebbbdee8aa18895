"""SQLite's WAL is checkpointed by a thread of the Database's own, not inside commits
(store.engine._Checkpointer), without ever loosening SQLite's own locks."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

from sqlalchemy import text

from store import purge
from store.engine import CHECKPOINT_WRITES, FALLBACK_AUTOCHECKPOINT, open_database

THREAD = "izinli-sqlite-checkpoint"
# Run in another process: is any process's lock held on the WAL index's "dead man switch"
# byte (SQLite's unix VFS: byte 128 of the -shm file)? While one is, no other connection
# takes the index for abandoned and starts it again.
_DMS_PROBE = """
import fcntl, struct, sys
with open(sys.argv[1], "rb+") as index:
    ask = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 128, 1, 0)
    found = struct.unpack("hhqqi", fcntl.fcntl(index, fcntl.F_GETLK, ask))
print("held" if found[0] != fcntl.F_UNLCK else "free")
"""


def _checkpointers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == THREAD)


def _wal_index_lock(shm: str) -> str:
    return subprocess.run([sys.executable, "-c", _DMS_PROBE, shm], capture_output=True,
                          text=True, check=True).stdout.strip()


async def _filled(db, rows: int, commits: int = CHECKPOINT_WRITES) -> None:
    async with db.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, "
                                "b BLOB NOT NULL)"))
    for _ in range(commits):
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO blobs (b) VALUES (randomblob(2000))"),
                               [{}] * (rows // commits))


async def _checkpointed(path: str, size: int) -> None:
    deadline = time.monotonic() + 5
    while os.path.getsize(path) < size:  # what only a checkpoint writes there
        assert time.monotonic() < deadline, "the WAL was never checkpointed"
        await asyncio.sleep(0.05)


async def test_the_wal_reaches_the_database_file_without_a_commit_checkpointing(tmp_path):
    path = str(tmp_path / "c.db")
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await _filled(db, 600)  # ~310 pages: far below the commits' own threshold
        assert FALLBACK_AUTOCHECKPOINT > 300
        await _checkpointed(path, 300 * 2000)
    finally:
        await db.close()


async def test_a_trickle_of_writes_is_checkpointed_once_idle(tmp_path):
    path = str(tmp_path / "c.db")
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await _filled(db, 100, commits=1)  # fewer commits than make one due at once
        await asyncio.sleep(0.3)
        assert os.path.getsize(path) < 100 * 2000
        await _checkpointed(path, 100 * 2000)  # after CHECKPOINT_IDLE_SECONDS
    finally:
        await db.close()


async def test_checkpoints_keep_the_wal_index_locked_for_this_process(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it. A
    checkpointer that read the WAL index (-shm) through a file of its own dropped SQLite's
    lock on it: another process's connection then truncated the index under the server's
    running connections (SIGBUS on a full disk, a corrupt database otherwise)."""
    path = str(tmp_path / "c.db")
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await _filled(db, 600)
        await _checkpointed(path, 300 * 2000)
        await _filled(db, 600)  # and more checkpoints after the first
        await _checkpointed(path, 600 * 2000)
        assert _wal_index_lock(f"{path}-shm") == "held"
        # What the probe sees once a stray close has dropped the lock (the old bug).
        with open(f"{path}-shm", "rb") as index:
            index.read(100)
        assert _wal_index_lock(f"{path}-shm") == "free"
    finally:
        await db.close()


async def test_close_stops_the_thread_and_reads_alone_never_start_one(tmp_path):
    before = _checkpointers()
    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    async with db.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert _checkpointers() == before
    await _filled(db, 4)
    assert _checkpointers() == before + 1
    await db.close()
    assert _checkpointers() == before


async def test_a_checkpoint_that_cannot_run_is_said_once(tmp_path, caplog):
    """A lost database file (or a full disk) fails each checkpoint: one warning, not ten a
    second, and the file is never created again by the checkpointer."""
    path = tmp_path / "c.db"
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.begin() as conn:  # starts the checkpointer; it has not connected yet
            await conn.execute(text("PRAGMA user_version = 1"))
        path.rename(tmp_path / "moved.db")
        for _ in range(3):
            await _filled(db, 600)  # due at once, three times over
            await asyncio.sleep(0.25)
        warned = [r for r in caplog.records if r.getMessage() == "WAL checkpoint failed"]
        assert len(warned) == 1
        assert not path.exists()
    finally:
        await db.close()


_HOLD_CHECKPOINT_LOCK = """
import fcntl, struct, sys, time
with open(sys.argv[1], "rb+") as index:  # byte 121 of the WAL index: SQLite's checkpoint lock
    # F_SETLKW: waits while the server's own background checkpoint holds it.
    fcntl.fcntl(index, fcntl.F_SETLKW, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 121, 1, 0))
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


async def test_a_scrub_empties_the_wal_although_a_checkpoint_is_under_way(tmp_path, caplog):
    """Another checkpoint holding the lock (a process's background one) makes the scrub's
    TRUNCATE busy at once, without waiting: it tries again rather than leave deleted rows'
    pages in the WAL."""
    path = str(tmp_path / "c.db")
    db = open_database(f"sqlite+aiosqlite:///{path}")
    try:
        await _filled(db, 40)
        with subprocess.Popen([sys.executable, "-c", _HOLD_CHECKPOINT_LOCK, f"{path}-shm",
                               "0.3"], stdout=subprocess.PIPE, text=True) as holder:
            assert holder.stdout.readline().strip() == "held"
            await purge.scrub(db)
        assert os.path.getsize(f"{path}-wal") == 0
        assert not [r for r in caplog.records if "could not be emptied" in r.getMessage()]
    finally:
        await db.close()
