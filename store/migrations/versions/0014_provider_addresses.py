"""Provider addresses become operator configuration (providers.*): stored line credentials and
İYS accounts may still carry a tenant's `base_url`. They are wrapped by the master key, which
a migration does not hold, so this step marks every stored credential as format 1 ("may hold
an address"); at start-up the server, which holds the master key, rewraps each one without
it and marks it 2 (bot.credentials / optout.iys_sync `drop_stored_addresses`). Until then,
and forever after, reading credentials ignores any stored address.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild): existing rows take the default 1.
    op.add_column("lines", sa.Column("credentials_format", sa.Integer, nullable=False,
                                     server_default="1"))
    op.add_column("tenant_settings", sa.Column("iys_credentials_format", sa.Integer,
                                               nullable=False, server_default="1"))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35): rebuilding `lines` would cascade-delete the rows of
    # every table that references it.
    op.drop_column("tenant_settings", "iys_credentials_format")
    op.drop_column("lines", "credentials_format")
