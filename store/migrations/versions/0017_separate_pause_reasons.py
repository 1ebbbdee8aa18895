"""Separate auto-pause reasons: the error-run pause and the opt-out-rate pause no longer share
`spam_guard` and one acknowledgement flag (resuming after an error run used to switch the
opt-out guard off for the rest of the campaign).

`campaigns.guard_acknowledged` becomes `optout_acknowledged`, set only by resuming after an
`optout_rate` pause. Existing flags are cleared: one of them may have been set by an error-run
resume, and a wrongly re-armed guard costs the owner one more resume, while a wrongly disarmed
one lets a campaign that people are refusing run on. Paused campaigns' `spam_guard: …` reasons
are renamed to what they were, so a resume acknowledges the right one.

A plain RENAME COLUMN (SQLite ≥ 3.25, PostgreSQL), not a batch copy of `campaigns`.

Revision ID: 0017
Revises: 0016
"""
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_PREFIX = "spam_guard"


def upgrade() -> None:
    op.execute("ALTER TABLE campaigns RENAME COLUMN guard_acknowledged TO optout_acknowledged")
    op.execute("UPDATE campaigns SET optout_acknowledged = false")
    rest = f"substr(state_reason, {len(_PREFIX) + 1})"
    op.execute(f"UPDATE campaigns SET state_reason = 'optout_rate' || {rest} "
               f"WHERE state_reason LIKE '{_PREFIX}: % opted out'")
    op.execute(f"UPDATE campaigns SET state_reason = 'error_run' || {rest} "
               f"WHERE state_reason LIKE '{_PREFIX}: % send errors in a row'")


def downgrade() -> None:
    op.execute("UPDATE campaigns SET state_reason = 'spam_guard' || substr(state_reason, 10) "
               "WHERE state_reason LIKE 'error_run: %'")
    op.execute("UPDATE campaigns SET state_reason = 'spam_guard' || substr(state_reason, 12) "
               "WHERE state_reason LIKE 'optout_rate: %'")
    op.execute("ALTER TABLE campaigns RENAME COLUMN optout_acknowledged TO guard_acknowledged")
