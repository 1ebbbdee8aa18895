"""Dashboard text in Turkish (default) and English. Templates call `_("key")` for shared
strings or `_("Türkçe", "English")` inline; an unknown key shows itself, never a crash."""
from __future__ import annotations

from aiohttp import web

LANGUAGES = ("tr", "en")
_PAGE_LANGUAGE = web.RequestKey("page_language", str)

# key: (Turkish, English)
STRINGS: dict[str, tuple[str, str]] = {
    "app_name": ("izinli", "izinli"),
    "nav_overview": ("Özet", "Overview"),
    "nav_contacts": ("Kişiler", "Contacts"),
    "nav_consents": ("İzinler", "Consents"),
    "nav_campaigns": ("Kampanyalar", "Campaigns"),
    "nav_lines": ("Hatlar", "Lines"),
    "nav_sandbox": ("Deneme kutusu", "Sandbox"),
    "nav_vault": ("Kasa", "Vault"),
    "nav_audit": ("Denetim kaydı", "Audit log"),
    "nav_settings": ("Ayarlar", "Settings"),
    "nav_people": ("KVKK talepleri", "People (KVKK)"),
    "nav_users": ("Kullanıcılar", "Users"),
    "nav_keys": ("API anahtarları", "API keys"),
    "logout": ("Çıkış", "Sign out"),
    "language": ("Dil", "Language"),
    "login_title": ("Giriş", "Sign in"),
    "email": ("E-posta", "E-mail"),
    "password": ("Parola", "Password"),
    "sign_in": ("Giriş yap", "Sign in"),
    "login_failed": ("E-posta ya da parola hatalı veya çok fazla deneme yapıldı.",
                     "Wrong e-mail or password, or too many attempts."),
    "csrf": ("Form süresi doldu ya da geçersiz; sayfayı yenileyip tekrar deneyin.",
             "The form expired or is invalid; reload the page and try again."),
    "forbidden": ("Bu işlem için yetkiniz yok.", "You are not allowed to do this."),
    "reauth_failed": ("Bu işlem için parolanızı doğru girmelisiniz.",
                      "Enter your password correctly to do this."),
    "too_many_attempts": ("Çok fazla deneme ya da sunucu meşgul; biraz sonra tekrar deneyin.",
                          "Too many attempts, or the server is busy; try again shortly."),
    "server_error": ("Beklenmeyen bir hata oldu; kaydedildi.",
                     "Something unexpected went wrong; it was logged."),
    "setup_title": ("İşletmenizi oluşturun", "Create your business"),
    "setup_closed": ("Kurulum bağlantısı geçersiz ya da kullanılmış.",
                     "The setup link is invalid or was already used."),
    "business_name": ("İşletme adı", "Business name"),
    "owner_email": ("Sahibin e-postası", "Owner's e-mail"),
    "vault_passphrase": ("Kasa parolası", "Vault passphrase"),
    "vault_passphrase_help": (
        "Müşteri verileriniz bu parolayla şifrelenir. Kaybederseniz kimse açamaz.",
        "Your customers' data is encrypted with this passphrase. Lose it and nobody can "
        "open it."),
    "strength": ("Güç", "Strength"),
    "create": ("Oluştur", "Create"),
    "welcome": ("Hoş geldiniz", "Welcome"),
    "api_key_once": ("İlk API anahtarınız (yalnızca bir kez gösterilir):",
                     "Your first API key (shown only once):"),
    "continue": ("Devam", "Continue"),
    "error": ("Hata", "Error"),
    "back": ("Geri", "Back"),
    "save": ("Kaydet", "Save"),
    "name": ("Ad", "Name"),
    "state": ("Durum", "State"),
    "progress": ("İlerleme", "Progress"),
    "actions": ("İşlemler", "Actions"),
    "none_yet": ("Henüz yok.", "None yet."),
    "retry_unknown": ("Sonucu bilinmeyen mesajları da yeniden gönder",
                      "Also resend the messages whose outcome is unknown"),
    "retry_unknown_warning": (
        "Bu mesajlar kişiye ulaşmış olabilir: yeniden gönderilirse kişi aynı mesajı iki kez "
        "alabilir.",
        "These messages may have reached the person already: if they are sent again, the "
        "person may get the same message twice."),
    "vault_locked_notice": ("Kasa kilitli: kişi bilgileri ve mesajlar okunamaz.",
                            "The vault is locked: contact details and messages are unreadable."),
}

ALERTS = {
    "security_login": "Panele yeni bir cihazdan giriş yapıldı.",
    "security_api_key": "Yeni bir API anahtarı oluşturuldu.",
    "security_unlock": "Kasa açıldı.",
}


def language(request: web.Request) -> str:
    """The page's language, worked out once per request (templates ask for every string)."""
    found = request.get(_PAGE_LANGUAGE)
    if found is not None:
        return found
    from dashboard.web import USER
    user = request.get(USER)
    if user is not None and user.language in LANGUAGES:
        found = user.language
    else:
        chosen = request.query.get("lang", "")
        found = chosen if chosen in LANGUAGES else "tr"
    request[_PAGE_LANGUAGE] = found
    return found


def t(request: web.Request, key: str, en: str | None = None) -> str:
    """`_("key")` for the shared strings above, or `_("Türkçe", "English")` inline."""
    english = language(request) == "en"
    if en is not None:
        return en if english else key
    pair = STRINGS.get(key)
    if pair is None:
        return key
    return pair[1] if english else pair[0]
