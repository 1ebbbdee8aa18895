"""The data dir and what it holds are the owner's alone (issue 12 item 7): the directory is
created 0700, the SQLite files (izinli.db, -wal, -shm) and the master key (kept apart from the
data) are 0600."""
import os
import stat

from izinli import config as configuration
from izinli.app import create_app


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_data_dir_is_0700_and_database_files_are_0600(tmp_path, aiohttp_client,
                                                             monkeypatch):
    monkeypatch.delenv("IZINLI_MASTER_KEY", raising=False)
    old = os.umask(0o022)  # the usual umask, which left izinli.db 0644
    try:
        data_dir = tmp_path / "var"
        config = configuration.load(None, env={}, overrides={
            "data_dir": data_dir, "crypto.kdf": "min", "server.telegram_poll_seconds": 1})
        client = await aiohttp_client(create_app(config))
        import accounts
        from dashboard.keys import db_key, master_key
        await accounts.create_tenant(client.app[db_key], client.app[master_key], "Mağaza",
                                     "doğru at pil zımba 42", kdf="min")  # writes the WAL
        assert _mode(data_dir) == 0o700
        names = {"izinli.db", "izinli.db-wal", "izinli.db-shm"}
        assert names <= set(os.listdir(data_dir))
        for name in names:
            assert _mode(data_dir / name) == 0o600, name
        # The master key lives apart from the data (issue 17 item 3), private as well.
        assert _mode(config.master_key_path) == 0o600
        assert _mode(config.master_key_path.parent) == 0o700
    finally:
        os.umask(old)


async def test_loose_database_files_are_tightened_at_start(tmp_path):
    from store.engine import open_database
    db_file = tmp_path / "izinli.db"
    db_file.touch()
    os.chmod(db_file, 0o644)
    db = open_database(f"sqlite+aiosqlite:///{db_file}")
    try:
        await db.ping()
        assert _mode(db_file) == 0o600
    finally:
        await db.close()
