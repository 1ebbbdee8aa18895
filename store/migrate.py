"""Applies the Alembic migrations in store/migrations to a Database."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from store.engine import Database

_SCRIPTS = Path(__file__).with_name("migrations")
# Any fixed 64-bit number: serialises concurrent `upgrade` runs (serve + workers) on PostgreSQL.
_PG_LOCK = 0x697A696E6C69


def _alembic_config(sync_conn) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    cfg.attributes["connection"] = sync_conn
    return cfg


def head_revision() -> str:
    return ScriptDirectory(str(_SCRIPTS)).get_current_head()


async def upgrade(db: Database) -> str:
    """Brings the schema to the newest revision; returns it. Safe to run concurrently."""
    async with db.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))
    return await current_revision(db)


async def current_revision(db: Database) -> str | None:
    async with db.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())
