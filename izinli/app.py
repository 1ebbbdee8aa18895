"""Wiring: builds the aiohttp application and the resources it shares with background tasks."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import secrets
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

import accounts
import bot.channels  # noqa: F401  (the shipped channels register themselves)
from accounts import users
from bot import registry
from bot.credentials import CredentialStore
from bot.inbound import InboundRouter
from bot.lines import LineAdmin
from bot.operator import OperatorDesk
from bot.registry import BuildContext
from bot.telegram_inbound import TelegramInbound, TelegramPoller
from campaigns.audiences import ContactImporter
from campaigns.dispatcher import Dispatcher, DispatchSettings
from campaigns.leases import Keeper
from campaigns.lines import lines_of_channel
from campaigns.outbox import recover_in_flight
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from dashboard.api.lines import (
    LINE_CHANGED_TOPIC,
    LINE_GONE_TOPIC,
    line_changed,
    line_gone,
)
from dashboard.app import setup as setup_dashboard
from dashboard.app import setup_probes
from dashboard.keys import (
    WebSettings,
    bus_key,
    channels_key,
    credentials_key,
    db_key,
    directory_key,
    erasures_key,
    fanout_key,
    fields_key,
    importer_key,
    inbound_key,
    iys_sync_key,
    keyring_key,
    line_admin_key,
    master_key,
    operator_desk_key,
    public_url_key,
    registry_key,
    sandbox_key,
    scheduler_hook_key,
    sessions_key,
    settings_key,
    telegram_inbound_key,
    watch_key,
)
from dashboard.pages.web import setup_state_key
from dashboard.vault_fanout import VaultFanout
from izinli import audit_files
from izinli.config import Config
from izinli.runtime import master_key_for, open_store
from izinli.scheduler import DUE_TOPIC, LOCK_SWEEP_SECONDS, Timers
from optout import audit
from optout.backlog import InboundBacklog
from optout.iys_sync import IysSync
from optout.retention import RetentionPolicy
from optout.revocations import RevocationNotices
from optout.subjects import ErasureFinisher
from optout.tenants import TenantDirectory
from optout.watch import RevocationWatch
from store.bus import Bus
from store.engine import Database
from store.tenants import SqlDataKeyStore

log = logging.getLogger(__name__)
config_key = web.AppKey("config", Config)


async def _telegram_lines(db: Database) -> list:
    async with db.connect() as conn:
        return await lines_of_channel(conn, "telegram")


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=config.server.max_import_bytes + 1)
    app[config_key] = config
    app[settings_key] = WebSettings(
        max_body_bytes=config.server.max_body_bytes,
        max_import_bytes=config.server.max_import_bytes,
        unlock_ttl_seconds=config.crypto.unlock_ttl_seconds,
        max_unlock_ttl_seconds=config.crypto.max_unlock_ttl_seconds,
        kdf=config.crypto.kdf, min_passphrase_length=config.crypto.min_passphrase_length,
        kdf_concurrency=config.crypto.kdf_concurrency,
        trusted_proxies=config.server.trusted_proxies)
    app[registry_key] = CollectorRegistry()
    app[keyring_key] = Keyring()
    app[master_key] = master_key_for(config)
    app[watch_key] = RevocationWatch()
    app[public_url_key] = config.server.public_url
    role = config.server.role  # all, web or worker (izinli.serve refuses a split on SQLite)
    Gauge("izinli_role", "What this process runs: all, web or worker", ["role"],
          registry=app[registry_key]).labels(role).set(1)
    app.cleanup_ctx.append(database_context)
    app.cleanup_ctx.append(web_role_context if role == "web" else pipeline_context)
    if role == "worker":
        app[setup_state_key] = {"token": ""}  # no setup page here: a web process has it
        setup_probes(app)
    else:
        setup_dashboard(app)
    return app


async def database_context(app: web.Application) -> AsyncIterator[None]:
    db = await open_store(app[config_key])
    app[db_key] = db
    bus = Bus(db)
    app[bus_key] = bus
    app[sessions_key] = users.SessionCache(bus)  # logout and role changes clear it everywhere
    RevocationNotices(bus, db, app[watch_key])  # STOPs committed anywhere reach our watch
    await bus.start()
    # One unlock serves every process: sealed to each one's ephemeral key (sealed key fan-out).
    app[fanout_key] = fanout = VaultFanout(db, bus, app[keyring_key], app[master_key])
    await fanout.start()
    if await users.tenant_count(db) == 0:  # first run: `izinli serve` prints the setup link
        app[setup_state_key]["token"] = secrets.token_urlsafe(18)
    fields = FieldCrypto(app[keyring_key], SqlDataKeyStore(db))
    # The blind-index key is the tenant's: opened from its unlocked vault (issue 17).
    directory = TenantDirectory(app[master_key], app[keyring_key])
    app[fields_key], app[directory_key] = fields, directory
    credentials = CredentialStore(db, app[master_key])
    providers = app[config_key].providers  # the only source of provider addresses
    await credentials.drop_stored_addresses()
    # One channel object per registered channel (bot.registry), built from its description.
    context = BuildContext(credentials.load, providers, db, fields, directory)
    channels = {spec.name: spec.build(context) for spec in registry.all_channels()}
    sandbox, telegram = channels["sandbox"], channels["telegram"]
    app[sandbox_key] = sandbox
    app[credentials_key] = credentials
    app[channels_key] = channels
    app[line_admin_key] = LineAdmin(db, credentials, bus, channels, app[public_url_key] or None)
    bus.subscribe(LINE_GONE_TOPIC, lambda line_id: line_gone(app, line_id))
    bus.subscribe(LINE_CHANGED_TOPIC, lambda line_id: line_changed(app, line_id))
    app[importer_key] = ContactImporter(
        db, fields, directory,
        fork_above_bytes=app[config_key].campaigns.import_worker_min_kb * 1024)
    # What arrives for a locked tenant waits sealed, applied before any send (issue 17).
    backlog = InboundBacklog(db, fields, directory, app[watch_key])
    app[inbound_key] = InboundRouter(db, fields, directory, channels=app[channels_key],
                                     watch=app[watch_key], backlog=backlog)
    await accounts.unlock_service_custody(db, app[keyring_key], app[master_key])
    app[operator_desk_key] = OperatorDesk(db, app[master_key], directory, telegram, fields)
    app[iys_sync_key] = IysSync(db, app[master_key], directory, fields, app[watch_key],
                                alerts=app[operator_desk_key], iys_url=providers.iys_url)
    app[iys_sync_key].use_backlog(backlog)
    await app[iys_sync_key].drop_stored_addresses()
    app[erasures_key] = ErasureFinisher(db, fields, directory)
    app[telegram_inbound_key] = TelegramInbound(app[inbound_key], telegram,
                                                app[operator_desk_key], app[erasures_key])
    yield
    for channel in channels.values():
        await channel.close()
    await fanout.stop()  # this process's share rows go with it
    await bus.stop()
    await db.close()


async def web_role_context(app: web.Application) -> AsyncIterator[None]:
    """`--role web`: API, pages and webhooks, nothing sent from here. The dispatcher, the
    timers and Telegram polling are the workers'; a campaign scheduled here is announced to
    them on the bus (each sets its timer). The auto-lock sweep stays: every process holds its
    own unlocked keys."""
    config, bus, keyring = app[config_key], app[bus_key], app[keyring_key]
    audit_files.publish(config, app[master_key])

    def announce_due(campaign_id: str, send_at: float | None) -> None:
        bus.spawn(bus.announce(DUE_TOPIC, json.dumps({"id": campaign_id, "send_at": send_at})))
    app[scheduler_hook_key] = announce_due
    sweeper = asyncio.create_task(_sweep_locks(keyring))
    gc.collect()
    gc.freeze()
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    for tenant_id in keyring.unlocked_ids():
        keyring.lock(tenant_id)


async def _sweep_locks(keyring: Keyring) -> None:
    while True:
        await asyncio.sleep(LOCK_SWEEP_SECONDS)
        keyring.lock_expired()


async def pipeline_context(app: web.Application) -> AsyncIterator[None]:
    """Crash recovery, the timers and the dispatcher, sharing the web app's loop."""
    db, config = app[db_key], app[config_key]
    async with db.begin() as conn:
        # Lines another process holds a live lease on are its business (campaigns.leases).
        interrupted = await recover_in_flight(conn, unleased_only=True)
    if interrupted:
        log.warning("messages interrupted by a crash marked unknown",
                    extra={"count": interrupted})
    timers = Timers(db, app[keyring_key], RetentionPolicy(
        consent_years=config.retention.consent_years,
        message_years=config.retention.message_years,
        erased_contact_days=config.retention.erased_contact_days),
        iys_pull=app[iys_sync_key].pull_all, iys_pull_minutes=config.iys.pull_minutes,
        master=app[master_key], iys_risk=app[iys_sync_key].at_risk,
        alerts=app[operator_desk_key], erasures=app[erasures_key].finish_unlocked,
        audit_journal=audit_files.journal_path(config), bus=app[bus_key])
    app[scheduler_hook_key] = timers.campaign_due_at
    audit_files.publish(config, app[master_key])
    # The chain so far is signed at every start; after an upgrade this is the first checkpoint
    # the master-derived key makes (the older ones were signed by a key stored in the database).
    await audit.checkpoint(db, app[master_key], audit_files.journal_path(config))
    await timers.start()
    dispatcher = Dispatcher(db, app[fields_key], app[directory_key], app[channels_key],
                            app[watch_key], DispatchSettings(
                                spam_first_sends=config.campaigns.spam_first_sends,
                                spam_optout_rate=config.campaigns.spam_optout_rate,
                                max_consecutive_errors=config.campaigns.max_consecutive_errors,
                                provider_attempts=config.campaigns.provider_attempts,
                                provider_backoff_seconds=config.campaigns.provider_backoff_seconds,
                                provider_backoff_max_seconds=(
                                    config.campaigns.provider_backoff_max_seconds),
                                max_batch=config.campaigns.max_batch),
                            alerts=app[operator_desk_key])
    backlog = app[inbound_key].backlog  # nothing sent for a tenant while it holds items
    dispatcher.held_tenants = backlog.held
    tasks = [asyncio.create_task(dispatcher.run()), asyncio.create_task(backlog.run())]
    poller = None
    if not config.server.public_url:
        # One poller per bot across processes; SQLite has one process: no one to share with.
        shared = db.dialect == "postgresql"
        poller = TelegramPoller(app[telegram_inbound_key], lambda: _telegram_lines(db),
                                timeout=config.server.telegram_poll_seconds,
                                leases=Keeper(db) if shared else None)
        # The polling leases (5 s) are renewed on this loop: every second when shared.
        tasks.append(asyncio.create_task(poller.run(every=1.0 if shared else 5.0)))
    # What start-up allocated (modules, SQLAlchemy's caches, templates) lives as long as the
    # process: moved out of the collector's reach so full collections stay short under load.
    gc.collect()
    gc.freeze()
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if poller is not None:
        await poller.stop()
    await dispatcher.stop()
    timers.stop()
    await audit.checkpoint(db, app[master_key], audit_files.journal_path(config))  # last hour
    keyring = app[keyring_key]
    for tenant_id in keyring.unlocked_ids():
        keyring.lock(tenant_id)
