"""The master key lives apart from the data (issue 17 item 3): made in the user's config dir
(or crypto.master_key_file), never in the data dir; IZINLI_MASTER_KEY wins; an install whose
key sits beside the data keeps working and is told how to move it."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from crypto.master import MasterKey, generate_master_key_text, parse_master_key_text
from izinli import config as configuration
from izinli.runtime import master_key_for


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    return configuration.load(None, env={}, overrides={"data_dir": tmp_path / "var"})


def _same(key, text: str) -> bool:
    probe = key.wrap(b"x")
    return MasterKey(parse_master_key_text(text)).unwrap(probe) == b"x"


def test_first_start_makes_the_key_in_the_config_dir_and_says_so(cfg, caplog):
    caplog.set_level(logging.WARNING, "izinli.runtime")
    key = master_key_for(cfg)
    expected = cfg.master_key_path
    assert expected == Path(os.environ["XDG_CONFIG_HOME"]) / "izinli" / "master.key"
    assert key.created and key.source == str(expected) and expected.exists()
    assert not cfg.legacy_master_key_path.exists()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert str(expected) in said and "apart from the data" in said
    caplog.clear()
    assert not master_key_for(cfg).created and not caplog.records  # said once, at creation


def test_a_key_beside_the_data_keeps_working_and_is_warned_once(cfg, caplog):
    caplog.set_level(logging.WARNING, "izinli.runtime")
    cfg.data_dir.mkdir(parents=True)
    text = generate_master_key_text()
    cfg.legacy_master_key_path.write_text(text + "\n")
    cfg.legacy_master_key_path.chmod(0o600)
    key = master_key_for(cfg)
    assert _same(key, text) and not cfg.master_key_path.exists()  # nothing new was made
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "mv " in warned[0] and str(cfg.master_key_path) in warned[0]
    master_key_for(cfg)
    assert len(caplog.records) == 1  # once per process


def test_two_different_keys_are_refused(cfg):
    cfg.data_dir.mkdir(parents=True)
    cfg.legacy_master_key_path.write_text(generate_master_key_text())
    cfg.master_key_path.parent.mkdir(parents=True)
    cfg.master_key_path.write_text(generate_master_key_text())
    with pytest.raises(ValueError, match="two different master keys"):
        master_key_for(cfg)


def test_the_setting_names_the_file_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    place = tmp_path / "keys" / "izinli.key"
    cfg = configuration.load(None, env={"IZINLI_MASTER_KEY_FILE": str(place)},
                             overrides={"data_dir": tmp_path / "var"})
    assert master_key_for(cfg).source == str(place) and place.exists()
    text = generate_master_key_text()
    monkeypatch.setenv("IZINLI_MASTER_KEY", text)
    key = master_key_for(cfg)
    assert key.source == "env" and _same(key, text)
