"""Every page in Turkish with data present: no raw codes or ISO timestamps in the visible text,
no sideways scrolling on a 390 px phone, no console errors (CSP included), a favicon."""
from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dashboard.labels import AUDIT_ACTIONS, AUDIT_FIELDS, CATALOGUE, label

ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 390, "height": 844}
TIMEOUT = 30_000
# An ISO 8601 timestamp ("2026-11-30T09:04" or with a space), or seconds with a fraction.
ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\d{2}:\d{2}:\d{2}\.\d+")


def _codes(lang: str = "tr") -> list[str]:
    """The codes a page in `lang` must never show as they are: every catalogue code whose text
    differs from it (upper-case İYS words such as RET are Turkish already). In English, only
    codes that read as codes (with "_"): "draft" or "paused" are English words as well."""
    found = set()
    for kind, table in CATALOGUE.items():
        for code in table:
            if code.upper() == code or label(code, kind, lang).lower() == code.lower():
                continue
            if code == "sandbox":  # the default sandbox line is named so (the owner's data)
                continue
            if lang == "en" and "_" not in code:
                continue
            found.add(code)
    return sorted(found)


def _raw(codes: list[str]) -> re.Pattern:
    # A code as a whole word: not part of a path, an id, an e-mail or another word.
    return re.compile(r"(?<![\w/.:@-])(" + "|".join(re.escape(c) for c in codes)
                      + r")(?![\w/.@=-])")


CODES = _codes()
RAW = {"tr": _raw(CODES), "en": _raw(_codes("en"))}
# The audit log's action names ("campaign.start") and detail names ("campaign_id"), which
# pages show by their labels (dashboard.labels.AUDIT_ACTIONS, AUDIT_FIELDS), "=" or not.
AUDIT_RAW = re.compile(r"(?<![\w/.:@-])(" + "|".join(
    re.escape(c) for c in sorted(AUDIT_ACTIONS) + sorted(f for f in AUDIT_FIELDS if "_" in f))
    + r")(?![\w/.@-])")


@pytest.fixture(scope="module")
def pages(world) -> list[str]:
    """Campaigns in several states (completed with skips, draft, cancelled), a refusal by
    reply, consents, an API key: every main page's path."""
    list_id = world.list_with("Düzen listesi", "phone,name,consent\n05330000401,Elif,evet\n"
                              "05330000402,Deniz,evet\n05330000403,Can,hayır\n"
                              "05330000404,Ece,\n")
    done = world.campaign("Kış kampanyası", list_id, "Merhaba {{name}}, kış indirimi!")
    world.run(done)
    world.ok("POST", "/sandbox/inbound", {"line_id": world.sandbox_line,
                                          "from": "+905330000402", "text": "STOP"})
    draft = world.campaign("Taslak kampanya", list_id, "Merhaba {{name}}")
    cancelled = world.campaign("İptal edilen", list_id, "Merhaba {{name}}")
    world.ok("POST", f"/campaigns/{cancelled}/cancel")
    world.ok("POST", "/api-keys", {"name": "kasa", "role": "operator"})
    return ["/", "/contacts", "/contacts?phone=05330000402",
            "/consents?address=%2B905330000402&channel=sandbox", "/campaigns", "/campaigns/new",
            f"/campaigns/{done}", f"/campaigns/{draft}", f"/campaigns/{cancelled}", "/lines",
            "/sandbox", "/vault", "/people", "/people?address=%2B905330000402", "/audit",
            "/settings", "/users", "/keys", f"/contacts/lists/{list_id}",
            f"/contacts/lists/{list_id}/telegram"]


def _visible(page) -> str:
    return page.evaluate("document.body.innerText")


def _problems(text: str, lang: str = "tr") -> list[str]:
    found = [f"code {m.group(1)!r} in …{text[max(0, m.start() - 40):m.end() + 40]!r}…"
             for raw in (RAW[lang], AUDIT_RAW) for m in raw.finditer(text)]
    found += [f"timestamp {m.group(0)!r}" for m in ISO.finditer(text)]
    return found


def test_no_raw_codes_on_any_page_tr(world, signed_in, pages):
    assert {"no_consent", "opted_out", "waiting_unlock", "granted", "owner", "draft",
            "invalid_phone", "vault_locked"} <= set(CODES)
    page = signed_in()
    problems: dict[str, list[str]] = {}
    for path in pages:
        response = page.goto(world.base + path)
        assert response is not None and response.status == 200, (path, response.status)
        if path.startswith("/campaigns/") and path != "/campaigns/new":
            expect(page.locator("[data-state]")).not_to_be_empty()
        if found := _problems(_visible(page)):
            problems[path] = found
    # An import with a bad row: its result (an htmx update) names the reason in Turkish.
    page.goto(world.base + "/contacts")
    form = page.locator("form#import-form")
    form.locator("select[name=list_id]").select_option("")
    form.locator("input[name=new_list]").fill("Hatalı satırlar")
    form.locator("input[type=file][name=file]").set_input_files(
        {"name": "k.csv", "mimeType": "text/csv",
         "buffer": b"phone,name,consent\n05330000405,Ali,evet\n123,Veli,evet\n"})
    form.get_by_role("button", name="İçe aktar").click()
    rows = page.locator("[data-testid=invalid-rows]")
    expect(rows).to_contain_text("geçersiz telefon numarası", timeout=TIMEOUT)
    if found := _problems(_visible(page)):
        problems["/contacts (import)"] = found
    # The finished campaign's page: reasons and states in Turkish, times as Turkish dates.
    page.goto(world.base + pages[6])
    expect(page.locator("[data-state]")).to_have_text("tamamlandı", timeout=TIMEOUT)
    expect(page.locator("main")).to_contain_text("izin yok")
    page.goto(world.base + pages[3])
    history = page.locator("[data-testid=consent-history]")
    expect(history).to_contain_text("reddetti")
    expect(history).to_contain_text(re.compile(
        r"\d{1,2} (Ocak|Şubat|Mart|Nisan|Mayıs|Haziran|Temmuz|Ağustos|Eylül|Ekim|Kasım|Aralık)"
        r" \d{4}, \d{2}:\d{2}"))
    page.goto(world.base + "/vault")
    expect(page.locator("[data-testid=vault-status]")).to_contain_text(
        re.compile(r"\d+ (saat|dakika)"))
    # The audit log: real entries (the campaigns, the import, the key), by their labels.
    _audit_labelled(world, page, "tr")
    assert not problems, "raw codes or ISO times on Turkish pages:\n" + "\n".join(
        f"{path}: {found[:5]}" for path, found in problems.items())


def _audit_labelled(world, page, lang: str) -> None:
    page.goto(world.base + "/audit")
    main = page.locator("main")
    for action in ("campaign.create", "campaign.start", "campaign.cancel", "contacts.import",
                   "api_key.create"):
        expect(page.locator(f"[data-action='{action}']").first).to_have_text(
            AUDIT_ACTIONS[action][lang == "en"])
    expect(main).to_contain_text(AUDIT_FIELDS["campaign_id"][lang == "en"])
    assert not _problems(_visible(page), lang), _problems(_visible(page), lang)


def test_no_raw_codes_on_any_page_en(world, signed_in, pages):
    """The same walk in English (the user's language chosen in the header)."""
    page = signed_in()
    page.goto(world.base + "/")
    page.locator("form[action='/language'] button").click()
    page.wait_for_load_state()
    try:
        assert page.locator("html").get_attribute("lang") == "en"
        problems: dict[str, list[str]] = {}
        for path in pages:
            response = page.goto(world.base + path)
            assert response is not None and response.status == 200, (path, response.status)
            if path.startswith("/campaigns/") and path != "/campaigns/new":
                expect(page.locator("[data-state]")).not_to_be_empty()
            if found := _problems(_visible(page), "en"):
                problems[path] = found
        page.goto(world.base + pages[6])
        expect(page.locator("[data-state]")).to_have_text("completed", timeout=TIMEOUT)
        expect(page.locator("main")).to_contain_text("no consent")
        page.goto(world.base + pages[3])
        expect(page.locator("[data-testid=consent-history]")).to_contain_text(re.compile(
            r"\d{1,2} (January|February|March|April|May|June|July|August|September|October"
            r"|November|December) \d{4}, \d{2}:\d{2}"))
        _audit_labelled(world, page, "en")
        assert not problems, "raw codes or ISO times on English pages:\n" + "\n".join(
            f"{path}: {found[:5]}" for path, found in problems.items())
    finally:  # the owner's language back to Turkish for the other tests
        page.goto(world.base + "/")
        page.locator("form[action='/language'] button").click()
        page.wait_for_load_state()


def test_mobile_no_horizontal_scroll(world, signed_in, pages):
    page = signed_in(viewport=PHONE, is_mobile=True, has_touch=True)
    wide: dict[str, int] = {}
    for path in pages:
        page.goto(world.base + path)
        page.wait_for_load_state()
        width = page.evaluate("document.scrollingElement.scrollWidth")
        if path in ("/", "/campaigns", "/lines"):
            ARTIFACTS.mkdir(exist_ok=True)
            name = path.strip("/") or "overview"
            page.screenshot(path=str(ARTIFACTS / f"mobile-{name}.png"), full_page=True)
        if width > PHONE["width"]:
            culprits = page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
                .filter(e => e.getBoundingClientRect().right > 391
                        && !e.closest('table, pre'))
                .slice(-3).map(e => e.tagName + '.' + e.className + ' ' +
                               Math.round(e.getBoundingClientRect().right))""")
            wide[path] = (width, culprits)
    page.context.clear_cookies()
    page.goto(world.base + "/login")
    if (width := page.evaluate("document.scrollingElement.scrollWidth")) > PHONE["width"]:
        wide["/login"] = (width, [])
    assert not wide, f"pages wider than {PHONE['width']} px: {wide}"


def test_no_console_errors(world, signed_in, pages):
    page = signed_in()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    for path in pages:
        page.goto(world.base + path)
        page.wait_for_load_state("networkidle")
    # htmx updates: the live preview (hx-post on input and on change) swaps a fragment in.
    page.goto(world.base + "/campaigns/new")
    page.fill("textarea[name=template]", "Merhaba {{name}}, indirim!")
    expect(page.locator("[data-testid=preview]")).to_contain_text("indirim", timeout=TIMEOUT)
    page.locator("select[name=purpose]").select_option("informational")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#preview")).not_to_be_empty()
    assert not errors, "console errors:\n" + "\n".join(errors)


def test_favicon_is_served(world):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(world.base + "/favicon.ico", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/x-icon"
        assert response.read(4) == b"\0\0\1\0"  # an ICO header
