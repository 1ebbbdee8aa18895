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
    # Informational campaigns whose text reads as commercial, and KVKK deadlines (issue 14).
    "looks_commercial": (
        "Bu metin ticari ileti gibi okunuyor. 6563 sayılı Kanun'a göre mal veya hizmet tanıtan "
        "mesajlar ile kutlama ve tebrik mesajları ticaridir: izin ve RET bilgisi gerekir. "
        "Ticari olarak gönderin ya da bilgilendirme olduğunu onaylayın. Bulunan sözcükler:",
        "This text reads as commercial. Under Law 6563, messages promoting goods or services "
        "and greetings or celebrations are commercial: they need consent and the refusal "
        "footer. Send it as commercial, or confirm that it is informational. Words found:"),
    "confirm_informational": (
        "Bu mesajın bilgilendirme amaçlı olduğunu, mal veya hizmet tanıtmadığını onaylıyorum "
        "(denetim kaydına yazılır).",
        "I confirm that this message is informational and promotes no goods or services "
        "(recorded in the audit log)."),
    "kvkk_due_soon": (
        "KVKK başvurularının 30 günlük yanıt süresi dolmak üzere. Silme talepleri kasa "
        "açılınca tamamlanır.",
        "KVKK requests whose 30-day answer deadline is close. Erasure requests complete once "
        "the vault is unlocked."),
    # The CSV import: the consent statement asked for, and what a result counts (issue 14).
    "import_consent_text": ("Kişilere gösterilen izin metni", "Consent statement people saw"),
    "import_consent_text_help": (
        "Formda ya da onay kutusunda yazan metin. Her iznin şifreli kanıtına eklenir; "
        "denetimde izin metni sorulur.",
        "The text of the form or checkbox. It is added to every consent's encrypted evidence; "
        "an inspection asks for it."),
    "import_kept_refusal": ("Reddi korunan", "Refusal kept"),
    "import_kept_refusal_help": (
        "Bu kişiler daha önce reddetti (RET, engelleme, şikâyet ya da İYS'de ret). Dosyadaki "
        "izin uygulanmadı ve İYS'ye gönderilmeyecek; reddi yalnızca kişinin kendi yeni izni "
        "kaldırır (BAŞLA yanıtı ya da API'de reconsent).",
        "These people refused earlier (STOP, a block, a complaint or a refusal in İYS). The "
        "file's consent was not applied and nothing goes to İYS; only the person's own new "
        "consent lifts a refusal (a START reply, or reconsent in the API)."),
    "import_undated": ("Tarihsiz izin", "Undated consents"),
    "import_undated_help": (
        "Bu izinlerin tarihi dosyada yoktu: yükleme zamanıyla kaydedildi ve kanıtta öyle "
        "yazıyor. Gerçek tarihler için dosyaya bir izin tarihi sütunu ekleyin.",
        "These consents had no date in the file: they were recorded as dated at the upload, "
        "and their evidence says so. Add a consent date column for the real dates."),
    "import_erased": ("Silinmiş kişi", "Erased people"),
    "import_erased_help": (
        "Bu satırlar, verileri kendi isteğiyle silinen kişilere ait: hiçbir bilgileri yeniden "
        "kaydedilmedi.",
        "These rows belong to people whose data was erased at their request: nothing of "
        "theirs was stored again."),
    "import_skipped": ("Uygulanmayan satırlar", "Rows not applied"),
    "reason_refused_earlier": ("daha önce reddetti: izin uygulanmadı",
                               "refused earlier: consent not applied"),
    "reason_erased": ("silinmiş kişi: satır atlandı", "erased person: row skipped"),
}

ALERTS = {
    "security_login": "Panele yeni bir cihazdan giriş yapıldı.",
    "security_api_key": "Yeni bir API anahtarı oluşturuldu.",
    "security_unlock": "Kasa açıldı.",
    "security_passphrase": "Kasa parolası değiştirildi.",
    "security_recovery_code": "Yeni bir kurtarma kodu oluşturuldu; eskisi artık geçmiyor.",
    "security_recovered": "Kasa parolası kurtarma koduyla yenilendi.",
    "security_deleting": "İşletme ve tüm verileri siliniyor.",
}


def language(request: web.Request) -> str:
    """The page's language, worked out once per request (templates ask for every string)."""
    found = request.get(_PAGE_LANGUAGE)
    if found is not None:
        return found
    from dashboard.pages.web import USER
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
