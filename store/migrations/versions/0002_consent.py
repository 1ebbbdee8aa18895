"""Consent: tenant settings, lines, contacts and lists, consent ledger, suppressions, inbound
messages, sandbox phones. Every existing tenant gets its settings row and one sandbox line.

Revision ID: 0002
Revises: 0001
"""
import time
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT_FK = dict(ondelete="CASCADE")


def _tenant_id(primary_key: bool = False) -> sa.Column:
    return sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", **TENANT_FK),
                     nullable=False, primary_key=primary_key)


def upgrade() -> None:
    op.create_table(
        "tenant_settings",
        _tenant_id(primary_key=True),
        sa.Column("sender_name", sa.String(200), nullable=False),
        sa.Column("sender_contact", sa.String(200), nullable=False, server_default=""),
        sa.Column("language", sa.String(8), nullable=False, server_default="tr"),
        sa.Column("brand_names", sa.JSON, nullable=False),
        sa.Column("iys_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("iys_code", sa.String(32), nullable=True),
        sa.Column("iys_brand_code", sa.String(32), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Istanbul"),
    )
    op.create_table(
        "lines",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_id(),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rate_per_second", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("state_reason", sa.String(200), nullable=True),
        sa.Column("wrapped_credentials", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_lines_tenant_id", "lines", ["tenant_id"])
    op.create_table(
        "contact_lists",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_contact_lists_tenant_id", "contact_lists", ["tenant_id"])
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_id(),
        sa.Column("address_index", sa.LargeBinary(16), nullable=False),
        sa.Column("address_sealed", sa.LargeBinary, nullable=False),
        sa.Column("name_sealed", sa.LargeBinary, nullable=True),
        sa.Column("attributes_sealed", sa.LargeBinary, nullable=True),
        sa.Column("recipient_type", sa.String(16), nullable=False,
                  server_default="individual"),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("erased_at", sa.Double, nullable=True),
        sa.UniqueConstraint("tenant_id", "address_index", name="uq_contacts_address"),
    )
    op.create_table(
        "list_members",
        sa.Column("list_id", sa.String(36),
                  sa.ForeignKey("contact_lists.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("contact_id", sa.String(36),
                  sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_id(),
        sa.Column("address_index", sa.LargeBinary(16), nullable=False),
        sa.Column("consent_type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("iys_source", sa.String(32), nullable=True),
        sa.Column("recipient_type", sa.String(16), nullable=False),
        sa.Column("evidence_sealed", sa.LargeBinary, nullable=False),
        sa.Column("occurred_at", sa.Double, nullable=False),
        sa.Column("recorded_at", sa.Double, nullable=False),
        sa.Column("iys_sync_state", sa.String(16), nullable=False),
        sa.Column("iys_deadline", sa.Double, nullable=True),
    )
    op.create_index("ix_consent_events_key", "consent_events",
                    ["tenant_id", "address_index", "consent_type"])
    op.create_table(
        "consent_state",
        _tenant_id(primary_key=True),
        sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
        sa.Column("consent_type", sa.String(16), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("recipient_type", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.Double, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("iys_status", sa.String(8), nullable=True),
        sa.Column("ended_at", sa.Double, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "suppressions",
        _tenant_id(primary_key=True),
        sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("address_sealed", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_id(),
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("provider_message_id", sa.String(200), nullable=False),
        sa.Column("address_index", sa.LargeBinary(16), nullable=False),
        sa.Column("address_sealed", sa.LargeBinary, nullable=False),
        sa.Column("text_sealed", sa.LargeBinary, nullable=False),
        sa.Column("intent", sa.String(8), nullable=True),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.UniqueConstraint("line_id", "provider_message_id", name="uq_inbound_provider_id"),
    )
    op.create_index("ix_inbound_messages_tenant_id", "inbound_messages", ["tenant_id"])
    op.create_table(
        "sandbox_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _tenant_id(),
        sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("to_index", sa.LargeBinary(16), nullable=False),
        sa.Column("to_sealed", sa.LargeBinary, nullable=False),
        sa.Column("text_sealed", sa.LargeBinary, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_sandbox_messages_to", "sandbox_messages", ["tenant_id", "to_index"])
    _backfill_tenants()


def _backfill_tenants() -> None:
    bind = op.get_bind()
    tenants = sa.table("tenants", sa.column("id"), sa.column("name"))
    settings = sa.table("tenant_settings", sa.column("tenant_id"), sa.column("sender_name"),
                        sa.column("brand_names", sa.JSON))
    lines = sa.table("lines", sa.column("id"), sa.column("tenant_id"), sa.column("channel"),
                     sa.column("name"), sa.column("rate_per_second"), sa.column("created_at"))
    for tenant_id, name in bind.execute(sa.select(tenants.c.id, tenants.c.name)).all():
        bind.execute(settings.insert().values(tenant_id=tenant_id, sender_name=name,
                                              brand_names=[name]))
        bind.execute(lines.insert().values(id=str(uuid.uuid4()), tenant_id=tenant_id,
                                           channel="sandbox", name="sandbox",
                                           rate_per_second=100.0, created_at=time.time()))


def downgrade() -> None:
    for table in ("sandbox_messages", "inbound_messages", "suppressions", "consent_state",
                  "consent_events", "list_members", "contacts", "contact_lists", "lines",
                  "tenant_settings"):
        op.drop_table(table)
