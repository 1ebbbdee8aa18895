"""İYS upload claims (issue 14 item 5, issue 13): the push drains the queue in bulk requests
under a per-tenant lease, and each record it takes says so, so a record is uploaded once even
when a process dies or an answer is lost on the way back.

- `iys_claim`: the claim (a random id) that took the record for one bulk request; NULL while it
  waits in the queue and again once İYS's answer about it is recorded.
- `iys_claimed_at`: when, by the database's clock (a lost answer is reconciled after a while).
- `iys_request_id`: İYS's requestId for that bulk request once its answer arrived (polled for
  the per-record results, also after a restart).
- `iys_consent_date`: the consentDate sent (epoch seconds, whole), which may be a second later
  than the event when two changes fell in one second; the next record of the same number must
  be later than it, and a reconciliation compares it with what İYS holds.

Indexes: the queue's index gains `id` (the push reads the queue in (occurred_at, id) order,
and an import dated at the upload gives thousands of records the same occurred_at), and a
partial index finds the few records in flight.

Columns are added (ADD COLUMN, no table rebuild); on SQLite and PostgreSQL alike.

Revision ID: 0025
Revises: 0024
"""
import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


_IN_FLIGHT = sa.text("iys_claim IS NOT NULL")


def upgrade() -> None:
    op.add_column("consent_events", sa.Column("iys_claim", sa.String(36), nullable=True))
    op.add_column("consent_events", sa.Column("iys_claimed_at", sa.Double, nullable=True))
    op.add_column("consent_events", sa.Column("iys_request_id", sa.String(64), nullable=True))
    op.add_column("consent_events", sa.Column("iys_consent_date", sa.Double, nullable=True))
    op.drop_index("ix_consent_events_iys", table_name="consent_events")
    op.create_index("ix_consent_events_iys", "consent_events",
                    ["tenant_id", "iys_sync_state", "occurred_at", "id"])
    op.create_index("ix_consent_events_iys_claim", "consent_events", ["tenant_id", "iys_claim"],
                    sqlite_where=_IN_FLIGHT, postgresql_where=_IN_FLIGHT)


def downgrade() -> None:
    op.drop_index("ix_consent_events_iys_claim", table_name="consent_events")
    op.drop_index("ix_consent_events_iys", table_name="consent_events")
    op.create_index("ix_consent_events_iys", "consent_events",
                    ["tenant_id", "iys_sync_state", "occurred_at"])
    with op.batch_alter_table("consent_events") as batch:
        batch.drop_column("iys_consent_date")
        batch.drop_column("iys_request_id")
        batch.drop_column("iys_claimed_at")
        batch.drop_column("iys_claim")
