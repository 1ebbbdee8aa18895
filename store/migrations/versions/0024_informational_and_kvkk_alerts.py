"""Informational campaigns remember the commercial-looking words the owner confirmed; KVKK
requests remember that their owners were alerted about the deadline.

`campaigns.commercial_words` (JSON, NULL for commercial campaigns and for those created before
this revision: their sealed text cannot be read here, so such an informational draft is checked
when it is started). `subject_requests.alerted_at`: the deadline alert goes out once per
request. Two nullable columns, added in place on SQLite too (no table rebuild).

Revision ID: 0024
Revises: 0023
"""
import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("commercial_words", sa.JSON, nullable=True))
    op.add_column("subject_requests", sa.Column("alerted_at", sa.Double, nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35): rebuilding `campaigns` would cascade-delete its
    # outbox rows.
    op.drop_column("subject_requests", "alerted_at")
    op.drop_column("campaigns", "commercial_words")
