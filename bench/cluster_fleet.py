"""The processes of `izinli bench cluster`: real `izinli serve` processes on 127.0.0.1, each in
its own session (kill -9 takes its whole group) with its own data dir and log file, sharing
one database URL and master key."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

IZINLI = shutil.which("izinli") or str(Path(sys.executable).parent / "izinli")


class BenchError(RuntimeError):
    pass


@dataclass
class Server:
    proc: subprocess.Popen
    port: int

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Fleet:
    def __init__(self, tmp: Path, url: str, master_hex: str):
        self.tmp = tmp
        env = {k: v for k, v in os.environ.items() if not k.startswith("IZINLI_")}
        env.update(IZINLI_DATABASE_URL=url, IZINLI_MASTER_KEY=master_hex, IZINLI_KDF="min",
                   IZINLI_LOG_LEVEL="WARNING",
                   # The bench's STOPs are deliberate: the spam guard must not pause a campaign.
                   IZINLI_CAMPAIGNS_SPAM_OPTOUT_RATE="1")
        self.env = env
        self.servers: list[Server] = []

    async def cli(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            IZINLI, *args, "--data-dir", str(self.tmp / "cli"), env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"izinli {' '.join(args[:2])} failed: {err.decode().strip()[:300]}")
        return out.decode()

    async def start(self, n: int, http: aiohttp.ClientSession) -> list[Server]:
        started = [self._spawn(len(self.servers) + i) for i in range(n)]
        self.servers += started
        await asyncio.gather(*(self._healthy(s, http) for s in started))
        return started

    def _spawn(self, i: int) -> Server:
        port = free_port()
        with open(self.tmp / f"serve-{i}.log", "wb") as log:
            proc = subprocess.Popen(
                [IZINLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                 str(self.tmp / f"var{i}")], cwd=self.tmp, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        return Server(proc, port)

    async def _healthy(self, server: Server, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not server.alive:
                raise BenchError(f"izinli serve exited (log in {self.tmp})")
            try:
                async with http.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise BenchError("izinli serve did not become healthy within 90 s")

    def kill(self, server: Server) -> None:
        os.killpg(server.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM to all (a clean stop), SIGKILL to whoever is still there 15 s later."""
        for server in self.servers:
            if server.alive:
                os.killpg(server.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for server in self.servers:
            while server.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if server.alive:
                self.kill(server)
            server.proc.wait()

    def logged(self) -> list[str]:
        return [line for log in sorted(self.tmp.glob("serve-*.log"))
                for line in log.read_text(errors="replace").splitlines()]


async def connect(url: str) -> asyncpg.Connection:
    u = make_url(url)
    return await asyncpg.connect(host=u.host or "127.0.0.1", port=u.port or 5432,
                                 user=u.username, password=u.password, database=u.database)


async def server_version(url: str) -> str:
    conn = await connect(url)
    try:
        return (await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def holder_pid(holder: str) -> int | None:
    """The pid in a lease holder's name (host:pid:random)."""
    parts = holder.split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
