import pytest
import sqlalchemy as sa

from store.migrate import current_revision, head_revision, upgrade
from store.tables import metadata


async def test_upgrade_reaches_head_and_is_idempotent(db):
    assert await current_revision(db) == head_revision()
    assert await upgrade(db) == head_revision()


async def test_migrations_create_every_declared_table(db):
    async with db.connect() as conn:
        names = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert {t.name for t in metadata.sorted_tables} <= names


async def test_sqlite_pragmas(db):
    if db.dialect != "sqlite":
        pytest.skip("SQLite pragmas")
    async with db.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
    assert (mode, fks, sync) == ("wal", 1, 1)


async def test_failed_transaction_leaves_nothing(db):
    from store.tables import tenants
    row = dict(id="t1", name="x", created_at=1.0, public_key=b"p", wrapped_secret=b"w",
               wrapped_lookup_key=b"l", custody="passphrase")
    try:
        async with db.begin() as conn:
            await conn.execute(tenants.insert().values(**row))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(tenants))).scalar() == 0
