"""Runs a CPU-bound generator in a forked child process and streams its items back.

An import parses, normalises, indexes and seals every row of a file: pure computation that,
in the serving process, holds its event loop for a tenth of a second per batch and leaves the
second core idle while the database writes. `forked_items` runs that work in a child made by
fork(2), so the child starts with what the parent has in memory — the upload (never written to
disk: it is plaintext personal data), the tenant's lookup key and the batch's data key — and no
key or personal data travels anywhere but between the two processes of one service, through a
pipe. The child touches nothing else the parent holds: no event loop, no database connection,
no log handler; it closes every inherited descriptor but its end of the pipe and leaves with
os._exit, so no finaliser or atexit handler of the parent runs in it.

Items cross the pipe as length-prefixed pickles, read as they come: the pipe's buffer is the
only thing between the two, so a slow writer holds the child back (memory stays flat) and a
fast one waits on the child. Exceptions of the types the caller names come back and are raised
in the parent as they were; any other failure of the child is `WorkerFailed`, which names the
exception's type only (its message may quote the input). Cancelling the iteration, or leaving
it early, kills the child; it is always reaped.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import TypeVar

T = TypeVar("T")

_FRAME = struct.Struct("!BI")  # kind, length
_ITEM, _RAISED, _FAILED = 1, 2, 3
_READ_LIMIT = 1 << 20  # bytes read ahead of the item being read: the pipe pauses beyond twice this


class WorkerFailed(RuntimeError):
    """The child failed other than with one of the expected exceptions, or died."""


class WorkerUnavailable(OSError):
    """No child could be made (no pipe, no process): nothing was computed, the caller may do
    the work itself."""


def _pipe() -> tuple[int, int]:
    try:
        return os.pipe()
    except OSError as exc:  # out of descriptors
        raise WorkerUnavailable(exc.errno, exc.strerror) from None


async def forked_items(produce: Callable[[], Iterator[T]],
                       passes: tuple[type[BaseException], ...] = (),
                       keep_fds: Collection[int] = ()) -> AsyncIterator[T]:
    """The items of `produce()`, computed in a forked child, in order. The child keeps the
    descriptors in `keep_fds` (a file `produce` reads) and closes every other."""
    read_fd, write_fd = _pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that a multi-threaded process (the server has its database
            # threads) may deadlock a forked child that takes a lock another thread held. The
            # child here takes none of theirs: no logging, no database, no event loop, no
            # executor; only its own computation, os.urandom and a pipe.
            warnings.filterwarnings("ignore", message=".*multi-threaded.*fork",
                                    category=DeprecationWarning)
            pid = os.fork()
    except OSError as exc:  # too many processes, no memory for one more
        os.close(read_fd)
        os.close(write_fd)
        raise WorkerUnavailable(exc.errno, exc.strerror) from None
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        _child(read_fd, write_fd, produce, passes, keep_fds)
    os.close(write_fd)
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT)
    transport = None
    finished = False
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe)
        while True:
            try:
                head = await reader.readexactly(_FRAME.size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise WorkerFailed("the worker process stopped mid-item") from None
                finished = True  # the end; the exit status says whether it was a clean one
                break
            kind, length = _FRAME.unpack(head)
            try:
                payload = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                raise WorkerFailed("the worker process stopped mid-item") from None
            if kind == _ITEM:
                yield pickle.loads(payload)
            elif kind == _RAISED:
                finished = True
                raise pickle.loads(payload)
            else:
                finished = True
                raise WorkerFailed(f"the worker process failed: {payload.decode()}")
    finally:
        if transport is not None:
            transport.close()
        else:
            pipe.close()
        status = await _reap(pid, kill=not finished)
        if finished and status != 0 and sys.exc_info()[0] is None:
            raise WorkerFailed(f"the worker process ended with status {status}")


async def _reap(pid: int, kill: bool) -> int:
    """Waits for the child (killing it first when it is not done); its exit status."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # waitpid blocks: in a thread, shielded so a second cancellation cannot leave a zombie.
    _, status = await asyncio.shield(asyncio.to_thread(os.waitpid, pid, 0))
    return os.waitstatus_to_exitcode(status)


def _child(read_fd: int, write_fd: int, produce: Callable[[], Iterator[T]],
           passes: tuple[type[BaseException], ...],
           keep_fds: Collection[int]) -> None:  # pragma: no cover
    code = 0
    try:
        # The parent's signal handling (asyncio's wakeup descriptor) is not ours: a TERM or an
        # INT ends the child as it would any plain program.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        os.close(read_fd)
        start = 3
        for fd in sorted({write_fd, *keep_fds}):
            if fd >= start:
                os.closerange(start, fd)
                start = fd + 1
        os.closerange(start, _max_fd())
        with open(write_fd, "wb", buffering=1 << 16) as out:
            try:
                for item in produce():
                    _send(out, _ITEM, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            except passes as exc:
                _send(out, _RAISED, pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
            except BaseException as exc:
                _send(out, _FAILED, type(exc).__name__.encode())
                code = 1
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _send(out, kind: int, payload: bytes) -> None:
    out.write(_FRAME.pack(kind, len(payload)))
    out.write(payload)
    out.flush()  # each item as soon as it is made: the parent may be waiting for it


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536
