"""Revocation notices: every committed revocation is announced to every process (issue 13,
item 4) by the database itself, so no code path can forget it. A row inserted in
`suppressions`, or a `consent_state` row becoming 'revoked', calls pg_notify on the bus
channel (store.bus.CHANNEL) with the bus's message format: the topic `revoked`, then
"<tenant_id> <scope> <kind>" (the suppression's kind, or `consent` for a revoked consent)
and the blind index in hex (optout.revocations reads it). PostgreSQL delivers it when the
transaction commits, to every listening process.

Row triggers with a WHEN clause: rows that revoke nothing (a granted consent, most of an
import) never call the function. Statement triggers with transition tables could batch
several rows per notice, but our bulk writers send one statement per row (executemany), so
they fire per row all the same (measured: 50,000 notices for an import of 50,000 refusals
either way), with a query over the transition table on every call.

SQLite serves one process, whose writers note revocations in its watch themselves: nothing
to do there.

Revision ID: 0022
Revises: 0021
"""
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

PG_FUNCTIONS = [
    """
CREATE FUNCTION izinli_suppression_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('izinli_bus', 'revoked' || chr(10) || NEW.tenant_id || ' ' || NEW.scope
                    || ' ' || NEW.kind || chr(10) || encode(NEW.address_index, 'hex'));
  RETURN NULL;
END $$
""",
    """
CREATE FUNCTION izinli_consent_revoked_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('izinli_bus', 'revoked' || chr(10) || NEW.tenant_id || ' '
                    || NEW.consent_type || ' consent' || chr(10)
                    || encode(NEW.address_index, 'hex'));
  RETURN NULL;
END $$
""",
]
PG_TRIGGERS = [
    # Only a new row: one already there (re-dated by an upsert) was refused by every claim.
    "CREATE TRIGGER suppressions_notice AFTER INSERT ON suppressions FOR EACH ROW "
    "EXECUTE FUNCTION izinli_suppression_notice()",
    "CREATE TRIGGER consent_revoked_notice_insert AFTER INSERT ON consent_state FOR EACH ROW "
    "WHEN (NEW.status = 'revoked') EXECUTE FUNCTION izinli_consent_revoked_notice()",
    "CREATE TRIGGER consent_revoked_notice_update AFTER UPDATE OF status ON consent_state "
    "FOR EACH ROW WHEN (NEW.status = 'revoked' AND OLD.status IS DISTINCT FROM 'revoked') "
    "EXECUTE FUNCTION izinli_consent_revoked_notice()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in PG_FUNCTIONS + PG_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS consent_revoked_notice_update ON consent_state")
    op.execute("DROP TRIGGER IF EXISTS consent_revoked_notice_insert ON consent_state")
    op.execute("DROP TRIGGER IF EXISTS suppressions_notice ON suppressions")
    op.execute("DROP FUNCTION IF EXISTS izinli_consent_revoked_notice()")
    op.execute("DROP FUNCTION IF EXISTS izinli_suppression_notice()")
