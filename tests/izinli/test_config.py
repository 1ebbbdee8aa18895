"""Configuration loading: defaults, TOML, environment, and one clear error per bad value."""
import re
from pathlib import Path

import pytest

from izinli import config as configuration
from izinli.config import Config, ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_zero_config_defaults():
    cfg = configuration.load(None, env={})
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.database_url.startswith("sqlite+aiosqlite:///")
    assert cfg.database_url.endswith("/var/izinli.db")


def test_example_file_documents_exactly_the_defaults():
    assert configuration.load(EXAMPLE, env={}) == Config()


def test_every_option_is_in_the_example_file():
    text = EXAMPLE.read_text()
    for key in configuration._all_keys(Config, ""):
        assert f"{key.split('.')[-1]} =" in text, key


def test_precedence_file_then_env_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[log]\nlevel = "debug"\n')
    cfg = configuration.load(f, env={"IZINLI_PORT": "9100", "IZINLI_DATABASE_URL": "x://"},
                             overrides={"server.host": "127.0.0.2"})
    assert (cfg.server.port, cfg.server.host, cfg.log.level) == (9100, "127.0.0.2", "DEBUG")
    assert cfg.store.url == "x://"
    cfg = configuration.load(None, env={"IZINLI_SERVER_MAX_BODY_BYTES": "5"})
    assert cfg.server.max_body_bytes == 5


@pytest.mark.parametrize("toml, message", [
    ('[server]\nport = "abc"\n', "'server.port' must be an integer"),
    ('[server]\nprot = 1\n', "unknown config key 'server.prot'"),
    ('colour = 1\n', "unknown config key 'colour'"),
    ('[crypto]\nkdf = "fast"\n', "'crypto.kdf' must be one of"),
    ('server = 1\n', "'server' must be a table"),
    ('[store]\necho = "maybe"\n', "'store.echo' must be true or false"),
    ('[server\n', "not valid TOML"),
])
def test_bad_values_name_the_key(tmp_path, toml, message):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        configuration.load(f, env={})


def test_bad_env_value_names_the_key():
    with pytest.raises(ConfigError, match=r"'server\.port' must be an integer"):
        configuration.load(None, env={"IZINLI_PORT": "eighty"})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        configuration.load(tmp_path / "nope.toml", env={})


def test_trusted_proxies_are_a_list_of_addresses_or_networks():
    from izinli.config import ConfigError, load
    assert load(None, env={}).server.trusted_proxies == ()
    env = {"IZINLI_SERVER_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}
    assert load(None, env=env).server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load(None, env={"IZINLI_SERVER_TRUSTED_PROXIES": "127.0.0.1,proxy.local"})
    assert load(None, env={}).crypto.kdf_concurrency == 2
