"""The data's whole life on the command line: recovery codes, a business deleted, backup and
restore of the embedded database (issue 17 items 4–6)."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import time
from pathlib import Path

from accounts import recovery, tenant_row
from accounts.deletion import delete_tenant, name_matches
from crypto.vault import Keyring
from izinli.commands import read_passphrase
from izinli.config import Config
from izinli.runtime import master_key_for, open_store

DATABASE = "izinli.db"
# What a backup holds besides the database: the audit key's public half and the journal of
# signed checkpoints (izinli.audit_files). Never the master key, never serve.lock.
EXTRAS = ("audit.pub", "audit.checkpoints")
MANIFEST = "izinli-backup.json"
PG_BACKUP = ("backup copies the embedded SQLite database; on PostgreSQL use pg_dump "
             "(pg_dump -Fc -f FILE DATABASE_URL, restore with pg_restore; README, Backups)")


def _say(text: str) -> None:
    print(f"izinli: {text}", file=sys.stderr)


# --- recovery codes ----------------------------------------------------------------------------

async def cmd_tenant_recovery_code(args, config: Config) -> int:
    """A new recovery code (the passphrase proves ownership); the earlier one stops working."""
    passphrase = read_passphrase(args.passphrase_file)
    db = await open_store(config)
    try:
        code = await recovery.issue_code_with_passphrase(db, args.tenant_id, passphrase, "cli",
                                                         config.crypto.kdf)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": args.tenant_id, "recovery_code": code}))
    _say(_CODE_NOTE)
    return 0


_CODE_NOTE = ("the recovery code is shown once: print it and keep it apart from the "
              "passphrase; it sets a new passphrase if that one is forgotten")


async def cmd_tenant_recover(args, config: Config) -> int:
    """A new passphrase set with the recovery code, which is replaced by a new one."""
    code = read_passphrase(args.recovery_code_file)
    new_passphrase = read_passphrase(args.new_passphrase_file)
    db = await open_store(config)
    try:
        next_code = await recovery.recover(
            db, args.tenant_id, code, new_passphrase, "cli", config.crypto.kdf,
            config.crypto.min_passphrase_length)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": args.tenant_id, "passphrase_changed": True,
                      "recovery_code": next_code}))
    _say("the old recovery code no longer works; " + _CODE_NOTE)
    return 0


# --- deleting a business -------------------------------------------------------------------------

async def cmd_tenant_delete(args, config: Config) -> int:
    from dashboard.vault_fanout import VaultFanout
    from store.bus import Bus
    db = await open_store(config)
    try:
        row = await tenant_row(db, args.tenant_id)
        typed = row.name if args.yes else _ask_name(row.name)
        if not name_matches(typed, row.name):
            raise ValueError("the business name typed does not match: nothing was deleted")
        keyring = Keyring()
        # On PostgreSQL running servers lock too (the bus and the shares); on SQLite the
        # server's campaigns are cancelled and its rows gone, so nothing is left to send.
        fanout = VaultFanout(db, Bus(db), keyring, master_key_for(config))
        done = await delete_tenant(db, args.tenant_id, typed, "cli", fanout.lock)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": done.tenant_id, "deleted": True, "rows": done.rows,
                      "campaigns_stopped": done.campaigns_stopped,
                      "audit_entries_redacted": done.audit_entries_redacted}))
    _say("backups made before now still hold this business, readable with its passphrase or "
         "recovery code of that time: delete them too (README, Deleting a business)")
    return 0


def _ask_name(name: str) -> str:
    print(f"This deletes the business '{name}' and all its data for good. Type its name to "
          "confirm: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().rstrip("\r\n")


# --- backup and restore --------------------------------------------------------------------------

def _sqlite_path(config: Config) -> Path:
    if not config.database_url.startswith("sqlite"):
        raise ValueError(PG_BACKUP)
    from sqlalchemy.engine import make_url
    return Path(make_url(config.database_url).database or "")


async def cmd_backup(args, config: Config) -> int:
    source = _sqlite_path(config)
    if not source.is_file():
        raise ValueError(f"no database at {source}: nothing to back up")
    target = Path(args.file)
    if target.exists():
        raise ValueError(f"{target} exists: give a new file name")
    size = await asyncio.to_thread(_backup, source, config.data_dir, target)
    print(json.dumps({"backup": str(target), "bytes": size, "database": str(source),
                      "master_key_included": False}))
    _say(f"the master key is NOT in the backup (by design): keep your copy of "
         f"{config.master_key_path} (or IZINLI_MASTER_KEY) apart from it; a restore needs both")
    return 0


def _backup(source: Path, data_dir: Path, target: Path) -> int:
    """SQLite's online backup of a consistent snapshot (writers go on meanwhile), plus the
    audit files, as one tar file made 0600 and moved into place whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    snapshot = target.with_name(f".{target.name}.{os.getpid()}.db")
    try:
        _private_file(snapshot)
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(snapshot)
            with contextlib.closing(dst):
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            src.close()
        _private_file(partial)
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(snapshot, arcname=DATABASE)
            for name in EXTRAS:
                if (data_dir / name).is_file():
                    tar.add(data_dir / name, arcname=name)
            manifest = json.dumps({"format": 1, "made_at": time.time(),
                                   "master_key_included": False}).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(manifest), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(manifest))
        os.replace(partial, target)
    finally:
        for leftover in (snapshot, partial):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return target.stat().st_size


def _private_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


async def cmd_restore(args, config: Config) -> int:
    if not config.database_url.startswith("sqlite"):
        raise ValueError("restore fills an embedded SQLite data dir; on PostgreSQL use "
                         "pg_restore (README, Backups)")
    target = _sqlite_path(config)
    data_dir = config.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(f"restore goes into an empty data dir; {data_dir} is not empty")
    if target.parent.resolve() != data_dir.resolve():
        raise ValueError("restore needs the database in the data dir (store.url unset)")
    restored = await asyncio.to_thread(_restore, Path(args.file), data_dir)
    db = await open_store(config)  # checks it opens, and brings its schema up to date
    await db.close()
    print(json.dumps({"restored": str(data_dir), "files": restored}))
    _say(f"start izinli with the master key of the backed-up install at "
         f"{config.master_key_path} (or IZINLI_MASTER_KEY)")
    return 0


def _restore(archive: Path, data_dir: Path) -> list[str]:
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError):
        raise ValueError(f"{archive} is not an izinli backup") from None
    with tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        if DATABASE not in members or MANIFEST not in members:
            raise ValueError(f"{archive} is not an izinli backup")
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        names = [DATABASE, *(n for n in EXTRAS if n in members)]
        try:
            for name in names:  # only names we know: nothing lands outside the data dir
                _extract(tar, members[name], data_dir / name)
            if not _intact(data_dir / DATABASE):
                raise ValueError(f"the database in {archive} is damaged")
        except BaseException:  # never half-restored: the data dir is left empty again
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    (data_dir / name).unlink()
            raise
    return names


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = tar.extractfile(member)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source:
        while chunk := source.read(1 << 20):
            out.write(chunk)


def _intact(path: Path) -> bool:
    check = sqlite3.connect(path)
    try:
        return check.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False
    finally:
        check.close()
