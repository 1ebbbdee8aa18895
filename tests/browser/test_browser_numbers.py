"""The overview's numbers in a real browser: opt-outs are people's own, the 14-day chart and the
funnel are drawn whole; a list is browsed by consent state; the sandbox reports receipts."""
from __future__ import annotations

from playwright.sync_api import expect

TIMEOUT = 30_000


def test_optouts_today_counts_people_only(world, signed_in):
    # Two "hayır" rows in the file: the business's records, not refusals made today.
    list_id = world.list_with("Sayılar listesi", "phone,name,consent\n05330000601,Elif,evet\n"
                              "05330000602,Deniz,evet\n05330000603,Can,evet\n"
                              "05330000604,Ece,hayır\n05330000605,Ada,hayır\n")
    done = world.campaign("Sayılar kampanyası", list_id, "Merhaba {{name}}")
    world.run(done)
    world.ok("POST", "/sandbox/inbound", {"line_id": world.sandbox_line,
                                          "from": "+905330000602", "text": "DUR"})
    page = signed_in()
    page.goto(world.base + "/")
    expect(page.locator("[data-testid=opt-outs-today]")).to_have_text("1")
    # The 14-day chart is drawn; the funnel's figures stay inside its drawing.
    chart = page.locator("[data-testid=days-chart]")
    expect(chart).to_be_visible()
    assert chart.locator("g").count() == 14
    funnel = page.locator("[data-testid=funnel]")
    right = funnel.bounding_box()["x"] + funnel.bounding_box()["width"]
    for i in range(funnel.locator("text").count()):
        box = funnel.locator("text").nth(i).bounding_box()
        assert box["x"] + box["width"] <= right + 1, f"funnel text {i} is clipped"

    # The list, by consent state: the two who said no in the file and the one who stopped.
    page.goto(world.base + f"/contacts/lists/{list_id}?consent=revoked")
    rows = page.locator("[data-testid=members] tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("[data-testid=members]")).to_contain_text("Deniz")

    # The sandbox reports its sends: three delivered, and the campaign counts show it.
    page.goto(world.base + "/sandbox")
    page.locator("[data-testid=simulate-receipts]").click()
    expect(page.locator("[data-testid=receipts-outcome]")).to_be_visible(timeout=TIMEOUT)
    counts = world.ok("GET", f"/campaigns/{done}")["counts"]
    assert counts.get("delivered", 0) + counts.get("read", 0) == 3 and counts["sent"] == 0
