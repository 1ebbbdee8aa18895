"""Configuration: one frozen dataclass tree, loaded once from defaults ← TOML ← environment."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration value is unknown or of the wrong shape; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Public https URL of this service; when set, Telegram uses webhooks instead of long polling.
    public_url: str = ""
    # Without a public URL Telegram bots are long-polled; each poll waits this long.
    telegram_poll_seconds: int = 25
    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 20 * 1024 * 1024
    # Serve https directly (PEM files); or leave empty and terminate TLS in a reverse proxy.
    tls_cert: str = ""
    tls_key: str = ""
    # Reverse proxies (IPs or CIDRs) whose X-Forwarded-Proto/-For headers are believed.
    trusted_proxies: tuple[str, ...] = ()
    # What `izinli serve` runs: all (API, pages, webhooks and sending), web (no dispatcher,
    # timers or Telegram polling) or worker (those alone, with /healthz and /metrics).
    # web and worker need PostgreSQL: SQLite serves one process, which does everything.
    role: str = "all"


@dataclass(frozen=True)
class StoreConfig:
    # Empty means SQLite at <data_dir>/izinli.db.
    url: str = ""
    echo: bool = False
    # SQLite page cache per connection, MiB (more helps million-row imports; costs memory).
    sqlite_cache_mb: int = 2
    sqlite_bulk_cache_mb: int = 8


@dataclass(frozen=True)
class CryptoConfig:
    # Argon2id strength for new passphrases: moderate (production), interactive, min (tests only).
    kdf: str = "moderate"
    unlock_ttl_seconds: int = 8 * 3600
    max_unlock_ttl_seconds: int = 7 * 24 * 3600
    min_passphrase_length: int = 12
    # Argon2id hashes (logins, unlocks) running at once; a burst beyond this gets 429.
    kdf_concurrency: int = 2
    # The operator master key file, kept apart from the data so that a copy of the data dir
    # never carries it. Empty: $XDG_CONFIG_HOME/izinli/master.key (~/.config/izinli/...),
    # created on first start. IZINLI_MASTER_KEY, when set, is used instead of any file.
    master_key_file: str = ""


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    # json: one JSON object per line; text: key=value lines for a terminal.
    format: str = "json"


@dataclass(frozen=True)
class CampaignConfig:
    # Auto-pause when more than this share of the first sends opt out or block.
    spam_first_sends: int = 200
    spam_optout_rate: float = 0.02
    # Auto-pause after this many send errors in a row.
    max_consecutive_errors: int = 50
    # A message the provider could not take (5xx, unreachable) is tried this many times in all;
    # the line waits provider_backoff_seconds after the first wave of errors, doubling up to
    # provider_backoff_max_seconds (5 tries within about 30 s), before the message is failed.
    provider_attempts: int = 5
    provider_backoff_seconds: float = 2.0
    provider_backoff_max_seconds: float = 30.0
    # Messages one round of a line claims at most (a round is also at most half a second of
    # the line's rate). A line whose rounds are this full overlaps two rounds.
    max_batch: int = 2000
    # A CSV import of a file at least this large (KiB) is parsed and sealed in a worker
    # process forked for it, beside the server process that writes it.
    import_worker_min_kb: int = 256


@dataclass(frozen=True)
class RetentionConfig:
    # Consent records are kept this long after the consent ended (Law 6563: 3 years).
    consent_years: float = 3.0
    # Inbound and simulated messages are kept this long.
    message_years: float = 3.0
    # Erased contacts' remaining rows are deleted after this many days (0: at the next purge).
    erased_contact_days: float = 0.0


@dataclass(frozen=True)
class IysConfig:
    # How often refusals made in İYS are pulled and pending consents pushed (the law expects
    # at least hourly); a fraction is allowed (0.05 = every 3 s, for tests). Once per cluster.
    pull_minutes: float = 15.0


@dataclass(frozen=True)
class ProvidersConfig:
    # Where the providers' APIs are. Operator configuration only: a line or a tenant's İYS
    # setting can never name an address, since its tokens and recipients would follow it.
    # The WhatsApp URL carries the Graph API version the client speaks.
    whatsapp_url: str = "https://graph.facebook.com/v21.0"
    telegram_url: str = "https://api.telegram.org"
    iys_url: str = "https://api.iys.org.tr"
    # Seconds a WhatsApp send may wait for Graph's answer. Past it the message may or may not
    # have been taken: it is recorded `unknown`, never sent again by itself.
    whatsapp_timeout_seconds: float = 15.0


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("var")
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    crypto: CryptoConfig = field(default_factory=CryptoConfig)
    log: LogConfig = field(default_factory=LogConfig)
    campaigns: CampaignConfig = field(default_factory=CampaignConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    iys: IysConfig = field(default_factory=IysConfig)
    providers: ProvidersConfig = field(default_factory=ProvidersConfig)

    @property
    def database_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{(self.data_dir / 'izinli.db').resolve()}"

    @property
    def master_key_path(self) -> Path:
        """Where the master key file is (or is created): crypto.master_key_file, else the
        user's config dir, read from the environment when asked (tests point it elsewhere)."""
        if self.crypto.master_key_file:
            return Path(self.crypto.master_key_file).expanduser()
        base = os.environ.get("XDG_CONFIG_HOME", "").strip()
        root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
        return root / "izinli" / "master.key"

    @property
    def legacy_master_key_path(self) -> Path:
        """Where versions before issue 17 created the key: beside the data."""
        return self.data_dir / "master.key"


_CHOICES = {
    "crypto.kdf": ("moderate", "interactive", "min"),
    "log.level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "log.format": ("json", "text"),
    "server.role": ("all", "web", "worker"),
}
_URLS = ("providers.whatsapp_url", "providers.telegram_url", "providers.iys_url")
# A timer's period (0 or an overflowing one cannot be scheduled): key → the largest allowed.
_ABOVE_ZERO = {"iys.pull_minutes": 1440, "campaigns.max_batch": 10_000}
_ALIASES = {
    "IZINLI_DATABASE_URL": "store.url",
    "IZINLI_DATA_DIR": "data_dir",
    "IZINLI_HOST": "server.host",
    "IZINLI_PORT": "server.port",
    "IZINLI_TLS_CERT": "server.tls_cert",
    "IZINLI_TLS_KEY": "server.tls_key",
    "IZINLI_PUBLIC_URL": "server.public_url",
    "IZINLI_LOG_LEVEL": "log.level",
    "IZINLI_KDF": "crypto.kdf",
    "IZINLI_MASTER_KEY_FILE": "crypto.master_key_file",
}
# Read by the composition root directly, never stored in the Config tree (it must not be printed).
SECRET_ENV = ("IZINLI_MASTER_KEY",)


def load(path: Path | None = None, env: typing.Mapping[str, str] | None = None,
         overrides: dict[str, Any] | None = None) -> Config:
    """Defaults ← TOML file ← environment ← explicit overrides (CLI flags, dotted keys)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_flatten(_read_toml(path)))
    values.update(_from_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(Config, values, "")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _from_env(env: typing.Mapping[str, str]) -> dict[str, Any]:
    known = {_env_name(k): k for k in _all_keys(Config, "")}
    known.update(_ALIASES)
    return {known[name]: value for name, value in env.items() if name in known}


def _env_name(dotted: str) -> str:
    return "IZINLI_" + dotted.replace(".", "_").upper()


def _all_keys(cls: type, prefix: str) -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _all_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _build(cls: type, values: dict[str, Any], prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key.startswith(prefix) and key[len(prefix):].split(".")[0] not in names:
            raise ConfigError(f"unknown config key '{key}'")
    kwargs = {}
    for f in dataclasses.fields(cls):
        dotted, kind = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(kind):
            sub = {k: v for k, v in values.items() if k.startswith(dotted + ".")}
            if dotted in values:
                raise ConfigError(f"config key '{dotted}' must be a table")
            kwargs[f.name] = _build(kind, sub, dotted + ".")
        elif dotted in values:
            kwargs[f.name] = _coerce(dotted, kind, values[dotted])
    return cls(**kwargs)


def _coerce(key: str, kind: Any, raw: Any) -> Any:
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        value = _COERCE[kind](raw)
    except (ValueError, TypeError):
        raise ConfigError(f"config key '{key}' must be {_NAMES[kind]}, got {raw!r}") from None
    if kind in (int, float) and value < 0:
        raise ConfigError(f"config key '{key}' must not be negative, got {value}")
    if key in _ABOVE_ZERO and not 0 < value <= _ABOVE_ZERO[key]:
        raise ConfigError(f"config key '{key}' must be more than 0 and at most "
                          f"{_ABOVE_ZERO[key]}, got {raw!r}")
    if key in _URLS and not _is_http_url(value):
        raise ConfigError(f"config key '{key}' must be an http(s) URL, got {raw!r}")
    if key == "server.trusted_proxies":
        _check_networks(key, value)
    choices = _CHOICES.get(key)
    if choices:
        value = value.upper() if key == "log.level" else value
        if value not in choices:
            raise ConfigError(
                f"config key '{key}' must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _is_http_url(value: str) -> bool:
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _to_int(raw: Any) -> int:
    if isinstance(raw, (bool, float)):
        raise TypeError
    return int(raw)


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    words = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}
    if isinstance(raw, str) and raw.lower() in words:
        return words[raw.lower()]
    raise ValueError


def _to_str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError
    return raw


def _to_path(raw: Any) -> Path:
    return Path(_to_str(raw)) if not isinstance(raw, Path) else raw


def _check_networks(key: str, entries: tuple[str, ...]) -> None:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"config key '{key}': '{entry}' is not an IP address or "
                              "network") from None


def _to_str_tuple(raw: Any) -> tuple[str, ...]:
    # A TOML array, or a comma-separated string from the environment.
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise TypeError
    return tuple(i.strip() for i in items if i.strip())


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise TypeError
    return float(raw)


_COERCE = {int: _to_int, bool: _to_bool, str: _to_str, Path: _to_path, float: _to_float,
           tuple[str, ...]: _to_str_tuple}
_NAMES = {int: "an integer", bool: "true or false", str: "a string", Path: "a path",
          float: "a number", tuple[str, ...]: "a list of strings"}
