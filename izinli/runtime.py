"""What every command needs before it does anything: the master key and the store at its
newest schema. Kept apart from the app so one-shot commands start without loading the web app
and the provider SDKs (aiogram alone takes seconds to import)."""
from __future__ import annotations

import logging
import os

from crypto.master import MasterKey, load_master_key
from izinli.config import Config
from store.engine import Database, StoreError, open_database, safe_url
from store.migrate import upgrade

log = logging.getLogger(__name__)


def master_key_for(config: Config) -> MasterKey:
    key = load_master_key(os.environ.get("IZINLI_MASTER_KEY"), config.master_key_path)
    if getattr(key, "loose_permissions", False):
        log.warning("master key file is readable by others; chmod 600 it",
                    extra={"path": str(config.master_key_path)})
    return key


async def open_store(config: Config) -> Database:
    """The database at its newest schema; the data dir is created (0700: it holds the master
    key and the embedded database) for the embedded default."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config.data_dir.stat().st_mode & 0o077:  # made by an older version, or by hand
        log.warning("data dir is open to other users; chmod 700 it",
                    extra={"path": str(config.data_dir)})
    db = open_database(config.database_url, echo=config.store.echo,
                       sqlite_cache_mb=config.store.sqlite_cache_mb)
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
