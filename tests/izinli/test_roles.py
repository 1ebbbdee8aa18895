"""`izinli serve --role web|worker|all` (issue 13 item 8): a web process serves the API and
sends nothing; a worker sends and answers only its probes; SQLite refuses a split. The
multi-process tests run real processes on a fresh PostgreSQL database; the tenant is in
service custody, so every process holds its key from the start (no unlock to fan out)."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from real_server import IZINLI, PASSPHRASE, Api, free_port, healthy, wait_for

N = 200
RATE = 1000  # msg/s: an all-role process would send the whole campaign within a second


class Processes:
    """Processes of given roles on one database and master key, each with its own data dir."""

    def __init__(self, tmp_path: Path, url: str, custody: str = "service"):
        self.tmp, self.url = tmp_path, url
        self.env = {**os.environ, "IZINLI_KDF": "min", "IZINLI_DATABASE_URL": url,
                    "IZINLI_MASTER_KEY": secrets.token_hex(32), "IZINLI_LOG_LEVEL": "WARNING"}
        self.procs: list[subprocess.Popen] = []
        (tmp_path / "pass").write_text(PASSPHRASE)
        tenant = json.loads(self._cli("tenant", "create", "Roller", "--passphrase-file",
                                      str(tmp_path / "pass")))
        if custody == "service":
            self._cli("tenant", "custody", tenant["tenant_id"], "service", "--passphrase-file",
                      str(tmp_path / "pass"))
        self.key = tenant["api_key"]

    def _cli(self, *args: str) -> str:
        return subprocess.run([IZINLI, *args, "--data-dir", str(self.tmp / "cli")], env=self.env,
                              capture_output=True, text=True, check=True, timeout=60).stdout

    def start(self, role: str) -> tuple[subprocess.Popen, int]:
        port, i = free_port(), len(self.procs)
        with open(self.tmp / f"serve-{i}-{role}.log", "wb") as log:
            proc = subprocess.Popen([IZINLI, "serve", "--role", role, "--port", str(port),
                                     "--data-dir", str(self.tmp / f"var{i}")], cwd=self.tmp,
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        healthy(proc, port)
        return proc, port

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def scalar(self, sql: str, *args):
        import asyncio

        import asyncpg
        from sqlalchemy.engine import make_url
        url = make_url(self.url)

        async def run():
            conn = await asyncpg.connect(host=url.host, port=url.port or 5432,
                                         user=url.username, database=url.database)
            try:
                return await conn.fetchval(sql, *args)
            finally:
                await conn.close()
        return asyncio.run(run())


@pytest.fixture
def processes(tmp_path, pg_url):
    p = Processes(tmp_path, pg_url)
    yield p
    p.stop()


def _campaign(api: Api, send_at: float | None = None) -> str:
    line = api("POST", "/lines", {"channel": "sandbox", "name": "roller",
                                  "rate_per_second": RATE})["id"]
    list_id = api("POST", "/lists", {"name": "hepsi"})["id"]
    csv = "phone,consent\n" + "".join(f"+9053480{i:05d},evet\n" for i in range(N))
    api("POST", f"/contacts/import?list_id={list_id}", csv.encode(), "text/csv")
    body = {"name": "c", "line_id": line, "list_id": list_id, "template": "Merhaba"}
    if send_at is not None:
        body["send_at"] = send_at
    return api("POST", "/campaigns", body)["id"]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_web_role_sends_nothing_until_a_worker_runs(processes):
    _, web_port = processes.start("web")
    api = Api(web_port, processes.key)
    cid = _campaign(api)
    assert api("POST", f"/campaigns/{cid}/start")["state"] == "running"
    time.sleep(2)  # ten dispatcher ticks of an all-role process

    counts = api("GET", f"/campaigns/{cid}")["counts"]
    assert counts["pending"] == N and counts["sent"] == 0, counts
    assert processes.scalar("SELECT count(*) FROM sandbox_messages") == 0
    assert processes.scalar("SELECT count(*) FROM line_leases") == 0

    processes.start("worker")
    campaign = wait_for(api, cid, lambda c: c["state"] == "completed")
    assert campaign["counts"]["sent"] == N, campaign["counts"]
    assert processes.scalar("SELECT count(*) FROM sandbox_messages") == N


def test_worker_answers_only_its_probes(processes):
    _, port = processes.start("worker")
    status, body = _get(port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = _get(port, "/metrics")
    assert status == 200 and 'izinli_role{role="worker"} 1.0' in body
    for path in ("/api/v1/lines", "/login", "/api/v1/openapi.json"):
        status, body = _get(port, path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", (path, body)


def test_campaign_scheduled_through_a_web_process_starts_on_a_worker(processes):
    processes.start("worker")  # running before the campaign exists: it learns from the bus
    _, web_port = processes.start("web")
    api = Api(web_port, processes.key)
    cid = _campaign(api, send_at=time.time() + 2)
    assert api("POST", f"/campaigns/{cid}/start")["state"] == "scheduled"

    campaign = wait_for(api, cid, lambda c: c["state"] == "completed", timeout=30)
    assert campaign["counts"]["sent"] == N, campaign["counts"]


def test_an_unlock_through_a_web_process_reaches_the_worker(tmp_path, pg_url):
    """Passphrase custody: the worker has no unlock endpoint; the key fan-out brings it."""
    processes = Processes(tmp_path, pg_url, custody="passphrase")
    try:
        processes.start("worker")
        _, web_port = processes.start("web")
        api = Api(web_port, processes.key)
        api("POST", "/vault/unlock", {"passphrase": PASSPHRASE})
        cid = _campaign(api)
        api("POST", f"/campaigns/{cid}/start")
        campaign = wait_for(api, cid, lambda c: c["state"] == "completed", timeout=30)
        assert campaign["counts"]["sent"] == N, campaign["counts"]
    finally:
        processes.stop()


def _run(tmp_path: Path, *args: str, env: dict | None = None):
    full = {**os.environ, "IZINLI_KDF": "min", **(env or {})}
    full.pop("IZINLI_DATABASE_URL", None)
    return subprocess.run([IZINLI, *args, "--data-dir", str(tmp_path / "var")], cwd=tmp_path,
                          env=full, capture_output=True, text=True, timeout=60)


def _one_line_error(out, contains: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and contains in lines[0] and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("args, env, contains", [
    (("serve", "--role", "boss"), None, "invalid choice: 'boss'"),
    (("serve",), {"IZINLI_SERVER_ROLE": "boss"}, "'server.role' must be one of all, web, worker"),
    (("serve", "--role", "worker"), None, "needs PostgreSQL"),
    (("serve", "--role", "web"), None, "needs PostgreSQL"),
    (("worker",), None, "needs PostgreSQL"),
])
def test_bad_or_sqlite_split_role_is_refused(tmp_path, args, env, contains):
    _one_line_error(_run(tmp_path, *args, "--port", str(free_port()), env=env), contains)
