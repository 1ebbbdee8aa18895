"""Timer runs: one row per (job, due slot), so a cluster-wide timer (retention purge, audit
checkpoint, İYS sync, deadline warnings, counter folds, erasures) runs once per due time
across all processes. The process whose INSERT … ON CONFLICT DO NOTHING returns the row runs
it; `finished_at` stays NULL while it runs, so a slow run is not overlapped by the next one.

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timer_runs",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("slot", sa.BigInteger, primary_key=True),  # due time // the job's period
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),  # the database's clock
        sa.Column("finished_at", sa.Double, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("timer_runs")
