"""Typed application keys: what the composition root puts into the aiohttp app for views."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from accounts.users import SessionCache
from bot.credentials import CredentialStore
from bot.inbound import InboundRouter
from bot.lines import LineAdmin
from bot.operator import OperatorDesk
from bot.sandbox import SandboxChannel
from bot.telegram_inbound import TelegramInbound
from campaigns.audiences import ContactImporter
from crypto.master import MasterKey
from crypto.service import FieldCrypto
from crypto.vault import Keyring
from dashboard.ratelimit import FailureLimiter, HashSlots
from dashboard.vault_fanout import VaultFanout
from optout.iys_sync import IysSync
from optout.subjects import ErasureFinisher
from optout.tenants import TenantDirectory
from optout.watch import RevocationWatch
from store.bus import Bus
from store.engine import Database


@dataclass(frozen=True)
class WebSettings:
    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 20 * 1024 * 1024
    unlock_ttl_seconds: int = 8 * 3600
    max_unlock_ttl_seconds: int = 7 * 24 * 3600
    kdf: str = "moderate"  # Argon2id cost of vault passphrases and dashboard passwords
    min_passphrase_length: int = 12
    # Password/passphrase hashes running at once; more requests needing one get 429.
    kdf_concurrency: int = 2
    # Peers (IPs or CIDRs) whose X-Forwarded-Proto and X-Forwarded-For are believed.
    trusted_proxies: tuple[str, ...] = ()


settings_key = web.AppKey("settings", WebSettings)
db_key = web.AppKey("db", Database)
# Cluster notifications (store.bus): LISTEN/NOTIFY on PostgreSQL, this process on SQLite.
bus_key = web.AppKey("bus", Bus)
keyring_key = web.AppKey("keyring", Keyring)
# Unlock, lock and custody for every process of the cluster (sealed key fan-out).
fanout_key = web.AppKey("fanout", VaultFanout)
# Dashboard sessions looked up lately; cleared in every process by the change (bus notices).
sessions_key = web.AppKey("sessions", SessionCache)
master_key = web.AppKey("master", MasterKey)
fields_key = web.AppKey("fields", FieldCrypto)
registry_key = web.AppKey("registry", CollectorRegistry)
directory_key = web.AppKey("directory", TenantDirectory)
importer_key = web.AppKey("importer", ContactImporter)
inbound_key = web.AppKey("inbound", InboundRouter)
sandbox_key = web.AppKey("sandbox", SandboxChannel)
watch_key = web.AppKey("watch", RevocationWatch)
channels_key = web.AppKey("channels", dict)
credentials_key = web.AppKey("credentials", CredentialStore)
line_admin_key = web.AppKey("line_admin", LineAdmin)  # add, edit, pause, archive lines
telegram_inbound_key = web.AppKey("telegram_inbound", TelegramInbound)
operator_desk_key = web.AppKey("operator_desk", OperatorDesk)
iys_sync_key = web.AppKey("iys_sync", IysSync)
erasures_key = web.AppKey("erasures", ErasureFinisher)
# Vault unlock and passphrase failures per tenant (dashboard.services.accounts).
unlock_failures_key = web.AppKey("unlock_failures", FailureLimiter)
# Every Argon2id computation on the web path runs through these slots (see HashSlots).
hash_slots_key = web.AppKey("hash_slots", HashSlots)
# The service's public https URL ("" when it has none: Telegram then uses long polling).
public_url_key = web.AppKey("public_url", str)
# Called with (campaign_id, send_at) when a campaign becomes scheduled: sets its timer.
scheduler_hook_key = web.AppKey("scheduler_hook", Callable[[str, float | None], None])
# Set by the auth middleware on every /api/v1 request that carries a valid key.
TENANT = web.RequestKey("tenant_id", str)
API_KEY_ID = web.RequestKey("api_key_id", str)
# The calling API key's role; absent when a dashboard page runs an operation in-process
# (the page has checked the user's role itself).
API_KEY_ROLE = web.RequestKey("api_key_role", str)
# Who acts, as the audit log names them: "api_key:<id>" or "user:<id>" (dashboard).
ACTOR = web.RequestKey("actor", str)


def actor_of(request: web.Request) -> str:
    return request.get(ACTOR) or f"api_key:{request.get(API_KEY_ID, '?')}"
