"""List sizes kept by the database, like campaign counters (0011): triggers on list_members
write moves, folded into contact_lists.members, so showing a list of a million people does
not count a million rows.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER list_member_moves_insert AFTER INSERT ON list_members BEGIN
      INSERT INTO list_member_moves (list_id, delta) VALUES (NEW.list_id, 1);
    END""",
    """CREATE TRIGGER list_member_moves_delete AFTER DELETE ON list_members BEGIN
      INSERT INTO list_member_moves (list_id, delta) VALUES (OLD.list_id, -1);
    END""",
    """CREATE TRIGGER list_member_moves_update AFTER UPDATE OF list_id ON list_members
    WHEN OLD.list_id IS NOT NEW.list_id BEGIN
      INSERT INTO list_member_moves (list_id, delta) VALUES (OLD.list_id, -1);
      INSERT INTO list_member_moves (list_id, delta) VALUES (NEW.list_id, 1);
    END""",
]

PG_FUNCTION = """
CREATE FUNCTION izinli_list_members_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO list_member_moves (list_id, delta)
    SELECT list_id, -count(*) FROM old_rows GROUP BY list_id;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    INSERT INTO list_member_moves (list_id, delta)
    SELECT list_id, count(*) FROM new_rows GROUP BY list_id;
  END IF;
  RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    "CREATE TRIGGER list_member_moves_insert AFTER INSERT ON list_members "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION izinli_list_members_moved()",
    "CREATE TRIGGER list_member_moves_delete AFTER DELETE ON list_members "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION izinli_list_members_moved()",
    "CREATE TRIGGER list_member_moves_update AFTER UPDATE ON list_members "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION izinli_list_members_moved()",
]


def upgrade() -> None:
    op.create_table(
        "list_member_moves",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("list_id", sa.String(36), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_list_member_moves_list", "list_member_moves", ["list_id"])
    with op.batch_alter_table("contact_lists") as batch:
        batch.add_column(sa.Column("members", sa.BigInteger, nullable=False,
                                   server_default="0"))
    op.execute("UPDATE contact_lists SET members = (SELECT count(*) FROM list_members "
               "WHERE list_members.list_id = contact_lists.id)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in ("list_member_moves_insert", "list_member_moves_delete",
                 "list_member_moves_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON list_members" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS izinli_list_members_moved()")
    with op.batch_alter_table("contact_lists") as batch:
        batch.drop_column("members")
    op.drop_table("list_member_moves")
