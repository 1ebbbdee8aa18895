"""A real `izinli serve` in a subprocess, for the tests that kill it, stop its database or run
several of them (crash, outage, cluster): started in its own session so kill -9 takes the
whole process group, and waited for through /healthz."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

IZINLI = shutil.which("izinli") or str(Path(sys.executable).parent / "izinli")


@contextlib.contextmanager
def serve(tmp_path: Path, port: int, env: dict):
    with open(tmp_path / f"serve-{time.monotonic_ns()}.log", "wb") as log:
        proc = subprocess.Popen([IZINLI, "serve", "--port", str(port),
                                 "--data-dir", str(tmp_path / "var")], cwd=tmp_path, env=env,
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
