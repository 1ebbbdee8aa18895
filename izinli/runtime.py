"""What every command needs before it does anything: the master key and the store at its
newest schema. Kept apart from the app so one-shot commands start without loading the web app
and the provider SDKs (aiogram alone takes seconds to import)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from crypto.master import MasterKey, load_master_key
from izinli.config import Config
from store.engine import Database, StoreError, open_database, safe_url
from store.migrate import upgrade

log = logging.getLogger(__name__)


def master_key_for(config: Config) -> MasterKey:
    """IZINLI_MASTER_KEY, else the key file apart from the data (config.master_key_path),
    created on first start. An install whose key still sits in the data dir (made before
    issue 17) goes on with it, warned. ValueError when both files exist and differ."""
    env = os.environ.get("IZINLI_MASTER_KEY")
    target, legacy = config.master_key_path, config.legacy_master_key_path
    beside = legacy.exists() and not _same_file(legacy, target)
    if env is not None and env.strip():
        key = load_master_key(env, target)
    elif beside and not target.exists():
        key = load_master_key(None, legacy)
        _warn_once(legacy, "the master key sits in the data dir, so every copy of the data "
                   f"carries it; stop izinli, move it with: mkdir -p {target.parent} && "
                   f"mv {legacy} {target} (or set crypto.master_key_file)", target)
        return _checked(key, legacy)
    else:
        key = load_master_key(None, target)
        if key.created:
            log.warning(f"first start: created the master key at {target}. Back it up now, "
                        "apart from the data backups: without it line credentials, logins "
                        "and service-custody vaults cannot be opened, and a copy of the data "
                        "must never travel with it", extra={"path": str(target)})
    if beside:
        if _key_text(legacy) != _key_text(target) and key.source != "env":
            raise ValueError(f"two different master keys: {target} and {legacy}; keep the one "
                             "this data was made with and remove the other")
        _warn_once(legacy, "a master key file is left in the data dir: delete it (the key "
                   f"in use is {'IZINLI_MASTER_KEY' if key.source == 'env' else target})",
                   target)
    return _checked(key, target)


_warned: set[str] = set()  # one warning per file and process, not one per command step


def _warn_once(path: Path, message: str, target: Path) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(message, extra={"path": str(path), "apart_from_data": str(target)})


def _checked(key: MasterKey, path: Path) -> MasterKey:
    if key.loose_permissions:
        log.warning("master key file is readable by others; chmod 600 it",
                    extra={"path": str(path)})
    return key


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _key_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


async def open_store(config: Config) -> Database:
    """The database at its newest schema; the data dir is created (0700: it holds the
    embedded database) for the embedded default."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config.data_dir.stat().st_mode & 0o077:  # made by an older version, or by hand
        log.warning("data dir is open to other users; chmod 700 it",
                    extra={"path": str(config.data_dir)})
    db = open_database(config.database_url, echo=config.store.echo,
                       sqlite_cache_mb=config.store.sqlite_cache_mb,
                       sqlite_bulk_cache_mb=config.store.sqlite_bulk_cache_mb)
    try:
        await _reachable(db, config.database_url)
        await upgrade(db)
    except BaseException:
        await db.close()
        raise
    return db


async def _reachable(db: Database, url: str) -> None:
    try:
        await db.ping()
    except Exception as exc:
        reason = exc.__cause__ or exc  # the driver's own words behind DatabaseUnavailableError
        reason = getattr(reason, "orig", None) or reason
        raise StoreError(f"store.url: cannot connect to {safe_url(url)} "
                         f"({type(reason).__name__}: {_first_line(reason)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
