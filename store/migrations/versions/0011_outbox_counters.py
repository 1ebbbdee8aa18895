"""Campaign counters kept by the database: every change of an outbox row's state is written as
a move (by triggers, so no code path can forget it), and moves are folded into per-campaign
counts and per-tenant 15-minute counts of messages entering each state. Reading a campaign's
progress or today's figures then costs the same for 100 or 1,000,000 recipients.

SQLite has row triggers only (one move per row); PostgreSQL uses statement triggers with
transition tables, so a statement that moves 1,000 rows writes one move per (campaign, state).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BUCKET = 900  # seconds; every time zone's midnight falls on a 15-minute boundary

SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER outbox_moves_insert AFTER INSERT ON outbox BEGIN
      INSERT INTO outbox_moves (tenant_id, campaign_id, state, reason, delta, at)
      VALUES (NEW.tenant_id, NEW.campaign_id, NEW.state, COALESCE(NEW.reason, ''), 1,
              {SQLITE_NOW});
    END""",
    f"""CREATE TRIGGER outbox_moves_delete AFTER DELETE ON outbox BEGIN
      INSERT INTO outbox_moves (tenant_id, campaign_id, state, reason, delta, at)
      VALUES (OLD.tenant_id, OLD.campaign_id, OLD.state, COALESCE(OLD.reason, ''), -1,
              {SQLITE_NOW});
    END""",
    # One move per changed row (the state left is old_state): half the writes of two moves.
    f"""CREATE TRIGGER outbox_moves_update AFTER UPDATE OF state, reason ON outbox
    WHEN OLD.state IS NOT NEW.state OR OLD.reason IS NOT NEW.reason BEGIN
      INSERT INTO outbox_moves (tenant_id, campaign_id, state, reason, delta, at, old_state,
                                old_reason)
      VALUES (NEW.tenant_id, NEW.campaign_id, NEW.state, COALESCE(NEW.reason, ''), 1,
              {SQLITE_NOW}, OLD.state, COALESCE(OLD.reason, ''));
    END""",
]

PG_FUNCTION = """
CREATE FUNCTION izinli_outbox_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO outbox_moves (tenant_id, campaign_id, state, reason, delta, at)
    SELECT tenant_id, campaign_id, state, COALESCE(reason, ''), count(*),
           extract(epoch FROM clock_timestamp())
    FROM new_rows GROUP BY tenant_id, campaign_id, state, COALESCE(reason, '');
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO outbox_moves (tenant_id, campaign_id, state, reason, delta, at)
    SELECT tenant_id, campaign_id, state, COALESCE(reason, ''), -count(*),
           extract(epoch FROM clock_timestamp())
    FROM old_rows GROUP BY tenant_id, campaign_id, state, COALESCE(reason, '');
  ELSE
    INSERT INTO outbox_moves (tenant_id, campaign_id, state, reason, delta, at)
    SELECT tenant_id, campaign_id, state, reason, sum(d), extract(epoch FROM clock_timestamp())
    FROM (
      SELECT o.tenant_id, o.campaign_id, o.state, COALESCE(o.reason, '') AS reason, -1 AS d
      FROM old_rows o JOIN new_rows n ON n.id = o.id
      WHERE o.state IS DISTINCT FROM n.state OR o.reason IS DISTINCT FROM n.reason
      UNION ALL
      SELECT n.tenant_id, n.campaign_id, n.state, COALESCE(n.reason, ''), 1
      FROM old_rows o JOIN new_rows n ON n.id = o.id
      WHERE o.state IS DISTINCT FROM n.state OR o.reason IS DISTINCT FROM n.reason
    ) AS moved GROUP BY tenant_id, campaign_id, state, reason, d;
  END IF;
  RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    "CREATE TRIGGER outbox_moves_insert AFTER INSERT ON outbox REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION izinli_outbox_moved()",
    "CREATE TRIGGER outbox_moves_delete AFTER DELETE ON outbox REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION izinli_outbox_moved()",
    "CREATE TRIGGER outbox_moves_update AFTER UPDATE ON outbox "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION izinli_outbox_moved()",
]


def upgrade() -> None:
    op.create_table(
        "outbox_moves",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        # Set on a move that also leaves a state: `delta` rows leave (old_state, old_reason).
        sa.Column("old_state", sa.String(12), nullable=True),
        sa.Column("old_reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_outbox_moves_campaign", "outbox_moves", ["campaign_id"])
    op.create_table(
        "campaign_counts",
        sa.Column("campaign_id", sa.String(36), primary_key=True),
        sa.Column("state", sa.String(12), primary_key=True),
        sa.Column("reason", sa.String(64), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tenant_day_counts",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("state", sa.String(12), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    # What is already in the outbox (before the triggers, so nothing is counted twice).
    op.execute("INSERT INTO campaign_counts (campaign_id, state, reason, n) "
               "SELECT campaign_id, state, COALESCE(reason, ''), count(*) FROM outbox "
               "GROUP BY campaign_id, state, COALESCE(reason, '')")
    bucket = (f"(floor(updated_at / {BUCKET}) * {BUCKET})::bigint" if postgres
              else f"(CAST(updated_at / {BUCKET} AS INTEGER) * {BUCKET})")
    op.execute("INSERT INTO tenant_day_counts (tenant_id, bucket, state, n) "
               f"SELECT tenant_id, {bucket}, state, count(*) FROM outbox "
               f"WHERE state <> 'pending' GROUP BY tenant_id, {bucket}, state")
    if postgres:
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    for name in ("outbox_moves_insert", "outbox_moves_delete", "outbox_moves_update"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON outbox")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS izinli_outbox_moved()")
    op.drop_table("tenant_day_counts")
    op.drop_table("campaign_counts")
    op.drop_table("outbox_moves")
