"""axe-core on the main pages (no serious or critical violations) and their screenshots.

The app's CSP forbids injected scripts, so only this context bypasses CSP to load axe.
Full-page screenshots land in tests/browser/artifacts/; with IZINLI_UPDATE_SCREENSHOTS=1 the
README's three (overview, new campaign with preview, campaign at 100 %) are refreshed in
docs/screenshots/."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
AXE = HERE.parent / "interop" / "node_modules" / "axe-core" / "axe.min.js"
DOCS = HERE.parent.parent / "docs" / "screenshots"
README_SHOTS = {"overview": "overview.png", "campaign_new": "campaign-new.png",
                "campaign_detail": "campaign-detail.png"}
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def finished_campaign(world) -> str:
    list_id = world.list_with("Erişilebilirlik", "phone,name,consent\n05330000301,Elif,evet\n"
                              "05330000302,Deniz,evet\n05330000303,Can,hayır\n")
    campaign_id = world.campaign("Yaz kampanyası", list_id,
                                 "Merhaba {{name}}, yaz indirimi başladı!")
    world.run(campaign_id)
    world.ok("POST", "/sandbox/inbound", {"line_id": world.sandbox_line,
                                          "from": "+905330000302", "text": "STOP"})
    return campaign_id


def _axe(page) -> list[dict]:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run 'npm ci --prefix tests/interop'")
    page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => {
        const r = await axe.run(document);
        if (!r.passes.length) throw new Error('axe checked nothing');
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: '
                                        + (n.failureSummary || '').split('\\n').join(' '))}));
    }""")


def test_main_pages_pass_axe_and_are_screenshotted(world, signed_in, finished_campaign):
    ARTIFACTS.mkdir(exist_ok=True)
    page = signed_in(bypass_csp=True)
    pages = [("overview", "/"), ("campaigns", "/campaigns"), ("campaign_new", "/campaigns/new"),
             ("campaign_detail", f"/campaigns/{finished_campaign}"), ("contacts", "/contacts"),
             ("consents", "/consents?address=%2B905330000302&channel=sandbox"),
             ("sandbox", "/sandbox"), ("vault", "/vault"), ("settings", "/settings")]
    report: dict[str, list[dict]] = {}
    for name, path in pages:
        response = page.goto(world.base + path)
        assert response is not None and response.status == 200, (path, response and
                                                                   response.status)
        if name == "campaign_new":
            page.fill("textarea[name=template]", "Merhaba {{name}}, yaz indirimi başladı!")
            expect(page.locator("[data-testid=preview]")).to_contain_text("RET")
        if name == "campaign_detail":
            expect(page.locator("[data-testid=progress-label]")).to_contain_text("100%")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        if name in README_SHOTS and os.environ.get("IZINLI_UPDATE_SCREENSHOTS") == "1":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / README_SHOTS[name])
        report[name] = _axe(page)
    # The signed-out login page too.
    page.context.clear_cookies()
    page.goto(world.base + "/login")
    page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)
    report["login"] = _axe(page)

    (ARTIFACTS / "axe.json").write_text(json.dumps(report, ensure_ascii=False, indent=1),
                                        encoding="utf-8")
    blocking = {name: [v for v in found if v["impact"] in BLOCKING]
                for name, found in report.items()}
    blocking = {k: v for k, v in blocking.items() if v}
    for name, found in report.items():
        for v in found:
            print(f"axe {name}: {v['impact']} {v['id']}: {v['help']} {v['nodes']}")
    assert not blocking, "axe serious/critical violations:\n" + json.dumps(
        blocking, ensure_ascii=False, indent=1)
