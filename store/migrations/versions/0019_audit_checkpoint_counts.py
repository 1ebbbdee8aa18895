"""Audit checkpoints sign the entry count; the stored audit signing key goes.

Checkpoints are now signed by a key derived from the master key (never stored), over the
entry count, the last sequence number and the head hash. `entries` is NULL on the checkpoints
made before this revision: they were signed by a key kept in `operator_keys`, which anyone who
can write to the database could replace, so verification no longer trusts them (the first start
after the upgrade signs the whole chain again). The stored key is dropped with its table.

Revision ID: 0019
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

COUNT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    # A nullable column is added in place on SQLite too (no table rebuild).
    op.add_column("audit_checkpoints", sa.Column("entries", COUNT, nullable=True))
    op.drop_table("operator_keys")


def downgrade() -> None:
    op.create_table(
        "operator_keys",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("wrapped_seed", sa.LargeBinary, nullable=False),
        sa.Column("verify_key", sa.LargeBinary(32), nullable=False),
    )
    # The older code would read these checkpoints as signed by a key it no longer has.
    op.execute("DELETE FROM audit_checkpoints WHERE entries IS NOT NULL")
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_column("entries")
