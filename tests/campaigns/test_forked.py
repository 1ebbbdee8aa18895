"""campaigns.forked: a generator run in a forked child, its items streamed back in order;
expected exceptions come back as they were, anything else as WorkerFailed without its message;
the child is killed when the caller stops early or is cancelled, and always reaped."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from campaigns.csvparse import CsvFormatError, NoPhoneColumnError
from campaigns.forked import WorkerFailed, forked_items


async def _all(produce, **kw) -> list:
    async with contextlib.aclosing(forked_items(produce, **kw)) as items:
        return [item async for item in items]


def _gone(pid: int) -> bool:
    """Whether `pid` is no process any more (reaped, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_items_are_computed_in_another_process_and_arrive_in_order():
    def produce():
        yield os.getpid()
        yield from range(1000)
        yield b"\x00" * (9 << 20)  # larger than the reader's buffer limit
        yield {"nested": [("tuple", 1.5)]}

    child, *rest = await _all(produce)
    assert child != os.getpid()
    assert rest[:1000] == list(range(1000))
    assert rest[1000] == b"\x00" * (9 << 20)
    assert rest[1001] == {"nested": [("tuple", 1.5)]}
    assert _gone(child)


async def test_an_expected_exception_comes_back_as_it_was_after_the_items_before_it():
    seen = []

    def produce():
        yield "first"
        raise CsvFormatError("unterminated quote", 7)

    with pytest.raises(CsvFormatError) as raised:
        async with contextlib.aclosing(forked_items(produce, passes=(CsvFormatError,))) as it:
            async for item in it:
                seen.append(item)
    assert seen == ["first"]
    assert raised.value.line == 7 and str(raised.value) == "line 7: unterminated quote"

    def no_phone():
        raise NoPhoneColumnError(["ad", "şehir"])
        yield

    with pytest.raises(NoPhoneColumnError) as raised:
        await _all(no_phone, passes=(CsvFormatError,))
    assert raised.value.columns == ("ad", "şehir") and raised.value.code == "no_phone_column"


async def test_any_other_failure_names_its_type_only():
    def produce():
        yield 1
        raise ValueError("+905321112233 is not what we expected")

    with pytest.raises(WorkerFailed) as raised:
        await _all(produce, passes=(CsvFormatError,))
    assert "ValueError" in str(raised.value)
    assert "905321112233" not in str(raised.value)


@pytest.mark.parametrize("how", ["exit status", "killed"])
async def test_a_child_that_dies_is_a_failure_not_a_short_result(how):
    def produce():
        yield 1
        if how == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
        yield 2

    items = []
    with pytest.raises(WorkerFailed):
        async with contextlib.aclosing(forked_items(produce)) as it:
            async for item in it:
                items.append(item)
    assert items == [1]


async def test_stopping_early_kills_and_reaps_the_child():
    def forever():
        yield os.getpid()
        n = 0
        while True:
            n += 1
            yield n

    async with contextlib.aclosing(forked_items(forever)) as items:
        child = await anext(items)
        assert await anext(items) == 1
    assert _gone(child)


async def test_cancelling_the_reader_kills_and_reaps_the_child():
    started = asyncio.Event()
    pids = []

    def slow():
        yield os.getpid()
        while True:
            yield os.urandom(1 << 16)

    async def read():
        async with contextlib.aclosing(forked_items(slow)) as items:
            async for item in items:
                if isinstance(item, int):
                    pids.append(item)
                    started.set()
                await asyncio.sleep(0.01)  # a slow writer: the child is held back by the pipe

    task = asyncio.create_task(read())
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _gone(pids[0])


async def test_the_child_leaves_the_parents_descriptors_alone_and_keeps_the_ones_asked_for(
        tmp_path):
    kept = tmp_path / "kept.csv"
    kept.write_bytes(b"telefon\n05321112233\n")
    other = tmp_path / "other"
    other.write_bytes(b"x")
    with open(kept, "rb") as keep, open(other, "rb") as drop:
        def produce():
            yield keep.read()
            try:
                os.fstat(drop.fileno())
            except OSError:
                yield "closed"
            else:
                yield "open"

        assert await _all(produce, keep_fds=[keep.fileno()]) == [b"telefon\n05321112233\n",
                                                                  "closed"]
        # The parent's own descriptors are untouched (the kept file shares its offset with
        # the child, as fork(2) makes it: the importer's parent does not read it meanwhile).
        assert drop.read() == b"x"
        keep.seek(0)
        assert keep.read() == b"telefon\n05321112233\n"
