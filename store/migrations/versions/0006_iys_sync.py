"""İYS sync state per tenant: wrapped API credentials and the changes cursor.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_settings") as batch:
        batch.add_column(sa.Column("iys_credentials", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("iys_cursor", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant_settings") as batch:
        batch.drop_column("iys_cursor")
        batch.drop_column("iys_credentials")
