"""What the dashboard shows for a stored code, and how it shows times and durations.

Every state, reason, role, kind, import error and API error code a page may display has a
Turkish and an English text here, keyed by (kind, code). A code missing from the catalogue is
humanised ("rate_limited" → "Rate limited"), never shown raw. Times are shown in the business's
time zone in the reader's language ("30 Kasım 2026, 12:04"); durations in minutes and hours.
Templates use the filters `label`, `when`, `day` and `duration` (registered in
dashboard.pages.web)."""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

DEFAULT_ZONE = "Europe/Istanbul"

_STATES: dict[str, tuple[str, str]] = {
    # campaigns
    "draft": ("taslak", "draft"),
    "scheduled": ("zamanlandı", "scheduled"),
    "running": ("gönderiliyor", "sending"),
    "paused": ("duraklatıldı", "paused"),
    "waiting_unlock": ("kasanın açılmasını bekliyor", "waiting for the vault"),
    "completed": ("tamamlandı", "completed"),
    "cancelled": ("iptal edildi", "cancelled"),
    "failed": ("başarısız", "failed"),
    # messages (the outbox)
    "pending": ("bekliyor", "waiting"),
    "sending": ("gönderiliyor", "sending"),
    "sent": ("gönderildi", "sent"),
    "delivered": ("teslim edildi", "delivered"),
    "read": ("okundu", "read"),
    "skipped": ("atlandı", "skipped"),
    "unknown": ("sonucu bilinmiyor", "outcome unknown"),
    # lines, API keys
    "active": ("etkin", "active"),
    "archived": ("arşivlendi", "archived"),
    "deleted": ("silindi", "deleted"),
    "revoked": ("reddetti", "refused"),
    "disabled": ("devre dışı", "disabled"),
    # consents, İYS
    "granted": ("izin verdi", "consented"),
    "not_applicable": ("gerekmiyor", "not needed"),
    "synced": ("İYS'ye iletildi", "sent to İYS"),
    "rejected": ("İYS reddetti", "rejected by İYS"),
    "ONAY": ("onay", "consent"),
    "RET": ("ret", "refusal"),
    # subject requests
    "open": ("açık", "open"),
    "done": ("tamamlandı", "done"),
    "overdue": ("süresi geçti", "overdue"),
}

_REASONS: dict[str, tuple[str, str]] = {
    # the consent gate
    "allowed": ("izinli", "allowed"),
    "no_consent": ("izin yok", "no consent"),
    "opted_out": ("ret bildirdi", "opted out"),
    "suppressed": ("engel listesinde", "on the suppression list"),
    "iys_refused": ("İYS'de ret", "refused in İYS"),
    "iys_pending": ("İYS onayı bekleniyor", "waiting for İYS"),
    "quiet_hours": ("sessiz saatler", "quiet hours"),
    "frequency_cap": ("gönderim sıklığı sınırı", "frequency cap"),
    "invalid_address": ("geçersiz adres", "invalid address"),
    "blocked": ("kişi engelledi", "blocked by the person"),
    "outside_window": ("24 saatlik pencere dışında", "outside the 24-hour window"),
    "refused_earlier": ("daha önce reddetti", "refused earlier"),
    "erased": ("verileri silindi", "data erased"),
    "erasure": ("silme talebi", "erasure request"),
    "complaint": ("şikâyet", "complaint"),
    "manual": ("elle eklendi", "added by hand"),
    "consent": ("izin geri alındı", "consent withdrawn"),
    # sending
    "rate_limited": ("hız sınırı", "rate limited"),
    "interrupted": ("gönderim yarıda kaldı", "sending interrupted"),
    "auth_failed": ("sağlayıcı girişi reddetti", "the provider refused the credentials"),
    "channel_error": ("kanal hatası", "channel error"),
    "provider_unavailable": ("sağlayıcıya ulaşılamadı", "provider unavailable"),
    "spam_rate_limited": ("WhatsApp spam sınırı", "WhatsApp spam rate limit"),
    "policy_blocked": ("WhatsApp politika engeli", "WhatsApp policy block"),
    "template_paused": ("WhatsApp şablonu duraklatıldı", "the WhatsApp template was paused"),
    "error_run": ("art arda gönderim hataları", "a run of send errors"),
    "optout_rate": ("ilk gönderimlerde çok fazla ret", "too many opt-outs among the first sends"),
    "line deleted": ("hat silindi", "the line was deleted"),
    "line archived": ("hat arşivlendi", "the line is archived"),
    "paused by owner": ("sahibi tarafından duraklatıldı", "paused by the owner"),
    "cancelled by owner": ("sahibi tarafından iptal edildi", "cancelled by the owner"),
    "quality_flagged": ("WhatsApp numaranın kalitesini düşük buldu",
                        "WhatsApp flagged the number's quality"),
    "account_restricted": ("WhatsApp hesabı kısıtladı", "WhatsApp restricted the account"),
    "account_disabled": ("WhatsApp hesabı kapattı", "WhatsApp disabled the account"),
    "account_violation": ("WhatsApp politika ihlali bildirdi",
                          "WhatsApp reported a policy violation"),
    "account_deleted": ("WhatsApp hesabı silindi", "the WhatsApp account was deleted"),
    # CSV import rows
    "invalid_phone": ("geçersiz telefon numarası", "invalid phone number"),
    "missing_phone": ("telefon numarası yok", "no phone number"),
    "invalid_consent": ("izin değeri anlaşılmadı", "consent value not understood"),
    "invalid_characters": ("geçersiz karakterler", "invalid characters"),
    "invalid_recipient_type": ("alıcı türü anlaşılmadı", "recipient type not understood"),
}

_ROLES: dict[str, tuple[str, str]] = {
    "viewer": ("izleyici", "viewer"),
    "operator": ("operatör", "operator"),
    "admin": ("yönetici", "admin"),
    "owner": ("sahip", "owner"),
}

_KINDS: dict[str, tuple[str, str]] = {
    # subject (KVKK) requests
    "access": ("erişim", "access"),
    "export": ("dışa aktarma", "export"),
    "erasure": ("silme", "erasure"),
    "correction": ("düzeltme", "correction"),
    # consents
    "commercial": ("ticari", "commercial"),
    "informational": ("bilgilendirme", "informational"),
    "MESAJ": ("mesaj", "message"),
    "ARAMA": ("arama", "call"),
    "EPOSTA": ("e-posta", "e-mail"),
    "BIREYSEL": ("bireysel", "individual"),
    "TACIR": ("tacir", "merchant"),
    "*": ("tümü", "everything"),
    # suppressions
    "opted_out": ("ret", "opt-out"),
    "blocked": ("engelleme", "block"),
    "complaint": ("şikâyet", "complaint"),
    "manual": ("elle", "manual"),
    # sources
    "import": ("içe aktarma", "import"),
    "api": ("API", "API"),
    "reply": ("yanıt", "reply"),
    "sandbox": ("deneme kutusu", "sandbox"),
    "whatsapp": ("WhatsApp", "WhatsApp"),
    "telegram": ("Telegram", "Telegram"),
    "sms": ("SMS", "SMS"),
    "dashboard": ("panel", "dashboard"),
    "iys": ("İYS", "İYS"),
    # vault key custody
    "passphrase": ("kasa parolası", "passphrase"),
    "service": ("sunucu", "service"),
}

_ERRORS: dict[str, tuple[str, str]] = {
    "invalid_field": ("Bir alanın değeri geçersiz.", "A field's value is invalid."),
    "missing_field": ("Gerekli bir alan boş.", "A required field is empty."),
    "unknown_field": ("Tanınmayan bir alan gönderildi.", "An unknown field was sent."),
    "invalid_number": ("Bir sayı geçersiz.", "A number is invalid."),
    "invalid_json": ("İstek okunamadı.", "The request could not be read."),
    "invalid_header": ("İstek başlığı geçersiz.", "A request header is invalid."),
    "invalid_request": ("İstek geçersiz.", "The request is invalid."),
    "bad_request": ("İstek geçersiz.", "The request is invalid."),
    "not_found": ("Aranan kayıt bulunamadı.", "Not found."),
    "forbidden": ("Bu işlem için yetkiniz yok.", "You are not allowed to do this."),
    "unauthorized": ("Oturum açmanız gerekiyor.", "Please sign in."),
    "conflict": ("Bu işlem kaydın şu anki durumunda yapılamaz.",
                 "This cannot be done in the record's current state."),
    "invalid_state": ("Bu işlem kaydın şu anki durumunda yapılamaz.",
                      "This cannot be done in the record's current state."),
    "payload_too_large": ("Gönderilen dosya ya da istek çok büyük.",
                          "The file or request is too large."),
    "unsupported_media_type": ("Bu dosya türü desteklenmiyor.",
                               "This file type is not supported."),
    "too_many_requests": ("Çok fazla istek; biraz sonra tekrar deneyin.",
                          "Too many requests; try again shortly."),
    "busy": ("Sunucu meşgul; biraz sonra tekrar deneyin.",
             "The server is busy; try again shortly."),
    "vault_locked": ("Kasa kilitli: önce kasayı açın.", "The vault is locked: unlock it first."),
    "wrong_passphrase": ("Kasa parolası yanlış.", "Wrong vault passphrase."),
    "weak_passphrase": ("Bu parola çok zayıf; daha uzun ve tahmin edilmesi zor bir parola seçin.",
                        "This passphrase is too weak; choose a longer one that is hard to guess."),
    "invalid_credentials": ("Bilgiler hatalı.", "The credentials are wrong."),
    "role_not_allowed": ("Bu rol burada verilemez.", "This role cannot be given here."),
    "invalid_role": ("Geçersiz rol.", "Invalid role."),
    "last_owner": ("Son sahip kaldırılamaz ya da rolü değiştirilemez.",
                   "The last owner cannot be removed or demoted."),
    "user_disabled": ("Bu kullanıcı devre dışı.", "This user is disabled."),
    "reconsent_not_newer": ("Yeni izin, son retten sonra verilmiş olmalı.",
                            "The new consent must be later than the last refusal."),
    "refused_earlier": ("Bu kişi daha önce reddetti; izni yalnızca kendisi yeniden verebilir.",
                        "This person refused earlier; only they can consent again."),
    "erased": ("Bu kişinin verileri silindi.", "This person's data was erased."),
    "invalid_address": ("Adres geçersiz.", "The address is invalid."),
    "address_not_allowed": ("Bu adrese izin verilmiyor.", "This address is not allowed."),
    "invalid_template": ("Mesaj şablonu geçersiz.", "The message template is invalid."),
    "invalid_campaign": ("Kampanya bilgileri geçersiz.", "The campaign is invalid."),
    "invalid_consent": ("İzin bilgisi geçersiz.", "The consent is invalid."),
    "invalid_suppression": ("Engel kaydı geçersiz.", "The suppression is invalid."),
    "looks_commercial": ("Bu metin ticari ileti gibi okunuyor.",
                         "This text reads as commercial."),
    "unsupported_channel": ("Bu kanal desteklenmiyor.", "This channel is not supported."),
    "not_whatsapp": ("Bu hat WhatsApp hattı değil.", "This line is not a WhatsApp line."),
    "not_sandbox": ("Bu hat deneme hattı değil.", "This line is not a sandbox line."),
    "no_telegram_line": ("Önce bir Telegram hattı ekleyin.", "Add a Telegram line first."),
    "bad_secret": ("Gizli anahtar hatalı.", "The secret is wrong."),
    "bad_signature": ("İmza doğrulanamadı.", "The signature did not verify."),
    "empty_file": ("Dosya boş.", "The file is empty."),
    "csv_format": ("Dosya CSV olarak okunamadı.", "The file could not be read as CSV."),
    "no_phone_column": ("Dosyada telefon sütunu yok.", "The file has no phone column."),
    "corrupt_data": ("Kayıtlı veri okunamadı.", "Stored data could not be read."),
    "crypto_error": ("Şifreli veri açılamadı.", "Encrypted data could not be opened."),
    "missing_data_key": ("Veri anahtarı bulunamadı.", "The data key is missing."),
    "checkpoint_forged": ("Denetim kaydı doğrulanamadı.", "The audit log did not verify."),
    "truncated": ("Denetim kaydı eksik.", "The audit log is truncated."),
    "empty_list": ("Bu listede mesaj gidecek kimse yok; boş liste başlatılamaz.",
                   "Nobody on this list would get the message; an empty list cannot start."),
    "unknown_template": ("Bu WhatsApp şablonu bulunamadı.", "No such WhatsApp template."),
    "template_not_approved": ("WhatsApp şablonu henüz onaylanmadı.",
                              "The WhatsApp template is not approved yet."),
    "template_parameters": ("Şablonun alanları mesajla uyuşmuyor.",
                            "The template's parameters do not match."),
    "unsupported_template": ("Bu şablon türü desteklenmiyor.",
                             "This kind of template is not supported."),
    "template_lacks_opt_out": ("Şablonda ret (RET) bilgisi yok.",
                               "The template lacks the opt-out text."),
    "template_lacks_sender": ("Şablonda işletmenin adı yok.",
                              "The template lacks the business's name."),
    "marketing_template": ("Pazarlama şablonu yalnızca ticari kampanyada kullanılabilir.",
                           "A marketing template needs a commercial campaign."),
    "unavailable": ("Veritabanına şu an ulaşılamıyor; biraz sonra tekrar deneyin.",
                    "The database is unavailable; try again shortly."),
}

# Where a consent came from: "inbound:sandbox", "import", "api", "IYS:HS_WEB", …
_SOURCES: dict[str, tuple[str, str]] = {
    "inbound": ("kişinin yanıtı", "the person's reply"),
    "import": ("içe aktarma", "import"),
    "IYS": ("İYS", "İYS"),
    "api": ("API", "API"),
    "dashboard": ("panel", "dashboard"),
    "manual": ("elle", "manual"),
    "telegram_invite": ("Telegram daveti", "Telegram invite"),
    "unknown": ("bilinmiyor", "unknown"),
}

CATALOGUE: dict[str, dict[str, tuple[str, str]]] = {
    "state": _STATES, "reason": _REASONS, "role": _ROLES, "kind": _KINDS, "source": _SOURCES,
    "error": _ERRORS}

_KNOWN = frozenset(code for table in CATALOGUE.values() for code in table)

# Errors about one field that deserve their own sentence.
_FIELD_ERRORS: dict[tuple[str, str], tuple[str, str]] = {
    ("invalid_field", "timezone"): (
        "Saat dilimi geçersiz: bir IANA bölge adı yazın (ör. Europe/Istanbul).",
        "Invalid time zone: enter an IANA zone name (e.g. Europe/Istanbul)."),
}

# The field an API error message names: "'timezone' must be an IANA zone name".
_FIELD = re.compile(r"'([A-Za-z_][A-Za-z0-9_.]*)'")

# Free-text reasons that start with a code ("error_run: 5 send errors in a row").
_CODE_PREFIX = re.compile(r"^([a-z][a-z0-9_ ]*?)\s*[:(]")

TR_MONTHS = ("Ocak", "Şubat", "Mart", "Nisan", "Mayıs", "Haziran", "Temmuz", "Ağustos",
             "Eylül", "Ekim", "Kasım", "Aralık")
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")


def known_codes() -> frozenset[str]:
    """Every code the catalogue names (what a page must never show as is)."""
    return _KNOWN


def humanise(code: str) -> str:
    """A readable fallback for a code the catalogue lacks: words, first letter capital."""
    words = re.sub(r"[_\-.]+", " ", str(code)).strip()
    return (words[:1].upper() + words[1:]) if words else "—"


def label(code, kind: str = "state", lang: str = "tr") -> str:
    """The text for `code` of `kind` in `lang`; other kinds' tables are tried next, then a
    humanised form. None and "" show as a dash."""
    if code is None or code == "":
        return "—"
    text = str(code)
    english = lang == "en"
    if kind == "source":
        head, sep, rest = text.partition(":")
        pair = _SOURCES.get(head) or _KINDS.get(head)
        if pair is not None:
            shown = pair[1] if english else pair[0]
            if not (sep and rest):
                return shown
            detail = _KINDS.get(rest)
            return f"{shown} ({(detail[1] if english else detail[0]) if detail else rest})"
        if "_" not in text and text not in known_codes():
            return text  # a source as the caller wrote it ("web form", "HS_WEB" aside)
    tables = [CATALOGUE.get(kind, {})] + [t for k, t in CATALOGUE.items() if k != kind]
    for table in tables:
        pair = table.get(text)
        if pair is not None:
            return pair[1] if english else pair[0]
    prefix = _CODE_PREFIX.match(text)
    if prefix:
        for table in tables:
            pair = table.get(prefix.group(1))
            if pair is not None:
                return pair[1] if english else pair[0]
    if " " in text.strip() and "_" not in text:
        return text  # already a sentence (a provider's or an older row's message)
    return humanise(text)


def error_text(code: str | None, message: str = "", lang: str = "tr") -> str:
    """An API error shown on a page: translated by its code; the API's own message only when
    the code is unknown (it is written to be shown)."""
    named = _FIELD.search(message or "")
    pair = _FIELD_ERRORS.get((code or "", named.group(1) if named else ""))
    if pair is not None:
        return pair[1] if lang == "en" else pair[0]
    pair = _ERRORS.get(code or "")
    if pair is not None:
        text = pair[1] if lang == "en" else pair[0]
        return f"{text} ({named.group(1)})" if named else text
    return message or humanise(code or "error")


def said(request, error) -> str:
    """A page's text for an error with a `code` (ApiError, InputError, AccountError, …) in
    the request's language."""
    from dashboard import i18n
    return error_text(getattr(error, "code", None), getattr(error, "message", str(error)),
                      i18n.language(request))


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


def _moment(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value, tz: str | None = None, lang: str = "tr", *, with_time: bool = True) -> str:
    """"30 Kasım 2026, 12:04" in the business's zone (English "30 November 2026, 12:04")."""
    moment = _moment(value)
    if moment is None:
        return "—" if value in (None, "") else str(value)
    local = moment.astimezone(zone(tz))
    month = (EN_MONTHS if lang == "en" else TR_MONTHS)[local.month - 1]
    day = f"{local.day} {month} {local.year}"
    return f"{day}, {local:%H:%M}" if with_time else day


def duration(seconds, lang: str = "tr") -> str:
    """"1 saat", "45 dakika", "1 saat 5 dakika"; under a minute "1 dakikadan az"."""
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return "—"
    english = lang == "en"
    if total < 60:
        return "less than a minute" if english else "1 dakikadan az"
    hours, minutes = divmod(total // 60, 60)
    days, hours = divmod(hours, 24)
    parts = []
    if days:
        parts.append(f"{days} {'day' if days == 1 else 'days'}" if english else f"{days} gün")
    if hours:
        parts.append(f"{hours} {'hour' if hours == 1 else 'hours'}" if english
                     else f"{hours} saat")
    if minutes:
        parts.append(f"{minutes} {'minute' if minutes == 1 else 'minutes'}" if english
                     else f"{minutes} dakika")
    return " ".join(parts)


# --- Jinja filters: the page's language and zone come from the template context ---------------

def _lang(context: Mapping) -> str:
    return context.get("lang") or "tr"


def _tz(context: Mapping) -> str | None:
    return context.get("tz")


@jinja2.pass_context
def label_filter(context, code, kind: str = "state") -> str:
    return label(code, kind, _lang(context))


@jinja2.pass_context
def when_filter(context, value) -> str:
    return when(value, _tz(context), _lang(context))


@jinja2.pass_context
def day_filter(context, value) -> str:
    return when(value, _tz(context), _lang(context), with_time=False)


@jinja2.pass_context
def duration_filter(context, seconds) -> str:
    return duration(seconds, _lang(context))


@jinja2.pass_context
def error_filter(context, code, message: str = "") -> str:
    return error_text(code, message, _lang(context))


def catalogue(kind: str, lang: str = "tr") -> dict[str, str]:
    """One kind's texts in `lang` (for scripts that relabel live updates)."""
    return {code: pair[1] if lang == "en" else pair[0]
            for code, pair in CATALOGUE.get(kind, {}).items()}


@jinja2.pass_context
def catalogue_filter(context, kind: str) -> dict[str, str]:
    return catalogue(kind, _lang(context))


@jinja2.pass_context
def term_filter(context, value):
    """`value` translated when it is a code the catalogue knows (audit details: ids and counts
    beside states and roles), else unchanged."""
    if isinstance(value, str) and value in known_codes():
        return label(value, "state", _lang(context))
    return value


FILTERS = {"label": label_filter, "catalogue": catalogue_filter, "term": term_filter,
           "when": when_filter, "day": day_filter, "duration": duration_filter,
           "error_text": error_filter}


# --- the tenant's zone, per process, refreshed every ZONE_SECONDS ----------------------------

ZONE_SECONDS = 30.0
_zones: dict[str, tuple[float, str]] = {}


async def tenant_zone(db, tenant_id: str) -> str:
    """The business's time zone name (tenant settings), cached briefly per process."""
    found = _zones.get(tenant_id)
    now = time.monotonic()
    if found is not None and found[0] > now:
        return found[1]
    import sqlalchemy as sa

    from store.tables import tenant_settings
    async with db.connect() as conn:
        name = (await conn.execute(sa.select(tenant_settings.c.timezone).where(
            tenant_settings.c.tenant_id == tenant_id))).scalar()
    name = name or DEFAULT_ZONE
    if len(_zones) > 10_000:
        _zones.clear()
    _zones[tenant_id] = (now + ZONE_SECONDS, name)
    return name


def forget_zone(tenant_id: str) -> None:
    """After the settings change the zone (this process shows the new one at once)."""
    _zones.pop(tenant_id, None)


# --- names a business typed, sealed (dashboard.services.names) ------------------------------

# Shown instead of a list, campaign, line or API key name while the vault is locked.
NAME_LOCKED = ("🔒 Kasa kilitli", "🔒 Vault locked")


@jinja2.pass_context
def named_filter(context, name):
    """A sealed name as opened, or NAME_LOCKED while the vault is locked (name None)."""
    if name is None:
        return NAME_LOCKED[1] if _lang(context) == "en" else NAME_LOCKED[0]
    return name


FILTERS["named"] = named_filter


# --- the audit log: what was done, and the names of its details ------------------------------

AUDIT_ACTIONS: dict[str, tuple[str, str]] = {
    "api_key.create": ("API anahtarı oluşturuldu", "API key created"),
    "api_key.issue": ("API anahtarı verildi", "API key issued"),
    "api_key.revoke": ("API anahtarı iptal edildi", "API key revoked"),
    "campaign.create": ("Kampanya oluşturuldu", "Campaign created"),
    "campaign.start": ("Kampanya başlatıldı", "Campaign started"),
    "campaign.pause": ("Kampanya duraklatıldı", "Campaign paused"),
    "campaign.resume": ("Kampanya sürdürüldü", "Campaign resumed"),
    "campaign.cancel": ("Kampanya iptal edildi", "Campaign cancelled"),
    "campaign.retry": ("Başarısız gönderimler yeniden denendi", "Failed sends retried"),
    "campaign.due": ("Zamanlanan kampanya başladı", "Scheduled campaign started"),
    "consent.record": ("İzin kaydedildi", "Consent recorded"),
    "consent.reconsent": ("Kişi yeniden izin verdi", "The person consented again"),
    "consent.export": ("İzin geçmişi indirildi", "Consent history downloaded"),
    "contacts.import": ("Kişiler içe aktarıldı", "Contacts imported"),
    "iys.retry": ("İYS iletimi yeniden denendi", "İYS upload retried"),
    "line.update": ("Hat değiştirildi", "Line changed"),
    "line.pause": ("Hat duraklatıldı", "Line paused"),
    "line.resume": ("Hat sürdürüldü", "Line resumed"),
    "line.archive": ("Hat arşivlendi", "Line archived"),
    "line.delete": ("Hat silindi", "Line deleted"),
    "line.templates_sync": ("WhatsApp şablonları eşitlendi", "WhatsApp templates synced"),
    "operator.link_code": ("Operatör botu bağlantı kodu üretildi",
                           "Operator bot link code made"),
    "retention.purge": ("Eski kayıtlar temizlendi", "Old records purged"),
    "settings.update": ("Ayarlar değiştirildi", "Settings changed"),
    "subject.correct": ("Kişinin bilgileri düzeltildi (KVKK)", "A person's data corrected (KVKK)"),
    "subject.erase": ("Kişinin verileri silindi (KVKK)", "A person's data erased (KVKK)"),
    "subject.erase_kept": ("Silme talebi kasa açılınca tamamlanacak",
                           "Erasure request kept until the vault is unlocked"),
    "suppression.add": ("Engel listesine eklendi", "Added to the suppression list"),
    "suppression.export": ("Engel listesi indirildi", "Suppression list downloaded"),
    "telegram_invite.create": ("Telegram daveti oluşturuldu", "Telegram invite created"),
    "telegram_invite.revoke": ("Telegram daveti iptal edildi", "Telegram invite revoked"),
    "tenant.create": ("İşletme oluşturuldu", "Business created"),
    "tenant.delete": ("İşletme silindi", "Business deleted"),
    "user.create": ("Kullanıcı eklendi", "User added"),
    "user.login": ("Kullanıcı oturum açtı", "User signed in"),
    "user.role": ("Kullanıcının rolü değişti", "User's role changed"),
    "user.disable": ("Kullanıcı devre dışı bırakıldı", "User disabled"),
    "vault.unlock": ("Kasa açıldı", "Vault unlocked"),
    "vault.unlock_failed": ("Kasa açılamadı (yanlış parola)", "Vault unlock failed (wrong "
                                                               "passphrase)"),
    "vault.lock": ("Kasa kilitlendi", "Vault locked"),
    "vault.custody": ("Kasa anahtarının saklanma biçimi değişti", "Vault key custody changed"),
    "vault.passphrase": ("Kasa parolası değiştirildi", "Vault passphrase changed"),
    "vault.passphrase_failed": ("Kasa parolası değiştirilemedi (yanlış parola)",
                                "Vault passphrase change failed (wrong passphrase)"),
    "vault.recover": ("Kasa kurtarma koduyla açıldı", "Vault recovered with the recovery code"),
    "vault.recover_failed": ("Kurtarma kodu reddedildi", "Recovery code refused"),
    "vault.recovery_code": ("Yeni kurtarma kodu üretildi", "New recovery code made"),
}

AUDIT_FIELDS: dict[str, tuple[str, str]] = {
    "campaign_id": ("kampanya", "campaign"),
    "campaigns_stopped": ("durdurulan kampanya", "campaigns stopped"),
    "cancelled_drafts": ("iptal edilen taslak", "drafts cancelled"),
    "channel": ("kanal", "channel"),
    "commercial_words": ("ticari sözcükler", "commercial words"),
    "confirm_informational": ("bilgilendirme olarak onaylandı", "confirmed as informational"),
    "consent_text": ("izin metni", "consent statement"),
    "consent_type": ("izin türü", "consent type"),
    "contacts": ("kişi kaydı", "contact records"),
    "custody": ("anahtar saklama", "key custody"),
    "erased": ("silinmiş kişi", "erased people"),
    "event_id": ("kayıt", "record"),
    "events": ("kayıt sayısı", "records"),
    "fields": ("alanlar", "fields"),
    "format": ("biçim", "format"),
    "imported": ("eklenen", "added"),
    "inbound_messages": ("gelen mesaj", "inbound messages"),
    "inbound_window": ("24 saat penceresi", "24-hour window"),
    "include_unknown": ("sonucu bilinmeyenler de", "outcome unknown included"),
    "invalid": ("geçersiz satır", "invalid rows"),
    "invite_id": ("davet", "invite"),
    "kept_refusal": ("korunan ret", "refusals kept"),
    "key_id": ("anahtar", "key"),
    "keys": ("ayarlar", "settings"),
    "kind": ("tür", "kind"),
    "lifted_erasure": ("kaldırılan silme", "erasure lifted"),
    "lifted_refusal": ("kaldırılan ret", "refusal lifted"),
    "line_id": ("hat", "line"),
    "list_id": ("liste", "list"),
    "new_device": ("yeni cihaz", "new device"),
    "paused_campaigns": ("duraklatılan kampanya", "campaigns paused"),
    "previous_reason": ("önceki neden", "previous reason"),
    "purpose": ("amaç", "purpose"),
    "rate_per_second": ("saniyede gönderim", "sends per second"),
    "records": ("kayıt sayısı", "records"),
    "redacted": ("karartılan kayıtlar", "entries redacted"),
    "request_id": ("talep", "request"),
    "role": ("rol", "role"),
    "rows": ("satır", "rows"),
    "sandbox_messages": ("deneme mesajı", "sandbox messages"),
    "scope": ("kapsam", "scope"),
    "status": ("durum", "status"),
    "templates": ("şablon", "templates"),
    "tenant": ("işletme", "business"),
    "ttl_seconds": ("açık kalma süresi", "open for"),
    "undated": ("tarihsiz izin", "undated consents"),
    "updated": ("güncellenen", "updated"),
    "user_id": ("kullanıcı", "user"),
    "value": ("değer", "value"),
    # settings and line fields a change names
    "name": ("ad", "name"),
    "sender_name": ("gönderen adı", "sender name"),
    "sender_contact": ("gönderen iletişim bilgisi", "sender contact"),
    "language": ("dil", "language"),
    "brand_names": ("marka adları", "brand names"),
    "iys_enabled": ("İYS", "İYS"),
    "iys_code": ("İYS kodu", "İYS code"),
    "iys_brand_code": ("İYS marka kodu", "İYS brand code"),
    "iys_credentials": ("İYS hesabı", "İYS account"),
    "timezone": ("saat dilimi", "time zone"),
    "quiet_hours": ("sessiz saatler", "quiet hours"),
    "quiet_start_hour": ("sessiz saat başlangıcı", "quiet hours start"),
    "quiet_end_hour": ("sessiz saat bitişi", "quiet hours end"),
    "frequency_cap": ("gönderim sıklığı sınırı", "frequency cap"),
    "frequency_window_days": ("sıklık süresi (gün)", "frequency window (days)"),
    "bot_token": ("bot anahtarı", "bot token"),
    "access_token": ("erişim anahtarı", "access token"),
    "app_secret": ("uygulama sırrı", "app secret"),
    "verify_token": ("doğrulama anahtarı", "verify token"),
    "phone_number_id": ("telefon numarası kimliği", "phone number id"),
    "waba_id": ("WhatsApp hesap kimliği", "WhatsApp account id"),
}

# Who acted, when it was not a dashboard user shown by e-mail.
AUDIT_ACTORS: dict[str, tuple[str, str]] = {
    "api_key": ("API anahtarı", "API key"),
    "user": ("kullanıcı", "user"),
    "system": ("sistem", "system"),
    "cli": ("komut satırı", "command line"),
    "setup": ("ilk kurulum", "first-run setup"),
    "operator": ("operatör botu", "operator bot"),
}


def audit_label(code, table: Mapping[str, tuple[str, str]], lang: str = "tr") -> str:
    """An audit action's, detail name's or actor kind's text; a code the table lacks is
    humanised ("line.rotate" → "Line rotate"), never shown raw."""
    pair = table.get(str(code))
    if pair is None:
        return humanise(code)
    return pair[1] if lang == "en" else pair[0]
