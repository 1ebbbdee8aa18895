"""Issue 17 items 4 and 6: the recovery-code wrap of the tenant key (a second wrap of the same
secret key, under a random code the owner printed; NULL for tenants made before it, until an
owner makes a code while unlocked). Deletion needs no schema: it removes rows and redacts the
tenant's audit entries in place (optout.audit).

Revision ID: 0032
Revises: 0031
"""
import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("recovery_wrapped_secret", sa.LargeBinary,
                                       nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("recovery_wrapped_secret")
