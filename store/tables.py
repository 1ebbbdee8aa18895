"""Table definitions (SQLAlchemy Core). Migrations in store/migrations create them; each domain
package writes its own queries against these objects. Sealed columns hold crypto/ blobs only."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Timestamps are UNIX seconds (float) in UTC: one representation on SQLite and PostgreSQL.

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    # Tenant X25519 secret key wrapped under the passphrase (crypto.keys format).
    sa.Column("wrapped_secret", sa.LargeBinary, nullable=False),
    # Blind-index key wrapped by the operator master key: only under custody 'service' and for
    # tenants made before migration 0030 until their next unlock; NULL otherwise.
    sa.Column("wrapped_lookup_key", sa.LargeBinary, nullable=True),
    sa.Column("custody", sa.String(16), nullable=False, server_default="passphrase"),
    # Only under custody 'service': the tenant secret key wrapped by the master key.
    sa.Column("service_wrapped_secret", sa.LargeBinary, nullable=True),
    # The same secret key wrapped under the owner's one-time recovery code (crypto.recovery;
    # migration 0032); NULL until a code was made.
    sa.Column("recovery_wrapped_secret", sa.LargeBinary, nullable=True),
    # The blind-index key sealed to the tenant (crypto_box_seal to public_key; migration 0030):
    # opened only with the tenant's secret key, so only while unlocked.
    sa.Column("sealed_lookup_key", sa.LargeBinary, nullable=True),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The key's name sealed like a contact field (optout.names; migration 0031).
    sa.Column("name_sealed", sa.LargeBinary, nullable=True),
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    # owner, admin, operator or viewer (accounts.ROLES); checked on every API route.
    sa.Column("role", sa.String(16), nullable=False, server_default="admin"),
)

data_keys = sa.Table(
    "data_keys", metadata,
    sa.Column("id", sa.LargeBinary(16), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The 32-byte data key sealed (crypto_box_seal) to the tenant public key.
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)

# --- consent issue (migration 0002) ---------------------------------------------------------

tenant_settings = sa.Table(
    "tenant_settings", metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              primary_key=True),
    # Sender identity printed in footers and confirmations (trade name and a contact).
    sa.Column("sender_name", sa.String(200), nullable=False),
    sa.Column("sender_contact", sa.String(200), nullable=False, server_default=""),
    # Language of what recipients read: "tr" (default) or "en".
    sa.Column("language", sa.String(8), nullable=False, server_default="tr"),
    # Brand names recognised in "<BRAND> RET"; JSON list of strings.
    sa.Column("brand_names", sa.JSON, nullable=False),
    sa.Column("iys_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("iys_code", sa.String(32), nullable=True),
    sa.Column("iys_brand_code", sa.String(32), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Istanbul"),
    # Quiet hours (off by default): commercial sends only inside [start, end) local time.
    sa.Column("quiet_hours", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("quiet_start_hour", sa.Integer, nullable=False, server_default="9"),
    sa.Column("quiet_end_hour", sa.Integer, nullable=False, server_default="21"),
    # Set once a merchant contact is imported: only then does the gate look contacts up.
    sa.Column("has_merchant_contacts", sa.Boolean, nullable=False, server_default=sa.false()),
    # İYS API account (user, password) wrapped by the master key; the pull cursor.
    sa.Column("iys_credentials", sa.LargeBinary, nullable=True),
    # As lines.credentials_format: 1 may still hold a tenant's base_url (migration 0014).
    sa.Column("iys_credentials_format", sa.Integer, nullable=False, server_default="1"),
    sa.Column("iys_cursor", sa.String(500), nullable=True),
    # At most `frequency_cap` commercial messages per person per window (0: no cap).
    sa.Column("frequency_cap", sa.Integer, nullable=False, server_default="3"),
    sa.Column("frequency_window_days", sa.Integer, nullable=False, server_default="7"),
)

lines = sa.Table(
    "lines", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    # The line's name sealed like a contact field (optout.names; migration 0031).
    sa.Column("name_sealed", sa.LargeBinary, nullable=True),
    sa.Column("rate_per_second", sa.Double, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    sa.Column("state_reason", sa.String(200), nullable=True),
    # Provider credentials as JSON, wrapped by the operator master key (channels issue).
    # Emptied when the line is deleted (state "deleted"; the row stays for its campaigns).
    sa.Column("wrapped_credentials", sa.LargeBinary, nullable=True),
    # 1: written before provider addresses became operator configuration, may still hold a
    # tenant's base_url; 2: address-free. Start-up rewraps 1s as 2s (migration 0014).
    sa.Column("credentials_format", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.Double, nullable=False),
    # Channel options that are not secret (sandbox simulation: latency, failures, limits).
    sa.Column("options", sa.JSON, nullable=True),
)

contact_lists = sa.Table(
    "contact_lists", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The list's name sealed like a contact field (optout.names; migration 0031). NULL for a
    # bot's subscriber list made while locked: it reads as "Telegram: <line name>".
    sa.Column("name_sealed", sa.LargeBinary, nullable=True),
    # The Telegram line whose consenting subscribers this list gathers (found while locked).
    sa.Column("subscribers_of", sa.String(36), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    # Attribute keys seen in imports (not personal): what templates may use.
    sa.Column("columns", sa.JSON, nullable=True),
    # Folded from list_member_moves (migration 0012); add the moves not folded yet.
    sa.Column("members", sa.BigInteger, nullable=False, server_default="0"),
)

list_member_moves = sa.Table(
    "list_member_moves", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("list_id", sa.String(36), nullable=False),
    sa.Column("delta", sa.BigInteger, nullable=False),
    sa.Index("ix_list_member_moves_list", "list_id"),
)

contacts = sa.Table(
    "contacts", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    # Blind index of the normalised address: equality lookups without decrypting.
    sa.Column("address_index", sa.LargeBinary(16), nullable=False),
    sa.Column("address_sealed", sa.LargeBinary, nullable=False),
    sa.Column("name_sealed", sa.LargeBinary, nullable=True),
    # JSON object of the other CSV columns, sealed as one field.
    sa.Column("attributes_sealed", sa.LargeBinary, nullable=True),
    sa.Column("recipient_type", sa.String(16), nullable=False,
              server_default="individual"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("erased_at", sa.Double, nullable=True),
    sa.UniqueConstraint("tenant_id", "address_index", name="uq_contacts_address"),
)

list_members = sa.Table(
    "list_members", metadata,
    sa.Column("list_id", sa.String(36), sa.ForeignKey("contact_lists.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("contact_id", sa.String(36), sa.ForeignKey("contacts.id", ondelete="CASCADE"),
              primary_key=True),
)

consent_events = sa.Table(
    "consent_events", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("address_index", sa.LargeBinary(16), nullable=False),
    # MESAJ / ARAMA / EPOSTA (İYS types) or a channel without an İYS type (TELEGRAM).
    sa.Column("consent_type", sa.String(16), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # granted | revoked
    sa.Column("source", sa.String(200), nullable=False),
    # İYS source code (HS_WEB, HS_MESAJ, …) when the source maps to one.
    sa.Column("iys_source", sa.String(32), nullable=True),
    sa.Column("recipient_type", sa.String(16), nullable=False),  # individual | merchant
    sa.Column("evidence_sealed", sa.LargeBinary, nullable=False),
    sa.Column("occurred_at", sa.Double, nullable=False),
    sa.Column("recorded_at", sa.Double, nullable=False),
    # İYS upload: not_applicable | pending | sent | failed; deadline = 3 business days.
    sa.Column("iys_sync_state", sa.String(16), nullable=False),
    sa.Column("iys_deadline", sa.Double, nullable=True),
    # Why İYS refused the record (code: message, numbers masked), for the owner to fix.
    sa.Column("iys_error", sa.String(300), nullable=True),
    # The upload under way (migration 0025, optout.iys_push): the claim that took the record
    # for a bulk request, when (database clock), İYS's requestId, and the consentDate sent.
    sa.Column("iys_claim", sa.String(36), nullable=True),
    sa.Column("iys_claimed_at", sa.Double, nullable=True),
    sa.Column("iys_request_id", sa.String(64), nullable=True),
    sa.Column("iys_consent_date", sa.Double, nullable=True),
    sa.Index("ix_consent_events_key", "tenant_id", "address_index", "consent_type"),
    # The İYS upload queue (migration 0013; `id` since 0025: the queue's order, ties included).
    sa.Index("ix_consent_events_iys", "tenant_id", "iys_sync_state", "occurred_at", "id"),
    # Records in flight to İYS (migration 0025): few at any time, so a partial index.
    sa.Index("ix_consent_events_iys_claim", "tenant_id", "iys_claim",
             sqlite_where=sa.text("iys_claim IS NOT NULL"),
             postgresql_where=sa.text("iys_claim IS NOT NULL")),
)

consent_state = sa.Table(
    "consent_state", metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
    sa.Column("consent_type", sa.String(16), primary_key=True),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("recipient_type", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("occurred_at", sa.Double, nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    # Consent as İYS holds it (ONAY / RET), kept by the İYS sync.
    sa.Column("iys_status", sa.String(8), nullable=True),
    # When the consent ended (revoked): the retention clock for its records starts here.
    sa.Column("ended_at", sa.Double, nullable=True),
    # Clustered on the key: the gate's lookups read one B-tree, not an index and a table.
    sqlite_with_rowid=False,
)

suppressions = sa.Table(
    "suppressions", metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
    # The consent type it covers, or "*" for everything.
    sa.Column("scope", sa.String(16), primary_key=True),
    # opted_out | blocked | erasure | complaint | manual
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    # For the export; dropped (NULL) when the person asked for erasure.
    sa.Column("address_sealed", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    # Clustered on the key: the gate's lookups read one B-tree, not an index and a table.
    sqlite_with_rowid=False,
)

inbound_messages = sa.Table(
    "inbound_messages", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("provider_message_id", sa.String(200), nullable=False),
    sa.Column("address_index", sa.LargeBinary(16), nullable=False),
    sa.Column("address_sealed", sa.LargeBinary, nullable=False),
    sa.Column("text_sealed", sa.LargeBinary, nullable=False),
    sa.Column("intent", sa.String(8), nullable=True),  # stop | start | help
    sa.Column("received_at", sa.Double, nullable=False),
    # Redelivered webhooks carry the same id: acknowledged, not applied twice.
    sa.UniqueConstraint("line_id", "provider_message_id", name="uq_inbound_provider_id"),
)

# The WhatsApp 24 h customer-service window (migration 0027): when each person last wrote to a
# line, by blind index (never the number); only ever moved forward (webhooks come out of order).
inbound_window = sa.Table(
    "inbound_window", metadata,
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("last_inbound_at", sa.Double, nullable=False),
    sa.Index("ix_inbound_window_tenant", "tenant_id", "address_index"),
)

# --- event order and redeliveries (migration 0015) -------------------------------------------

# The last event applied for a person (optout.order): a late or replayed older one changes
# nothing. Kept like suppressions while it records a stop.
preference_clock = sa.Table(
    "preference_clock", metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("address_index", sa.LargeBinary(16), primary_key=True),
    sa.Column("scope", sa.String(16), primary_key=True),  # the consent type
    sa.Column("family", sa.String(8), primary_key=True),  # consent | block
    sa.Column("event_at", sa.BigInteger, nullable=False),  # whole UNIX seconds, event's own
    sa.Column("stopped", sa.Boolean, nullable=False),
    sqlite_with_rowid=False,
)

# Signed webhook bodies (and Telegram update ids) already processed: a redelivery is a no-op.
# Providers retry for up to 36 h; the retention job drops rows after a week.
webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("delivery_key", sa.String(80), primary_key=True),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Index("ix_webhook_deliveries_received", "received_at"),
)

sandbox_messages = sa.Table(
    "sandbox_messages", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              nullable=False),
    # NULL for a confirmation delivered while the vault was locked (migration 0030).
    sa.Column("to_index", sa.LargeBinary(16), nullable=True),
    sa.Column("to_sealed", sa.LargeBinary, nullable=False),
    sa.Column("text_sealed", sa.LargeBinary, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    # In time order, so a delivery only ever lands at the index's end (migration 0035); a
    # recipient's deliveries are found by reading the tenant's.
    sa.Index("ix_sandbox_messages_at", "tenant_id", "at", "id"),
)

# --- campaign issue (migration 0003) --------------------------------------------------------

campaigns = sa.Table(
    "campaigns", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The campaign's name sealed like a contact field (optout.names; migration 0031).
    sa.Column("name_sealed", sa.LargeBinary, nullable=True),
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id"), nullable=False),
    sa.Column("list_id", sa.String(36), sa.ForeignKey("contact_lists.id"), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),  # commercial | informational
    sa.Column("template_sealed", sa.LargeBinary, nullable=False),
    # WhatsApp approved template: {"name", "language", "parameters": ["{{name}}", …]}.
    sa.Column("channel_template", sa.JSON, nullable=True),
    # draft → scheduled → running ⇄ paused → completed | cancelled | failed; waiting_unlock
    sa.Column("state", sa.String(16), nullable=False),
    # Why it waits or stopped (quiet_hours, vault_locked, error_run: …, optout_rate: …,
    # provider_errors: …), for the owner.
    sa.Column("state_reason", sa.String(200), nullable=True),
    # Set when the owner resumes after an optout_rate pause: the opt-out rule has had its say.
    # An error_run pause needs no flag: its count restarts at every pause (migration 0017).
    sa.Column("optout_acknowledged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("send_at", sa.Double, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double, nullable=True),
    sa.Column("finished_at", sa.Double, nullable=True),
    # Informational campaigns (migration 0024): the commercial-looking words found in their
    # text at creation, which the owner confirmed ([]: none found). NULL for commercial ones
    # and for those created before the check existed.
    sa.Column("commercial_words", sa.JSON, nullable=True),
    # WhatsApp 24 h window (migration 0027): "template" sends free text to people inside
    # their window and the approved template to the others; NULL: see campaigns.window.
    sa.Column("outside_window", sa.String(16), nullable=True),
    sa.Index("ix_campaigns_line_state", "line_id", "state"),
)

# WhatsApp message templates of a line's business account (migration 0026), as Graph lists
# them (GET /{waba_id}/message_templates) and as status webhooks change them. Not sealed: they
# are the business's marketing copy, approved by and held at Meta, with {{1}}-style slots and
# no personal data — readable like a campaign's name and channel_template, so that campaign
# creation can check them while the vault is locked.
whatsapp_templates = sa.Table(
    "whatsapp_templates", metadata,
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("language", sa.String(16), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("waba_id", sa.String(64), nullable=False),
    sa.Column("template_id", sa.String(64), nullable=True),  # Meta's id of (name, language)
    sa.Column("category", sa.String(32), nullable=True),  # MARKETING | UTILITY | AUTHENTICATION
    # APPROVED | PENDING | REJECTED | PAUSED | DISABLED | … as Meta says it
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("components", sa.JSON, nullable=False),
    sa.Column("parameter_count", sa.Integer, nullable=False),  # the body's {{n}} slots
    # Meta's rejected_reason, or the reason given with a PAUSED / DISABLED / FLAGGED update.
    sa.Column("reason", sa.String(500), nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("ix_whatsapp_templates_waba", "tenant_id", "waba_id"),
)

# Triggers (migration 0011) record every change of state/reason as a move for the counters.
# On SQLite, a batch_alter_table that recreates this table (or list_members, 0012) drops them:
# a migration doing that must create them again.
outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("campaign_id", sa.String(36), sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("contact_id", sa.String(36), nullable=False),
    # pending → sending → sent → delivered | read | failed; skipped(reason); unknown
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("provider_id", sa.String(200), nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("sent_at", sa.Double, nullable=True),
    # The claim that moved the row to `sending` (random per claim): a claim whose commit answer
    # was lost is put back to pending by it (migration 0018).
    sa.Column("claim_token", sa.BigInteger, nullable=True),
    # At most one message per (campaign, recipient), enforced by the database.
    sa.UniqueConstraint("campaign_id", "contact_id", name="uq_outbox_campaign_contact"),
    sa.Index("ix_outbox_claim", "campaign_id", "state", "id"),
    sa.Index("ix_outbox_contact_sent", "tenant_id", "contact_id", "sent_at"),
    # The spam guard reads a campaign's first sends in order.
    sa.Index("ix_outbox_campaign_sent", "campaign_id", "sent_at"),
)

# One sender per line across processes (migration 0018): the holder renews its lease about
# every second; expiry is in the database's clock (epoch seconds). A takeover increments the
# fencing token, and the dispatcher's claims and result writes name it, so a holder that lost
# its lease changes nothing. The row is never deleted: tokens only ever grow.
line_leases = sa.Table(
    "line_leases", metadata,
    # A line, "poll:<line>" (a bot's polling) or "iys:<tenant>" (its İYS upload).
    sa.Column("line_id", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

# Sealed key fan-out (migration 0020): running processes with their ephemeral X25519 public
# key and a heartbeat expiry (database clock); per tenant the epoch of its last unlock, lock
# or custody change made through the cluster; per (tenant, process) the tenant secret key
# sealed to that process (crypto.shares). Nothing here opens without a live process's memory.
cluster_processes = sa.Table(
    "cluster_processes", metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("proof", sa.LargeBinary, nullable=False),  # crypto.shares.process_proof
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

vault_epochs = sa.Table(
    "vault_epochs", metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),  # unlock, lock or custody
)

vault_shares = sa.Table(
    "vault_shares", metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("process_id", sa.String(100), primary_key=True, index=True),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),  # the unlock's end, database clock
)

# Cluster-wide timers run once per due time (migration 0021): the process whose insert of
# (job, slot) succeeds runs it. Times are the database's clock; old slots are pruned.
timer_runs = sa.Table(
    "timer_runs", metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("slot", sa.BigInteger, primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double, nullable=True),
)

# Kept by triggers on outbox (migration 0011): each change of a row's state is a move; moves
# are folded into per-campaign counts and per-tenant 15-minute counts of states entered.
outbox_moves = sa.Table(
    "outbox_moves", metadata,
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
    sa.Index("ix_outbox_moves_campaign", "campaign_id"),
)

campaign_counts = sa.Table(
    "campaign_counts", metadata,
    sa.Column("campaign_id", sa.String(36), primary_key=True),
    sa.Column("state", sa.String(12), primary_key=True),
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

tenant_day_counts = sa.Table(
    "tenant_day_counts", metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True),
    sa.Column("state", sa.String(12), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

# --- operator bot (migration 0004) ----------------------------------------------------------

operator_codes = sa.Table(
    "operator_codes", metadata,
    # SHA-256 of the one-time code; the code itself is shown once and never stored.
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

operators = sa.Table(
    "operators", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("chat_index", sa.LargeBinary(16), nullable=False),
    # Alerts go out while the vault is locked, so the chat id is wrapped by the master key.
    sa.Column("chat_wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.UniqueConstraint("line_id", "chat_index", name="uq_operators_chat"),
)

# --- KVKK data-subject requests (migration 0005) -----------------------------------------

subject_requests = sa.Table(
    "subject_requests", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("address_index", sa.LargeBinary(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # access | export | erasure | correction
    sa.Column("channel", sa.String(16), nullable=False),  # where it came from: api | telegram
    sa.Column("received_at", sa.Double, nullable=False),
    # KVKK art. 13: answered within 30 days.
    sa.Column("due_at", sa.Double, nullable=False),
    sa.Column("completed_at", sa.Double, nullable=True),
    # When the owners were told the deadline is near (migration 0024): they are told once.
    sa.Column("alerted_at", sa.Double, nullable=True),
)

# --- audit log (migration 0007) -------------------------------------------------------------

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("tenant_id", sa.String(36), nullable=True),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    # JSON without personal data: ids, counts, states.
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

audit_checkpoints = sa.Table(
    "audit_checkpoints", metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sa.Column("signature", sa.LargeBinary(64), nullable=False),
    # The signer's public key, for reading only: verification never trusts it (migration 0019).
    sa.Column("verify_key", sa.LargeBinary(32), nullable=False),
    # Entries in the log when signed; NULL on legacy checkpoints, which are not trusted.
    sa.Column("entries", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=True),
)

# --- dashboard users and sessions (migration 0009) ---------------------------------------------

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False, index=True),
    # The login e-mail: found by a master-keyed BLAKE2b digest, kept wrapped by the master key.
    sa.Column("email_index", sa.LargeBinary(16), nullable=False, unique=True),
    sa.Column("email_wrapped", sa.LargeBinary, nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),  # Argon2id (nacl.pwhash)
    sa.Column("role", sa.String(16), nullable=False),  # owner | admin | operator | viewer
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("disabled_at", sa.Double, nullable=True),
)

web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("token_hash", sa.LargeBinary(32), primary_key=True),  # BLAKE2b of the cookie
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("device_hash", sa.LargeBinary(16), nullable=False),
    sa.Column("language", sa.String(2), nullable=False, server_default="tr"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("last_seen_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
)

# --- Telegram invitations (migration 0029) -----------------------------------------------------

# A deep link t.me/<bot>?start=<token> a business prints or posts: pressing it opens the bot's
# consent offer, and the tap joins `list_id`. The token is random (not derived from ids): it is
# public once printed, and names no person. One active invite per (list, line).
telegram_invites = sa.Table(
    "telegram_invites", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # 32 characters of A-Z a-z 0-9 _ - (Telegram's start parameter allows up to 64).
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("line_id", sa.String(36), sa.ForeignKey("lines.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("list_id", sa.String(36), sa.ForeignKey("contact_lists.id", ondelete="CASCADE"),
              nullable=False),
    # The bot's @username from getMe when the invite was made: the link needs no call later.
    sa.Column("bot_username", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Index("ix_telegram_invites_active", "tenant_id", "list_id", "line_id", unique=True,
             sqlite_where=sa.text("revoked_at IS NULL"),
             postgresql_where=sa.text("revoked_at IS NULL")),
)


# What arrived while the tenant's vault was locked and needs the blind index (inbound texts,
# provider opt-outs, İYS refusals): sealed to the tenant public key, applied in id order and
# deleted at the next unlock (optout.backlog; migration 0030). `dedup`: BLAKE2b of the
# provider's id, so a retried delivery is kept once.
sealed_inbound = sa.Table(
    "sealed_inbound", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("dedup", sa.LargeBinary(16), nullable=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.UniqueConstraint("tenant_id", "dedup", name="uq_sealed_inbound_dedup"),
    sa.Index("ix_sealed_inbound_tenant", "tenant_id", "id"),
)
