"""A real `izinli serve` in a subprocess, for the tests that kill it, stop its database or run
several of them (crash, outage, cluster): started in its own session so kill -9 takes the
whole process group, and waited for through /healthz."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

IZINLI = shutil.which("izinli") or str(Path(sys.executable).parent / "izinli")
PASSPHRASE = "doğru at pil zımba 42"


def _port_candidates():
    """Ports below the kernel's ephemeral range (32768 up), a block of 3,000 per pytest-xdist
    worker: a port handed to a served process between this check and its own bind is never
    taken meanwhile by another worker, nor by a client connection's ephemeral port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 20_000 + 3_000 * (int(worker) % 4 if worker.isdigit() else 0)
    start = random.randrange(3_000)
    while True:
        for offset in range(3_000):
            yield base + (start + offset) % 3_000


_ports = _port_candidates()


def free_port() -> int:
    for port in _ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable")


class Api:
    """The HTTP API of a served process as a tenant: JSON in, JSON out, any status ≥ 400 an
    AssertionError naming the call."""

    def __init__(self, port: int, key: str):
        self.base, self.key = f"http://127.0.0.1:{port}/api/v1", key

    def __call__(self, method: str, path: str, body=None, ctype="application/json"):
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None
        return json.loads(raw) if raw else None


@contextlib.contextmanager
def serve(tmp_path: Path, port: int, env: dict, args: tuple[str, ...] = ()):
    with open(tmp_path / f"serve-{time.monotonic_ns()}.log", "wb") as log:
        proc = subprocess.Popen([IZINLI, "serve", "--port", str(port),
                                 "--data-dir", str(tmp_path / "var"), *args], cwd=tmp_path,
                                env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            healthy(proc, port)
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def healthy(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return
        except OSError:
            assert proc.poll() is None, "server exited"
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def wait_for(api, cid: str, done, timeout: float = 60) -> dict:
    """The campaign once `done(campaign)` holds; `api(method, path)` reads it."""
    deadline = time.monotonic() + timeout
    c = None
    while time.monotonic() < deadline:
        c = api("GET", f"/campaigns/{cid}")
        if done(c):
            return c
        time.sleep(0.05)
    raise AssertionError(f"timed out: {c}")


class Cluster:
    """Processes sharing one database and master key, each with its own data dir."""

    def __init__(self, tmp_path: Path, url: str):
        self.tmp = tmp_path
        self.env = {**os.environ, "IZINLI_KDF": "min", "IZINLI_DATABASE_URL": url,
                    "IZINLI_MASTER_KEY": secrets.token_hex(32)}
        self.db_url = url
        self.procs: list[subprocess.Popen] = []
        (tmp_path / "pass").write_text(PASSPHRASE)
        out = subprocess.run([IZINLI, "tenant", "create", "Küme Testi", "--passphrase-file",
                              str(tmp_path / "pass"), "--data-dir", str(tmp_path / "var0")],
                             env=self.env, capture_output=True, text=True, check=True)
        self.key = json.loads(out.stdout)["api_key"]

    def start(self, n: int, args: tuple[str, ...] = ()) -> list[tuple[subprocess.Popen, Api]]:
        started = []
        for i in range(n):
            port = free_port()
            log = open(self.tmp / f"serve-{i}.log", "wb")  # noqa: SIM115 (closed with the test)
            proc = subprocess.Popen(
                [IZINLI, "serve", "--port", str(port), "--data-dir", str(self.tmp / f"var{i}"),
                 *args],
                cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            log.close()
            self.procs.append(proc)
            started.append((proc, port))
        for proc, port in started:
            healthy(proc, port)
        return [(proc, Api(port, self.key)) for proc, port in started]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def query(self, sql: str, *args) -> list:
        import asyncpg
        url = make_url(self.db_url)

        async def run():
            conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                         password=url.password, database=url.database)
            try:
                return await conn.fetch(sql, *args)
            finally:
                await conn.close()
        return asyncio.run(run())
