"""The dashboard's main journeys in a real browser against `izinli serve`."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect

XSS = "<img src=x onerror=alert(1)>"
TIMEOUT = 30_000


def _import_csv(page: Page, base: str, list_name: str, csv_text: str) -> None:
    page.goto(base + "/contacts")
    form = page.locator("form#import-form")
    form.locator("select[name=list_id]").select_option("")
    form.locator("input[name=new_list]").fill(list_name)
    form.locator("input[type=file][name=file]").set_input_files(
        {"name": "kisiler.csv", "mimeType": "text/csv", "buffer": csv_text.encode()})
    form.get_by_role("button", name="İçe aktar").click()
    expect(page.locator("[data-testid=import-result]")).to_be_visible(timeout=TIMEOUT)


def _reply_form(page: Page, phone_digits: str):
    """The sandbox inbox's reply form for one phone (its fields or its container name it)."""
    forms = page.locator('form[action="/sandbox/reply"]')
    expect(forms.first).to_be_attached(timeout=TIMEOUT)
    for i in range(forms.count()):
        form = forms.nth(i)
        around = form.evaluate(
            "f => Array.from(f.elements).map(e => e.value).join(' ') + ' ' + "
            "(f.closest('li, tr, article, section, details, fieldset') || f).textContent")
        if phone_digits in re.sub(r"[\s()\-]", "", around):
            return form
    raise AssertionError(f"no reply form for {phone_digits} in the sandbox inbox")


def test_import_send_watch_progress_stop_and_see_the_optout(world, signed_in):
    """(a) log in → import a CSV → create and start a campaign → 100 % → STOP → revoked."""
    page = signed_in()
    csv_text = ("phone,name,consent\n05330000001,Elif,evet\n05330000002,Deniz,evet\n"
                "05330000003,Can,evet\n")
    _import_csv(page, world.base, "Bahar müşterileri", csv_text)
    expect(page.locator("[data-testid=import-result]")).to_contain_text("3")
    list_id = world.list_id("Bahar müşterileri")

    page.goto(world.base + "/campaigns/new")
    page.fill("input[name=name]", "Bahar indirimi")
    page.locator("select[name=line_id]").select_option(world.sandbox_line)
    page.locator("select[name=list_id]").select_option(list_id)
    page.locator("select[name=purpose]").select_option("commercial")
    page.fill("textarea[name=template]", "Merhaba {{name}}, bahar indirimi başladı!")
    preview = page.locator("[data-testid=preview]")
    expect(preview).to_contain_text("bahar indirimi başladı", timeout=TIMEOUT)
    expect(preview).to_contain_text("RET")
    expect(page.locator("[data-testid=dry-run]")).to_contain_text("3 kişiye gidecek")
    page.locator("input[name=start_now]").check()
    page.locator("form[action='/campaigns'] button[type=submit]").click()
    dialog = page.locator("[data-testid=confirm-dialog]")  # start asks first
    expect(dialog).to_contain_text("3 kişiye gidecek")
    dialog.locator("[data-testid=confirm-yes]").click()
    page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}$"))
    world.notes["campaign_url"] = page.url
    expect(page.locator("[data-testid=progress-label]")).to_contain_text(
        "100% (3/3)", timeout=TIMEOUT)

    page.goto(world.base + "/sandbox")
    expect(page.locator("[data-testid=inbox]")).to_contain_text("bahar indirimi başladı")
    form = _reply_form(page, "5330000002")
    form.locator("input[name=text]").fill("STOP")
    form.get_by_role("button", name="Yanıtla").click()
    page.wait_for_load_state()

    page.goto(world.base + "/consents")
    lookup = page.locator("form:has(input[name=address])")
    lookup.locator("input[name=address]").fill("+905330000002")
    lookup.locator("select[name=channel]").select_option("sandbox")
    lookup.locator("button").last.click()
    history = page.locator("[data-testid=consent-history]")
    expect(history).to_contain_text("reddetti", timeout=TIMEOUT)
    expect(history.locator("tr", has_text="reddetti").first).to_be_visible()


def test_hostile_contact_name_renders_inert(world, signed_in):
    """(b) a contact named like an HTML tag shows as text everywhere; no script runs."""
    page = signed_in()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _import_csv(page, world.base, f"liste {XSS}", f"phone,name,consent\n05330000101,{XSS},evet\n")
    list_id = world.list_id(f"liste {XSS}")
    campaign_id = world.campaign(XSS, list_id, "Merhaba {{name}}", purpose="informational")
    assert world.run(campaign_id)["counts"]["sent"] == 1

    for path in ("/contacts", "/campaigns", f"/campaigns/{campaign_id}", "/campaigns/new",
                 "/sandbox", "/"):
        page.goto(world.base + path)
        if path == "/campaigns/new":
            page.locator("select[name=list_id]").select_option(list_id)
            page.fill("textarea[name=template]", "Merhaba {{name}}")
            page.wait_for_timeout(800)  # the preview's debounce and round trip
        assert page.locator("img[src=x]").count() == 0, f"an <img> was injected on {path}"
        if path in ("/campaigns", f"/campaigns/{campaign_id}", "/sandbox"):
            expect(page.get_by_text(XSS).first).to_be_visible()
    page.wait_for_timeout(300)
    assert dialogs == [], f"a dialog fired: {dialogs}"


def test_post_without_csrf_token_is_refused(world, signed_in):
    """(c) a signed-in browser's POST without the session's CSRF token gets 403."""
    page = signed_in()
    page.goto(world.base + "/")
    refused = page.request.post(world.base + "/logout", max_redirects=0)
    assert refused.status == 403, refused.status
    forged = page.request.post(world.base + "/logout", form={"csrf": "not-the-token"},
                               max_redirects=0)
    assert forged.status == 403, forged.status
    page.goto(world.base + "/")
    assert not page.url.rstrip("/").endswith("/login"), "the session was ended without a token"


def test_viewer_cannot_start_a_campaign(world, signed_in, tmp_path):
    """(d) a viewer sees no start button and a start POST (with a valid token) is 403."""
    secret = tmp_path / "viewer-password"
    secret.write_text("izleyici-parola-1\n", encoding="utf-8")
    made = world.cli("user", "create", world.tenant_id, "izleyici@ornek-magaza.com.tr",
                     "--role", "viewer", "--password-file", str(secret))
    assert made.returncode == 0, f"izinli user create failed: {made.stderr or made.stdout}"
    list_id = world.list_with("Viewer listesi", "phone,name,consent\n05330000201,Ece,evet\n")
    campaign_id = world.campaign("Taslak kampanya", list_id)

    page = signed_in("izleyici@ornek-magaza.com.tr", "izleyici-parola-1")
    page.goto(f"{world.base}/campaigns/{campaign_id}")
    expect(page.locator("[data-testid=progress-label]")).to_be_visible()
    assert page.locator(f"form[action='/campaigns/{campaign_id}/start']").count() == 0
    assert page.get_by_role("button", name=re.compile("Başlat|Start")).count() == 0
    token = page.locator("input[name=csrf]").first.input_value()
    assert token
    refused = page.request.post(f"{world.base}/campaigns/{campaign_id}/start",
                                form={"csrf": token}, max_redirects=0)
    assert refused.status == 403, refused.status
    assert world.ok("GET", f"/campaigns/{campaign_id}")["state"] == "draft"
    new_page = page.request.get(world.base + "/campaigns/new", max_redirects=0)
    assert new_page.status == 403, new_page.status


def _unreloaded(page: Page) -> None:
    page.evaluate("window.__notReloaded = true")


def _assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def test_campaign_page_settles_without_reload(world, signed_in):
    """Live means live: an open campaign page moves from draft to its final truth — state,
    counts, reasons and actions together — without a reload; one that reached nobody says so."""
    page = signed_in()
    sent_list = world.list_with("Canlı liste", "phone,name,consent\n05330000301,Ali,evet\n"
                                               "05330000302,Ayla,evet\n")
    sent = world.campaign("Canlı", sent_list)
    page.goto(f"{world.base}/campaigns/{sent}")
    live = page.locator("[data-testid=campaign-live]")
    expect(live.locator("[data-testid=campaign-state]")).to_have_text("taslak")
    expect(live.locator("[data-testid=dry-run]")).to_contain_text("2 kişiye gidecek")
    _unreloaded(page)
    world.ok("POST", f"/campaigns/{sent}/start")
    expect(live.locator("[data-testid=campaign-state]")).to_have_text("tamamlandı",
                                                                      timeout=8000)
    expect(live.locator("[data-testid=progress-label]")).to_contain_text("100% (2/2)")
    expect(live.locator("[data-testid=campaign-outcome]")).to_contain_text("2 kişiye")
    counts = live.locator("[data-testid=counts]")
    expect(counts.locator("tr", has_text="bekliyor")).to_contain_text("0")
    assert live.locator("[data-testid=action-pause], [data-testid=action-cancel]").count() == 0
    assert live.locator("[data-testid=dry-run]").count() == 0
    _assert_not_reloaded(page)

    nobody_list = world.list_with("Kimse", "phone,name,consent\n05330000311,Cem,hayir\n"
                                           "05330000312,Can,\n")
    nobody = world.campaign("Kimseye", nobody_list)
    page.goto(f"{world.base}/campaigns/{nobody}")
    expect(live.locator("[data-testid=dry-run-nobody]")).to_be_visible()
    _unreloaded(page)
    world.ok("POST", f"/campaigns/{nobody}/start")
    expect(live.locator("[data-testid=reached-nobody]")).to_be_visible(timeout=8000)
    expect(live.locator("[data-testid=campaign-state]")).to_have_text("tamamlandı")
    expect(live.locator("[data-testid=skipped-by-reason]")).to_contain_text("izin yok")
    assert live.locator("[data-testid=action-pause], [data-testid=action-cancel]").count() == 0
    _assert_not_reloaded(page)


def test_start_and_cancel_ask_for_confirmation(world, signed_in):
    """Before you send: the dry run's counts in the form and in the dialog; going back sends
    nothing; cancel asks too."""
    page = signed_in()
    list_id = world.list_with("Onay listesi", "phone,name,consent\n05330000401,Efe,evet\n"
                                              "05330000402,Ela,hayir\n")
    campaign_id = world.campaign("Onaylı", list_id)
    page.goto(f"{world.base}/campaigns/{campaign_id}")
    # The dry run arrives after the page (htmx, on load): the owner reads it, then starts.
    # A click before it arrives asks the plain question (the suite under load once did).
    expect(page.locator("[data-dry-run-summary]")).to_be_visible()
    page.locator("[data-testid=action-start]").click()
    dialog = page.locator("[data-testid=confirm-dialog]")
    expect(dialog).to_contain_text("1 kişiye gidecek; 1 atlanacak")
    dialog.locator("[data-testid=confirm-no]").click()
    expect(dialog).to_be_hidden()
    assert world.ok("GET", f"/campaigns/{campaign_id}")["state"] == "draft"
    page.locator("[data-testid=action-cancel]").click()
    expect(dialog).to_contain_text("iptal")
    dialog.locator("[data-testid=confirm-yes]").click()
    expect(page.locator("[data-testid=campaign-state]")).to_have_text("iptal edildi")
    assert world.ok("GET", f"/campaigns/{campaign_id}")["state"] == "cancelled"
