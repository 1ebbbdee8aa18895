"""The channels izinli ships, described for the registry: the sandbox, WhatsApp Cloud API
numbers and Telegram bots. Each description is all the rest of the service knows of it."""
from __future__ import annotations

import logging
import time

from bot import registry
from bot.registry import BuildContext, ChannelSpec, Field, LineHooks, WebhookRoute
from bot.sandbox import SandboxChannel
from bot.telegram import (
    TelegramChannel,
    TelegramCredentials,
    TelegramLineError,
    new_webhook_secret,
)
from bot.whatsapp import WhatsAppChannel, WhatsAppCredentials, outcome_for_error
from campaigns import quality
from campaigns.lines import SANDBOX_DEFAULT_RATE, SANDBOX_MAX_RATE, LineInputError, simulation
from campaigns.ports import Line
from campaigns.throttle import DAY, WHATSAPP_TIERS
from optout.addresses import normalise_phone, normalise_telegram_chat_id

log = logging.getLogger(__name__)
TIERS = ("250", "2.000", "10.000", "100.000", "∞")


def _simulate(value: dict) -> dict:
    try:
        return simulation(value)
    except LineInputError as exc:
        raise ValueError(str(exc)) from None


SANDBOX = ChannelSpec(
    name="sandbox", title="Deneme hattı (sandbox)", address_kind="phone",
    normalise=normalise_phone, default_rate=SANDBOX_DEFAULT_RATE, max_rate=SANDBOX_MAX_RATE,
    build=lambda ctx: SandboxChannel(ctx.db, ctx.fields, ctx.directory),
    # Its answer is one commit for all the sends waiting (bot.sandbox): more in flight means
    # fewer commits, so a round's sends share a few instead of one per 64 (issue 18).
    max_in_flight=1024,
    options=(Field("simulate", "Simülasyon", kind=dict, required=False,
                   check=_simulate),))


def _tier(value: int) -> int:
    if not 0 <= value < len(WHATSAPP_TIERS):
        raise ValueError(f"'messaging_tier' must be 0 to {len(WHATSAPP_TIERS) - 1} "
                         "(250 → unlimited)")
    return value


def _waba(value: str) -> str:
    if not (value.isascii() and value.isdigit() and len(value) <= 32):
        raise ValueError("'waba_id' must be the account's numeric id")
    return value


def _whatsapp_limits(line: Line) -> dict:
    # One message per 6 s to a person, and a rolling 24 h cap of unique recipients by tier.
    # A new number earns the provider's trust over its first week (throttle.warmup_rate).
    age = None if line.created_at is None else max(0.0, time.time() - line.created_at) / DAY
    # The tier's cap, or Meta's exact limit from its last quality update (campaigns.quality).
    return {"pair_interval": 6.0, "daily_unique_limit": quality.daily_limit(line.options),
            "provider_max_rate": 1000.0, "warmup_age_days": age}


WHATSAPP = ChannelSpec(
    name="whatsapp", title="WhatsApp Cloud API", address_kind="phone",
    normalise=normalise_phone,
    # 80 msg/s per number by default, up to 1,000 when Meta raised it.
    default_rate=80.0, max_rate=1000.0, customer_window_seconds=24 * 3600.0,
    build=lambda ctx: WhatsAppChannel(ctx.credentials_for, base_url=ctx.providers.whatsapp_url,
                                      timeout=ctx.providers.whatsapp_timeout_seconds),
    processor="Meta Platforms Ireland Ltd. (WhatsApp Business Platform)",
    credentials=(
        Field("phone_number_id", "Phone number ID",
              help="Meta uygulamasında WhatsApp → API Setup sayfasındaki “Phone number ID”; "
                   "telefon numarasının kendisi değil."),
        Field("access_token", "Access token", secret=True, editable=True,
              help="Süresi dolmayan sistem kullanıcısı anahtarı (whatsapp_business_messaging "
                   "ve whatsapp_business_management izinleriyle); 24 saatlik geçici "
                   "anahtarı kullanmayın."),
        Field("app_secret", "App secret", secret=True,
              help="Uygulama ayarları → Temel → Uygulama gizli anahtarı; Meta'dan gelen "
                   "webhook imzasını (X-Hub-Signature-256) doğrular."),
        Field("verify_token", "Verify token", secret=True,
              help="Kendi seçtiğiniz uzun, rastgele bir metin; Meta'da webhook adresini "
                   "(https://<izinli adresiniz>/webhooks/whatsapp/<hat kimliği>) "
                   "kaydederken aynısını yazın.")),
    options=(
        Field("messaging_tier", "Mesaj katmanı (24 saatte farklı alıcı) / Messaging tier "
              "(unique recipients per 24 h)", kind=int, required=False, editable=True,
              check=_tier, choices=TIERS,
              help="WhatsApp Manager'da görünen mesaj limitiniz (yeni hesaplar 250 ile "
                   "başlar); izinli 24 saatte en çok bu kadar farklı kişiye gönderir."),
        Field("waba_id", "WhatsApp Business Account ID", required=False, editable=True,
              check=_waba,
              help="API Setup sayfasındaki WhatsApp Business hesabı kimliği; onaylı "
                   "şablonlarınızı eşitlemek için gerekir.")),
    parse_credentials=WhatsAppCredentials.from_json,
    make_credentials=lambda v: WhatsAppCredentials(
        v["phone_number_id"], v["access_token"], v["app_secret"], v["verify_token"]).to_json(),
    limits=_whatsapp_limits, outcome_for_error=outcome_for_error,
    webhooks=(
        WebhookRoute("GET", "WhatsApp webhook verification (hub.mode, hub.verify_token, "
                     "hub.challenge)", handler="whatsapp_handshake",
                     query=("hub.mode", "hub.verify_token", "hub.challenge"),
                     responses={200: "The challenge", 403: "Wrong verify token"}),
        WebhookRoute("POST", "WhatsApp webhook: messages, statuses, user preferences "
                     "(X-Hub-Signature-256)", handler="whatsapp_events",
                     responses={200: "Processed", 401: "Bad signature; nothing changed"})),
    guide="docs/whatsapp.md")


async def _telegram_webhook(hooks: LineHooks, line: Line, credentials: TelegramCredentials):
    if not hooks.public_url:  # the poller picks the line up within seconds
        return
    try:
        await hooks.channel.set_webhook(
            line, f"{hooks.public_url.rstrip('/')}/webhooks/telegram/{line.id}",
            credentials.webhook_secret)
    except TelegramLineError as exc:
        log.warning("telegram webhook not set", extra={"line_id": line.id, "reason": exc.code})


async def _telegram_unhook(hooks: LineHooks, line: Line, credentials) -> None:
    if not hooks.public_url:
        return
    try:
        await hooks.channel.delete_webhook(line)
    except TelegramLineError as exc:  # the bot's token is gone from here either way
        log.warning("telegram webhook not removed", extra={"line_id": line.id,
                                                           "reason": exc.code})


async def _telegram_forget(channel: TelegramChannel, line_id: str) -> None:
    # Closing its session ends a long poll in flight; the poller then finds no credentials.
    await channel.forget(line_id)


TELEGRAM = ChannelSpec(
    name="telegram", title="Telegram", address_kind="chat_id",
    normalise=normalise_telegram_chat_id, default_rate=30.0, max_rate=30.0,
    build=lambda ctx: TelegramChannel(ctx.credentials_for, base_url=ctx.providers.telegram_url),
    consent_type="TELEGRAM", processor="Telegram FZ-LLC (Telegram Bot API)",
    credentials=(Field("bot_token", "Bot token", secret=True, editable=True,
                       help="@BotFather'da /newbot ile aldığınız anahtar (123456789:AA… "
                            "biçiminde)."),),
    parse_credentials=TelegramCredentials.from_json,
    # A new webhook secret with every token: the webhook is set again with it.
    make_credentials=lambda v: TelegramCredentials(v["bot_token"],
                                                   new_webhook_secret()).to_json(),
    limits=lambda line: {"pair_interval": 1.0, "provider_max_rate": 30.0},
    webhooks=(WebhookRoute("POST", "Telegram Bot API webhook "
                           "(X-Telegram-Bot-Api-Secret-Token)", handler="telegram_events",
                           responses={200: "Processed", 401: "Bad secret; nothing changed"}),),
    after_add=_telegram_webhook, after_delete=_telegram_unhook, forget=_telegram_forget,
    guide="docs/telegram.md")


for _spec in (SANDBOX, WHATSAPP, TELEGRAM):
    registry.register(_spec)

__all__ = ["SANDBOX", "TELEGRAM", "WHATSAPP", "BuildContext"]
