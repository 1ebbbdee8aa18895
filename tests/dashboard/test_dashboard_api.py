"""API operations the dashboard reads: one contact, today's figures, a campaign's actions."""
import asyncio
import time

from campaigns.service import allowed_actions


async def _campaign(t, template="Merhaba {{name}}", start=True):
    list_id = (await (await t.call("POST", "/lists", json={"name": "vip"})).json())["id"]
    await t.call("POST", f"/contacts/import?list_id={list_id}",
                 data="telefon;ad soyad;consent\n0532 444 55 66;Gülşen Ağaoğlu;evet\n"
                      "0532 444 55 67;Ali Veli;hayır\n".encode("cp1254"),
                 headers={"Content-Type": "text/csv"})
    line = (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]
    body = await (await t.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": template})).json()
    if start:
        await t.call("POST", f"/campaigns/{body['id']}/start")
        deadline = time.monotonic() + 20
        while (await (await t.call("GET", f"/campaigns/{body['id']}")).json())[
                "state"] != "completed":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    return body, line


async def test_one_contact_needs_unlock_and_is_not_a_kvkk_request(tenant):
    await tenant.unlock()
    await _campaign(tenant, start=False)
    r = await tenant.call("GET", "/contacts", params={"address": "05324445566"})
    assert r.status == 200
    assert (await r.json())["name"] == "Gülşen Ağaoğlu"
    assert (await r.json())["lists"] == ["vip"]
    r = await tenant.call("GET", "/contacts", params={"address": "05320000000"})
    assert r.status == 404
    assert (await (await tenant.call("GET", "/subjects/requests")).json())["requests"] == []
    await tenant.call("POST", "/vault/lock")
    r = await tenant.call("GET", "/contacts", params={"address": "05324445566"})
    assert r.status == 423


async def test_todays_figures_count_sends_skips_and_opt_outs(tenant):
    await tenant.unlock()
    _, line = await _campaign(tenant)
    await tenant.call("POST", "/sandbox/inbound", json={"line_id": line, "from": "05324445566",
                                                        "text": "DUR"})
    stats = await (await tenant.call("GET", "/stats")).json()
    assert stats["messages"]["sent"] == 1 and stats["messages"]["skipped"] == 1
    # Refusals recorded today: the "hayır" row of the import and the DUR reply.
    assert stats["opt_outs"] == 2 and stats["suppressed"] == 1
    assert stats["opt_outs_by_people"] == 1  # the DUR reply; the import row is no person's


async def test_a_campaign_says_which_actions_it_allows(tenant):
    await tenant.unlock()
    draft, _ = await _campaign(tenant, start=False)
    assert draft["actions"] == ["start", "cancel"]
    r = await tenant.call("POST", f"/campaigns/{draft['id']}/start")
    assert "start" not in (await r.json())["actions"]
    # Finished with one sent and one skipped (refused): nothing failed, nothing to retry.
    done, _ = await _campaign(tenant)
    done = await (await tenant.call("GET", f"/campaigns/{done['id']}")).json()
    assert (done["state"], done["counts"]["failed"], done["actions"]) == ("completed", 0, [])
    assert allowed_actions("completed", {"failed": 1}) == ["retry"]
    assert allowed_actions("paused", {"unknown": 2}) == ["resume", "cancel", "retry"]
    listed = (await (await tenant.call("GET", "/campaigns", params={"limit": "1"})).json())
    assert len(listed["campaigns"]) == 1
    assert (await tenant.call("GET", "/campaigns", params={"limit": "x"})).status == 400
