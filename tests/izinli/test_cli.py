"""The `izinli` executable as an operator uses it: exit codes, one-line errors, JSON output."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

IZINLI = shutil.which("izinli") or str(Path(sys.executable).with_name("izinli"))
PASSPHRASE = "doğru at pil zımba 42"


def run(tmp_path: Path, *args: str, env: dict | None = None, stdin: str | None = None):
    full_env = {**os.environ, "IZINLI_KDF": "min", **(env or {})}
    full_env.pop("IZINLI_MASTER_KEY", None)
    return subprocess.run([IZINLI, *args, "--data-dir", str(tmp_path / "var")], cwd=tmp_path,
                          env=full_env, input=stdin, capture_output=True, text=True, timeout=60)


def assert_one_line_error(out, code: int, contains: str):
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and contains in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def passfile(tmp_path: Path, text: str = PASSPHRASE + "\n") -> str:
    f = tmp_path / "pass.txt"
    f.write_text(text, encoding="utf-8")
    return str(f)


def create_tenant(tmp_path: Path) -> dict:
    out = run(tmp_path, "tenant", "create", "Örnek Eczane", "--passphrase-file", passfile(tmp_path))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_help_lists_commands(tmp_path):
    out = subprocess.run([IZINLI, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("serve", "db", "tenant", "bench"):
        assert command in out.stdout


def master_key_file() -> Path:
    """Where the master key is made: the config dir (tests/conftest.py points it at tmp)."""
    return Path(os.environ["XDG_CONFIG_HOME"]) / "izinli" / "master.key"


def test_tenant_create_prints_id_and_key_and_makes_master_key_0600(tmp_path):
    info = create_tenant(tmp_path)
    assert set(info) == {"tenant_id", "api_key", "recovery_code"}
    assert info["api_key"].startswith("izk_") and len(info["recovery_code"]) == 29
    mode = stat.S_IMODE(master_key_file().stat().st_mode)
    assert mode == 0o600
    assert not (tmp_path / "var" / "master.key").exists()  # apart from the data


def test_short_passphrase_is_refused(tmp_path):
    out = run(tmp_path, "tenant", "create", "X", "--passphrase-file", passfile(tmp_path, "kısa\n"))
    assert_one_line_error(out, 2, "at least 12 characters")


def test_tenant_create_refuses_a_guessable_passphrase(tmp_path):
    out = run(tmp_path, "tenant", "create", "X", "--passphrase-file",
              passfile(tmp_path, "aaaaaaaaaaaa\n"))
    assert_one_line_error(out, 2, "too easy to guess")


def test_wrong_passphrase_exits_3(tmp_path):
    info = create_tenant(tmp_path)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("yanlış parola 12345")
    out = run(tmp_path, "tenant", "api-key", info["tenant_id"], "--passphrase-file", str(wrong))
    assert_one_line_error(out, 3, "wrong passphrase")
    out = run(tmp_path, "tenant", "api-key", info["tenant_id"], "--passphrase-file", "-",
              stdin=PASSPHRASE)
    assert out.returncode == 0 and json.loads(out.stdout)["api_key"] != info["api_key"]


def test_custody_from_cli(tmp_path):
    info = create_tenant(tmp_path)
    out = run(tmp_path, "tenant", "custody", info["tenant_id"], "service",
              "--passphrase-file", passfile(tmp_path))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["custody"] == "service"


@pytest.mark.parametrize("args, code, contains", [
    (("frobnicate",), 2, "invalid choice"),
    (("tenant",), 2, "needs an action"),
    (("tenant", "create"), 2, "required"),
    (("tenant", "create", "X", "--passphrase-file", "/nonexistent/p"), 2, "cannot read"),
    (("serve", "--port", "abc"), 2, "invalid int value"),
])
def test_usage_errors_are_one_line(tmp_path, args, code, contains):
    assert_one_line_error(run(tmp_path, *args), code, contains)


def test_bad_config_file_exits_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server]\nport = 'x'\n")
    assert_one_line_error(run(tmp_path, "db", "upgrade", "--config", str(cfg)), 2, "server.port")


def test_unreachable_database_exits_2_without_password(tmp_path):
    url = "postgresql+asyncpg://izinli:s3cretpw@127.0.0.1:9/izinli"
    out = run(tmp_path, "db", "upgrade", env={"IZINLI_DATABASE_URL": url})
    assert_one_line_error(out, 2, "cannot connect")
    assert "s3cretpw" not in out.stderr


def test_bad_master_key_env_exits_2(tmp_path):
    env = {**os.environ, "IZINLI_KDF": "min", "IZINLI_MASTER_KEY": "not-a-key"}
    out = subprocess.run([IZINLI, "tenant", "create", "X", "--passphrase-file", passfile(tmp_path),
                          "--data-dir", str(tmp_path / "var")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert_one_line_error(out, 2, "IZINLI_MASTER_KEY")
    assert "not-a-key" not in out.stderr


def test_db_upgrade_prints_revision(tmp_path):
    out = run(tmp_path, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["revision"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(tmp_path: Path, port: int):
    env = {**os.environ}
    env.pop("IZINLI_MASTER_KEY", None)
    with subprocess.Popen([IZINLI, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def test_serve_zero_config_prints_url_answers_health_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    with serving(tmp_path, port) as proc:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200
        assert (tmp_path / "var" / "izinli.db").exists()
        # First start: where the master key was made, and to back it up apart from the data.
        told = proc.stdout.readline()
        assert f"created the master key at {master_key_file()}" in told and "apart" in told
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "Traceback" not in proc.stderr.read()


def test_serve_on_a_taken_port_fails_cleanly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = run(tmp_path, "serve", "--port", str(s.getsockname()[1]))
    # The server logs its start-up on stderr; its last line is the one error.
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("izinli: cannot listen")


def test_serve_stops_on_sigint(tmp_path):
    with serving(tmp_path, _free_port()) as proc:
        proc.stdout.readline()
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0 and time.monotonic() - started < 10


def test_audit_verify_from_cli(tmp_path):
    import sqlite3
    create_tenant(tmp_path)
    out = run(tmp_path, "audit", "checkpoint")  # tenant.create, vault.recovery_code
    assert out.returncode == 0 and json.loads(out.stdout)["signed_through"] == 2
    out = run(tmp_path, "audit", "public-key")
    assert out.returncode == 0, out.stderr
    public = json.loads(out.stdout)["public_key"]
    pub_file = tmp_path / "var" / "audit.pub"
    assert pub_file.read_text().strip() == public and len(bytes.fromhex(public)) == 32
    assert stat.S_IMODE(pub_file.stat().st_mode) == 0o644
    out = run(tmp_path, "audit", "verify")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "entries": 2, "checkpoints": 1, "signed_through": 2, "journal_checkpoints": 1,
        "legacy_checkpoints": 0, "redacted": 0, "public_key": public, "ok": True}
    with sqlite3.connect(tmp_path / "var" / "izinli.db") as raw:
        raw.execute("UPDATE audit_log SET action = 'nothing.happened' WHERE seq = 1")
    assert_one_line_error(run(tmp_path, "audit", "verify"), 1, "broken at entry 1")


def test_audit_verify_uses_an_auditors_public_key_not_the_database(tmp_path):
    import sqlite3
    create_tenant(tmp_path)
    assert run(tmp_path, "audit", "checkpoint").returncode == 0
    public = json.loads(run(tmp_path, "audit", "public-key").stdout)["public_key"]
    var = tmp_path / "var"
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    for name in ("audit.pub", "audit.checkpoints"):
        (auditor / name).write_bytes((var / name).read_bytes())
    master_key_file().rename(tmp_path / "master.key.away")  # the auditor has no master key
    assert_one_line_error(run(tmp_path, "audit", "verify"), 2, "--public-key")
    out = run(tmp_path, "audit", "verify", "--public-key", str(auditor / "audit.pub"))
    assert out.returncode == 0 and json.loads(out.stdout)["ok"] is True, out.stderr
    other = "11" * 32  # a key that did not sign these checkpoints
    assert_one_line_error(run(tmp_path, "audit", "verify", "--public-key", other), 1,
                          "broken at entry 2: checkpoint at entry 2 (signed ")
    assert "forged" in run(tmp_path, "audit", "verify", "--public-key", other).stderr
    assert_one_line_error(run(tmp_path, "audit", "verify", "--public-key", "nope"), 2,
                          "audit public key")
    # Cut the log and its checkpoints out of the database: the auditor's journal still knows.
    (var / "audit.checkpoints").unlink()
    with sqlite3.connect(var / "izinli.db") as raw:
        raw.execute("DELETE FROM audit_log")
        raw.execute("DELETE FROM audit_checkpoints")
    out = run(tmp_path, "audit", "verify", "--public-key", public)
    assert out.returncode == 0, out.stderr  # the database alone cannot tell
    assert_one_line_error(run(tmp_path, "audit", "verify", "--public-key", public,
                              "--checkpoints", str(auditor / "audit.checkpoints")), 1,
                          "entries 1–2 missing after the end of the log: it ends at entry 0 but "
                          "audit.checkpoints line 1 (signed ")


def test_sealed_kvkk_export_opens_with_the_passphrase(tmp_path):
    info = create_tenant(tmp_path)
    port = _free_port()
    base, auth = f"http://127.0.0.1:{port}/api/v1", {"Authorization": f"Bearer {info['api_key']}"}
    with serving(tmp_path, port) as proc:
        assert proc.stdout.readline()

        def call(method, path, body=None, content_type="application/json"):
            req = urllib.request.Request(base + path, data=body, method=method,
                                         headers={**auth, "Content-Type": content_type})
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read()
                return json.loads(body) if body else None

        # Importing and finding the person need the tenant's number key (issue 17): unlocked.
        call("POST", "/vault/unlock", json.dumps({"passphrase": PASSPHRASE}).encode())
        list_id = call("POST", "/lists", json.dumps({"name": "eczane"}).encode())["id"]
        call("POST", f"/contacts/import?list_id={list_id}",
             "telefon;ad soyad;consent\n0532 444 55 66;Gülşen Ağaoğlu;evet\n".encode(),
             "text/csv")
        export = call("GET", "/subjects/export?address=05324445566&sealed=true")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert "Gülşen" not in json.dumps(export, ensure_ascii=False)
    (tmp_path / "export.json").write_text(json.dumps(export))
    out = run(tmp_path, "subject", "open-export", str(tmp_path / "export.json"),
              "--passphrase-file", passfile(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["contact"]["name"] == "Gülşen Ağaoğlu"
    assert report["consents"][0]["evidence"]["row"] == 2
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("yanlış parola yanlış parola")
    assert_one_line_error(run(tmp_path, "subject", "open-export", str(tmp_path / "export.json"),
                              "--passphrase-file", str(wrong)), 3, "wrong passphrase")
    (tmp_path / "junk.json").write_text('{"tenant_id": "x"}')
    assert_one_line_error(run(tmp_path, "subject", "open-export", str(tmp_path / "junk.json"),
                              "--passphrase-file", passfile(tmp_path)), 2, "no such tenant")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")
def test_serve_terminates_tls_itself_and_marks_cookies_secure(tmp_path):
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    create_tenant(tmp_path)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "IZINLI_MASTER_KEY"}
    with subprocess.Popen([IZINLI, "serve", "--port", str(port), "--tls-cert", str(cert),
                           "--tls-key", str(key)], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert f"https://127.0.0.1:{port}" in proc.stdout.readline()
            context = ssl.create_default_context(cafile=str(cert))
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/login", timeout=10,
                                        context=context) as r:
                cookies = r.headers.get_all("Set-Cookie")
            assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies)
        finally:
            proc.kill()
    out = run(tmp_path, "serve", "--port", str(_free_port()), "--tls-cert", str(cert))
    assert_one_line_error(out, 1, "--tls-key")


def test_user_create_from_cli(tmp_path):
    info = create_tenant(tmp_path)
    pw = tmp_path / "user-pass.txt"
    pw.write_text("sahip parolası 2026\n", encoding="utf-8")
    out = run(tmp_path, "user", "create", info["tenant_id"], "sahip@ornek.com.tr", "--role",
              "owner", "--password-file", str(pw))
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["tenant_id"] == info["tenant_id"] and created["role"] == "owner"
    assert created["user_id"]
    out = run(tmp_path, "user", "create", info["tenant_id"], "SAHIP@ornek.com.tr",
              "--password-file", str(pw))
    assert_one_line_error(out, 2, "already exists")
    out = run(tmp_path, "user", "create", "no-such-tenant", "biri@ornek.com.tr",
              "--password-file", str(pw))
    assert_one_line_error(out, 2, "no such tenant")
    out = run(tmp_path, "user", "create", info["tenant_id"], "kisa@ornek.com.tr",
              "--password-file", passfile(tmp_path, "kısa\n"))
    assert_one_line_error(out, 2, "at least 10 characters")
    out = run(tmp_path, "user", "create", info["tenant_id"], "not-an-email",
              "--password-file", str(pw))
    assert_one_line_error(out, 2, "valid e-mail")
    out = run(tmp_path, "user", "create", info["tenant_id"], "x@ornek.com.tr", "--role", "boss",
              "--password-file", str(pw))
    assert_one_line_error(out, 2, "invalid choice")


def test_second_sqlite_process_refused(tmp_path):
    """Two servers on one SQLite data dir would both send every campaign: the second one
    refuses to start (exit 2, one line naming the reason and the fix); once the first is gone,
    even by kill -9, a new one starts."""
    with serving(tmp_path, _free_port()) as first:
        assert "listening" in first.stdout.readline()
        out = run(tmp_path, "serve", "--port", str(_free_port()))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("izinli: another izinli serve is already running")
        assert "PostgreSQL" in last
        first.kill()
        first.wait(timeout=10)
    with serving(tmp_path, _free_port()) as again:
        assert "listening" in again.stdout.readline()


def test_tenant_passphrase_change_refuses_a_guessable_one(tmp_path):
    info = create_tenant(tmp_path)
    weak, good = tmp_path / "weak.txt", tmp_path / "good.txt"
    weak.write_text("123456789012\n", encoding="utf-8")
    good.write_text("bulut kapı limon yürüyüş\n", encoding="utf-8")
    assert_one_line_error(run(tmp_path, "tenant", "passphrase", info["tenant_id"],
                              "--passphrase-file", passfile(tmp_path),
                              "--new-passphrase-file", str(weak)), 2, "too easy to guess")
    out = run(tmp_path, "tenant", "passphrase", info["tenant_id"], "--passphrase-file",
              passfile(tmp_path), "--new-passphrase-file", str(good))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"tenant_id": info["tenant_id"], "passphrase_changed": True}
    out = run(tmp_path, "tenant", "api-key", info["tenant_id"], "--passphrase-file", str(good))
    assert out.returncode == 0, out.stderr  # the new passphrase proves ownership now
    assert_one_line_error(run(tmp_path, "tenant", "api-key", info["tenant_id"],
                              "--passphrase-file", passfile(tmp_path)), 3, "wrong passphrase")
