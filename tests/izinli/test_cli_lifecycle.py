"""`izinli tenant recover`, `tenant recovery-code` and `tenant delete` as an operator runs them."""
from __future__ import annotations

import json
import sqlite3

from test_cli import assert_one_line_error, create_tenant, passfile, run

NEW = "bulut kapı limon yürüyüş"


def test_recover_with_the_code_then_the_code_is_replaced(tmp_path):
    info = create_tenant(tmp_path)
    code_file = tmp_path / "code.txt"
    code_file.write_text(info["recovery_code"] + "\n")
    new_file = tmp_path / "new.txt"
    new_file.write_text(NEW)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("AAAA-BBBB-CCCC-DDDD-EEEE-FFFF")
    assert_one_line_error(run(tmp_path, "tenant", "recover", info["tenant_id"],
                              "--recovery-code-file", str(wrong), "--new-passphrase-file",
                              str(new_file)), 3, "wrong recovery code")
    out = run(tmp_path, "tenant", "recover", info["tenant_id"], "--recovery-code-file",
              str(code_file), "--new-passphrase-file", str(new_file))
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["passphrase_changed"] and answer["recovery_code"] != info["recovery_code"]
    assert "no longer works" in out.stderr
    assert_one_line_error(run(tmp_path, "tenant", "api-key", info["tenant_id"],
                              "--passphrase-file", passfile(tmp_path)), 3, "wrong passphrase")
    out = run(tmp_path, "tenant", "api-key", info["tenant_id"], "--passphrase-file",
              str(new_file))
    assert out.returncode == 0, out.stderr
    # A spent code opens nothing; a new one made with the passphrase replaces the last.
    assert run(tmp_path, "tenant", "recover", info["tenant_id"], "--recovery-code-file",
               str(code_file), "--new-passphrase-file", str(new_file)).returncode == 3
    out = run(tmp_path, "tenant", "recovery-code", info["tenant_id"], "--passphrase-file",
              str(new_file))
    assert out.returncode == 0 and json.loads(out.stdout)["recovery_code"], out.stderr


def test_delete_asks_for_the_name_or_takes_yes(tmp_path):
    first, second = create_tenant(tmp_path), create_tenant(tmp_path)
    out = run(tmp_path, "tenant", "delete", first["tenant_id"], stdin="Başka Eczane\n")
    assert out.returncode == 2 and "nothing was deleted" in out.stderr
    out = run(tmp_path, "tenant", "delete", first["tenant_id"], stdin="Örnek Eczane\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["deleted"] is True and "older backup" not in out.stdout
    out = run(tmp_path, "tenant", "delete", second["tenant_id"], "--yes")
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(tmp_path / "var" / "izinli.db") as db:
        assert db.execute("SELECT count(*) FROM tenants").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'tenant.delete' "
                          "AND tenant_id IS NULL").fetchone() == (2,)
    out = run(tmp_path, "audit", "verify")
    assert out.returncode == 0 and json.loads(out.stdout)["redacted"] == 4, out.stderr
    assert_one_line_error(run(tmp_path, "tenant", "delete", first["tenant_id"], "--yes"), 2,
                          "no such tenant")
