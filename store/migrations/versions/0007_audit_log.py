"""Audit log: hash-chained entries, signed checkpoints, the operator's signing key.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.Column("verify_key", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "operator_keys",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("wrapped_seed", sa.LargeBinary, nullable=False),
        sa.Column("verify_key", sa.LargeBinary(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("operator_keys")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_log")
