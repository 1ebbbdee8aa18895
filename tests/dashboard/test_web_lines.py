"""The lines page manages lines: edit, pause and resume (the pause reason in Turkish), archive
with a confirmation; archived lines are not offered for new campaigns."""
from __future__ import annotations

from conftest import make_web_user

from campaigns.lines import set_line_state
from dashboard.keys import db_key


async def test_lines_page_edits_pauses_resumes_and_archives(owner, tenant):
    await tenant.unlock()  # line names are sealed: read while unlocked
    lines = (await (await tenant.call("GET", "/lines")).json())["lines"]
    line_id = lines[0]["id"]
    r = await tenant.call("POST", "/lines", json={"channel": "sandbox", "name": "ikinci"})
    other = (await r.json())["id"]
    # A line WhatsApp paused shows why, in Turkish, with a resume button.
    async with owner.client.app[db_key].begin() as conn:
        await set_line_state(conn, line_id, "paused", "spam_rate_limited")
    page = await (await owner.get("/lines")).text()
    assert "WhatsApp spam sınırı (131048)" in page
    assert f'action="/lines/{line_id}/resume"' in page
    page = await (await owner.post(f"/lines/{line_id}/resume")).text()
    assert f'action="/lines/{line_id}/pause"' in page
    page = await (await owner.post(f"/lines/{line_id}/pause")).text()
    assert "Sahibi tarafından duraklatıldı" in page
    await owner.post(f"/lines/{line_id}/resume")
    r = await owner.post(f"/lines/{line_id}/edit", {"name": "Vitrin", "rate_per_second": "250"})
    assert r.status == 200 and "Vitrin" in await r.text()
    line = next(x for x in (await (await tenant.call("GET", "/lines")).json())["lines"]
                if x["id"] == line_id)
    assert (line["name"], line["rate_per_second"]) == ("Vitrin", 250.0)
    r = await owner.post(f"/lines/{line_id}/edit", {"rate_per_second": "çok"})
    assert r.status == 400
    # Archiving needs the confirmation box.
    r = await owner.post(f"/lines/{other}/archive")
    assert r.status == 400 and "onay" in await r.text()
    page = await (await owner.post(f"/lines/{other}/archive", {"confirm": "yes"})).text()
    assert "arşivlendi" in page and f'action="/lines/{other}/edit"' not in page
    form = await (await owner.get("/campaigns/new")).text()
    assert line_id in form and other not in form
    operator = await make_web_user(owner.client, tenant, "operator")
    assert (await operator.post(f"/lines/{line_id}/pause")).status == 403
