"""`izinli lines list|pause|resume|archive|edit`: the line service from the command line (run
in-process: the executable itself is covered by test_cli)."""
from __future__ import annotations

import json

import pytest

from izinli import cli

PASSPHRASE = "doğru at pil zımba 42"


@pytest.fixture
def izinli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IZINLI_KDF", "min")
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    monkeypatch.delenv("IZINLI_DATABASE_URL", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            cli.main([*args, "--data-dir", str(tmp_path / "var")])
        out = capsys.readouterr()
        return exited.value.code, out.out, out.err
    return run


def _one_line_error(result, code: int, contains: str) -> None:
    status, _, err = result
    assert status == code and len(err.strip().splitlines()) == 1 and contains in err, result


def test_lines_from_cli(izinli, tmp_path):
    (tmp_path / "pass.txt").write_text(PASSPHRASE, encoding="utf-8")
    code, out, err = izinli("tenant", "create", "Eczane", "--passphrase-file",
                            str(tmp_path / "pass.txt"))
    assert code == 0, err
    tenant = json.loads(out)["tenant_id"]
    code, out, err = izinli("lines", "list", tenant)
    (line,) = json.loads(out)["lines"]
    assert (line["channel"], line["state"]) == ("sandbox", "active")
    code, out, err = izinli("lines", "pause", tenant, line["id"])
    assert json.loads(out)["state_reason"] == "paused by owner", err
    code, out, err = izinli("lines", "resume", tenant, line["id"])
    assert (json.loads(out)["state"], json.loads(out)["resumed_from"]) == (
        "active", "paused by owner")
    code, out, err = izinli("lines", "edit", tenant, line["id"], "--name", "Vitrin",
                            "--rate", "50")
    assert (json.loads(out)["name"], json.loads(out)["rate_per_second"]) == ("Vitrin", 50.0)
    # Bad input: one line on stderr and exit 2 (a tier on a sandbox line, an unknown line).
    _one_line_error(izinli("lines", "edit", tenant, line["id"], "--tier", "1"), 2,
                    "'messaging_tier' cannot be changed")
    _one_line_error(izinli("lines", "edit", tenant, line["id"]), 2, "nothing to change")
    _one_line_error(izinli("lines", "pause", tenant, "nope"), 2, "no such line")
    code, out, err = izinli("lines", "archive", tenant, line["id"])
    assert json.loads(out)["state"] == "archived", err
    _one_line_error(izinli("lines", "resume", tenant, line["id"]), 2,
                    "archived line cannot be resumed")
