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
    assert "/start" not in page and "/pause" not in page  # only the actions the state allows
    assert "/retry" not in page  # and retry only when something failed
    assert "Merhaba {{name}}" in page and "vip" in page  # its message and list
    skipped = (await (await tenant.call("GET", campaign_path)).json())["skipped_by_reason"]
    assert list(skipped.values()) == [1]
    assert list(skipped) == ["opted_out"]
    assert "<th scope=\"row\">ret bildirdi</th><td>1</td>" in page  # the reason in Turkish


async def _list(tenant, csv: bytes) -> str:
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "l"})).json())["id"]
    if csv:
        r = await tenant.call("POST", f"/contacts/import?list_id={list_id}", data=csv,
                              headers={"Content-Type": "text/csv"})
        assert r.status < 400, await r.text()
    return list_id


async def _outbox_rows(client, campaign_id: str) -> int:
    import sqlalchemy as sa

    from dashboard.keys import db_key
    from store.tables import outbox
    async with client.app[db_key].connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.campaign_id == campaign_id))).scalar()


async def test_dry_run_counts_before_start(client, tenant, owner):
    """Before you send: the API and the page say from a dry run of the gate how many will
    receive it and how many will be skipped, by reason; it writes nothing, and the campaign
    then does what it said."""
    await tenant.unlock()
    list_id = await _list(tenant, b"telefon,consent\n05321110001,evet\n05321110002,evet\n"
                                  b"05321110003,hayir\n05321110004,\n")
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "Yaz", "line_id": line, "list_id": list_id, "template": "Merhaba"})).json())["id"]

    r = await tenant.call("GET", f"/campaigns/{cid}/dry-run")
    assert r.status == 200, await r.text()
    dry = await r.json()
    assert (dry["recipients"], dry["will_send"], dry["will_skip"]) == (4, 2, 2)
    assert sum(dry["skipped_by_reason"].values()) == 2 and "no_consent" in dry[
        "skipped_by_reason"]
    assert dry["window"] is None  # a sandbox line has no 24 h window
    assert await _outbox_rows(client, cid) == 0  # a dry run writes nothing
    assert (await (await tenant.call("GET", f"/campaigns/{cid}")).json())["state"] == "draft"
    missing = await tenant.call("GET", "/campaigns/00000000-0000-0000-0000-000000000000/dry-run")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"

    page = await (await owner.get(f"/campaigns/{cid}")).text()
    assert f'hx-get="/campaigns/{cid}/dry-run"' in page  # loads after the page: lists are big
    part = await (await owner.get(f"/campaigns/{cid}/dry-run")).text()
    assert "2 kişiye gidecek" in part and "2 atlanacak" in part and "izin yok 1" in part
    form = await (await owner.post("/campaigns/dry-run", {
        "line_id": line, "list_id": list_id, "purpose": "commercial"})).text()
    assert "2 kişiye gidecek" in form and 'data-testid="dry-run"' in form

    # Without the page's dialog, a start asks on a page of its own, and changes nothing yet.
    asked = await owner.post(f"/campaigns/{cid}/start", {}, allow_redirects=False)
    assert asked.status == 200 and 'name="confirmed" value="yes"' in await asked.text()
    assert await _outbox_rows(client, cid) == 0
    r = await owner.post(f"/campaigns/{cid}/start", {"confirmed": "yes"}, allow_redirects=False)
    assert r.status == 303
    deadline = time.monotonic() + 10
    while (done := await (await tenant.call("GET", f"/campaigns/{cid}")).json())[
            "state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert done["counts"]["skipped"] == 2 and done["counts"]["pending"] == 0
    assert done["counts"]["sent"] + done["counts"]["delivered"] + done["counts"]["read"] == 2
    assert done["skipped_by_reason"] == dry["skipped_by_reason"]


async def test_starting_an_empty_list_is_refused(client, tenant, owner):
    await tenant.unlock()
    list_id = await _list(tenant, b"")
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "Boş", "line_id": line, "list_id": list_id, "template": "Merhaba"})).json())["id"]
    dry = await (await tenant.call("GET", f"/campaigns/{cid}/dry-run")).json()
    assert (dry["recipients"], dry["will_send"], dry["will_skip"]) == (0, 0, 0)
    r = await tenant.call("POST", f"/campaigns/{cid}/start")
    assert r.status == 409 and (await r.json())["error"]["code"] == "empty_list"
    r = await owner.post(f"/campaigns/{cid}/start", {"confirmed": "yes"}, allow_redirects=False)
    assert r.status == 409
    part = await (await owner.get(f"/campaigns/{cid}/dry-run")).text()
    assert 'data-testid="dry-run-empty"' in part
    campaign = await (await tenant.call("GET", f"/campaigns/{cid}")).json()
    assert campaign["state"] == "draft" and await _outbox_rows(client, cid) == 0


async def test_cancel_asks_first_and_the_stream_carries_the_live_page(client, tenant, owner):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    list_id = await _list(tenant, b"telefon,consent\n05321110001,evet\n")
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "İptal", "line_id": line, "list_id": list_id, "template": "Merhaba"})).json())["id"]
    asked = await owner.post(f"/campaigns/{cid}/cancel", {}, allow_redirects=False)
    assert asked.status == 200 and "/campaigns/" + cid + "/cancel" in await asked.text()
    assert (await (await tenant.call("GET", f"/campaigns/{cid}")).json())["state"] == "draft"
    r = await owner.post(f"/campaigns/{cid}/cancel", {"confirmed": "yes"}, allow_redirects=False)
    assert r.status == 303
    text = await (await owner.get(f"/campaigns/{cid}/events")).text()
    names = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    assert names == ["progress", "campaign", "progress"]
    live = json.loads([line[6:] for line in text.splitlines() if line.startswith("data: ")][1])
    assert "iptal edildi" in live["html"] and "/pause" not in live["html"]
    assert "/cancel" not in live["html"]


async def test_dry_run_facts_match_the_dispatchers(client, tenant):
    """The dry run reads a whole list's facts set-wise; they are what optout.facts.gather (the
    dispatcher's per-batch reader) gives for the same people."""
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    from campaigns.dryrun import list_facts
    from dashboard.keys import db_key, directory_key
    from optout import facts
    from optout.ledger import consent_type_for
    kind_of = consent_type_for("sandbox")
    list_id = await _list(tenant, b"telefon,consent\n05321110001,evet\n05321110002,hayir\n"
                                  b"05321110003,\n05321110004,evet\n05321110005,evet\n")
    for phone, kind, channel in (("+905321110004", "manual", "sandbox"),
                                 ("+905321110005", "blocked", None),
                                 ("+905321110005", "complaint", "sandbox")):
        r = await tenant.call("POST", "/suppressions", json={
            "address": phone, "kind": kind, **({"channel": channel} if channel else {})})
        assert r.status == 201, await r.text()
    db, directory = client.app[db_key], client.app[directory_key]
    async with db.connect() as conn:
        profile = await directory.profile(conn, tenant.id)
        found = await list_facts(conn, profile, list_id, kind_of)
        expected = await facts.gather(conn, tenant.id, [i for _, i, _ in found], kind_of,
                                      profile.iys_enabled, profile.has_merchant_contacts)
    assert len(found) == 5
    assert {i: f for _, i, f in found} == expected
    assert {f.suppression for _, _, f in found} == {None, "manual", "blocked"}
