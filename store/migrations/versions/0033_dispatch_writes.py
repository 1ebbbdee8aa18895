"""Issue 18: the outbox statement trigger's plan (PostgreSQL).

The UPDATE branch of izinli_outbox_moved() (migration 0011) joins its two transition tables.
PL/pgSQL plans that query once per connection, with the row count of the first firing: a
connection first used for a one-row update kept a nested loop, and every later 2,000-row
claim or result write on it compared 4 M row pairs (~0.85 s a statement, measured). With
nested loops off for this function alone the join is hashed (or merged) whatever the first
firing was: 2,000-row update 42 ms instead of 850 ms; a one-row update unchanged. Re-planning
on every firing (EXECUTE) measured 59 ms, so the function keeps its cached plan.

SQLite: nothing (row triggers, no join); the one-statement result writes are campaigns.outbox.

Revision ID: 0033
Revises: 0032
"""
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION izinli_outbox_moved() SET enable_nestloop = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION izinli_outbox_moved() RESET enable_nestloop")
