"""A counting TCP proxy in front of PostgreSQL, for `izinli bench cluster --round-trips`.

Every round trip between a client and PostgreSQL ends with exactly one ReadyForQuery message
('Z') from the server, whatever the driver sends (a simple query, an extended-protocol batch
ending in Sync, BEGIN, COMMIT, a pool's pre-ping), so counting those messages counts round
trips. The proxy refuses TLS (it answers 'N' to SSLRequest and GSSENCRequest, as a server
without TLS would), so the stream stays readable; it listens on 127.0.0.1 only."""
from __future__ import annotations

import asyncio
import contextlib
import struct

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
READY_FOR_QUERY = ord("Z")


class Frames:
    """Splits the server's message stream (type byte, 4-byte length including itself, body)
    across arbitrary read boundaries; `feed` answers how many ReadyForQuery messages ended."""

    def __init__(self):
        self.header = b""
        self.remaining = 0  # body bytes of the current message still to skip

    def feed(self, data: bytes) -> int:
        ready, i, n = 0, 0, len(data)
        while i < n:
            if self.remaining:
                step = min(self.remaining, n - i)
                i += step
                self.remaining -= step
                continue
            need = 5 - len(self.header)
            self.header += data[i:i + need]
            i += need
            if len(self.header) == 5:
                if self.header[0] == READY_FOR_QUERY:
                    ready += 1
                self.remaining = int.from_bytes(self.header[1:5], "big") - 4
                self.header = b""
        return ready


class RoundTripCounter:
    """Listens on 127.0.0.1 and forwards each connection to PostgreSQL at `upstream`."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.round_trips = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        upstream = None
        try:
            startup = await _startup(reader, writer)
            up_reader, upstream = await asyncio.open_connection(*self.upstream)
            upstream.write(startup)
            await asyncio.gather(_pipe(reader, upstream), self._count(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = Frames()
        while data := await reader.read(65536):
            writer.write(data)
            self.round_trips += frames.feed(data)
            await writer.drain()
        writer.close()


async def _startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The client's startup packet (or cancel request), after refusing TLS negotiation."""
    while True:
        head = await reader.readexactly(8)
        length, code = struct.unpack("!ii", head)
        if length == 8 and code in (SSL_REQUEST, GSSENC_REQUEST):
            writer.write(b"N")
            await writer.drain()
            continue
        return head + await reader.readexactly(length - 8)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
