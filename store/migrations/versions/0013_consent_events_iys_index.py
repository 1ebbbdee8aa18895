"""An index for the İYS upload queue: a tenant's pending events in order (the push), the
counts by upload state and the rejections (the settings page, GET /iys) read an index range
instead of every consent event the tenant has.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_consent_events_iys", "consent_events",
                    ["tenant_id", "iys_sync_state", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_consent_events_iys", table_name="consent_events")
