"""Line leases: one sender per line across processes. A lease row per line (holder, fencing
token, expiry in the database's own clock) and the claim token on outbox rows, so a claim
whose commit answer was lost can be put back by its token alone.

Both are additions (CREATE TABLE, ADD COLUMN): `outbox` is not recreated, its triggers stay.

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "line_leases",
        sa.Column("line_id", sa.String(64), primary_key=True),  # a line, or "poll:<line>"
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.add_column("outbox", sa.Column("claim_token", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "claim_token")
    op.drop_table("line_leases")
