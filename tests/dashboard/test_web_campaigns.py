"""Campaign pages: create with the form, live progress over server-sent events, actions."""
import asyncio
import json
import time


async def test_create_start_and_follow_progress_over_sse(client, tenant, owner):
    await tenant.unlock()
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "vip"})).json())["id"]
    await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                      data=b"telefon,consent\n05321110001,evet\n05321110002,hayir\n",
                      headers={"Content-Type": "text/csv"})
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    preview = await (await owner.post("/campaigns/preview", {
        "template": "Merhaba {{name}}", "purpose": "commercial"})).text()
    assert "RET" in preview and "karakter" in preview
    r = await owner.post("/campaigns", {"name": "Yaz", "line_id": line, "list_id": list_id,
                                        "template": "Merhaba {{name}}", "start_now": "1"},
                         allow_redirects=False)
    assert r.status == 303
    campaign_path = r.headers["Location"]
    deadline = time.monotonic() + 20
    while (await (await tenant.call("GET", campaign_path)).json())["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    r = await owner.get(campaign_path + "/events")
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in (await r.text()).splitlines()
              if line.startswith("data: ")]
    assert events[-1] == {"total": 2, "done": 2, "percent": 100, "state": "completed",
                          "final": True}
    page = await (await owner.get(campaign_path)).text()
    assert "/start" not in page and "/retry" in page  # only the actions the state allows
    skipped = (await (await tenant.call("GET", campaign_path)).json())["skipped_by_reason"]
    assert list(skipped.values()) == [1]
    assert f"<th scope=\"row\">{next(iter(skipped))}</th><td>1</td>" in page
