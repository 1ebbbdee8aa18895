"""KVKK data-subject requests through the API: access report, erasure, request log."""
import asyncio
import time

from conftest import ApiTenant


async def _setup_person(t: ApiTenant) -> str:
    await t.unlock()
    list_id = (await (await t.call("POST", "/lists", json={"name": "vip"})).json())["id"]
    await t.call("POST", f"/contacts/import?list_id={list_id}",
                 data="telefon;ad soyad;şehir;consent\n0532 444 55 66;Gülşen Ağaoğlu;Rize;evet\n"
                 .encode("cp1254"), headers={"Content-Type": "text/csv"})
    line = (await (await t.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await t.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": "Merhaba {{name}}"})
    ).json())["id"]
    await t.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 20
    while (await (await t.call("GET", f"/campaigns/{cid}")).json())["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await t.call("POST", "/sandbox/inbound", json={"line_id": line, "from": "05324445566",
                                                   "text": "merhaba"})
    return line


async def test_access_report_lists_what_is_held(tenant):
    await _setup_person(tenant)
    r = await tenant.call("GET", "/subjects", params={"address": "+905324445566"})
    assert r.status == 200
    report = await r.json()
    assert report["contact"]["name"] == "Gülşen Ağaoğlu"
    assert report["contact"]["attributes"] == {"sehir": "Rize"}
    assert report["contact"]["lists"] == ["vip"]
    assert [c["status"] for c in report["consents"]] == ["granted"]
    assert report["consents"][0]["evidence"]["row"] == 2
    assert [(m["campaign"], m["state"]) for m in report["messages"]] == [("yaz", "sent")]
    assert report["replies_received"] == 1 and report["processors"] == []
    log = (await (await tenant.call("GET", "/subjects/requests")).json())["requests"]
    assert log[0]["kind"] == "access" and log[0]["due_at"] > log[0]["received_at"]


async def test_access_needs_unlock(tenant):
    r = await tenant.call("GET", "/subjects", params={"address": "+905324445566"})
    assert r.status == 423


async def test_erasure_destroys_contact_data_and_keeps_them_unreachable(tenant):
    await _setup_person(tenant)
    r = await tenant.call("POST", "/subjects/erase", json={"address": "0532 444 55 66"})
    assert r.status == 200
    erased = (await r.json())["erased"]
    assert erased["contacts"] == 1 and erased["inbound_messages"] == 1
    assert erased["sandbox_messages"] == 1
    report = await (await tenant.call("GET", "/subjects",
                                      params={"address": "+905324445566"})).json()
    assert report["contact"] is None and report["replies_received"] == 0
    assert [c["status"] for c in report["consents"]] == ["granted"]  # proof is kept
    for purpose in ("commercial", "informational"):
        gate = await (await tenant.call("GET", "/gate", params={
            "address": "+905324445566", "purpose": purpose})).json()
        assert gate == {"allowed": False, "reason": "suppressed"}
    kinds = [r["kind"] for r in (await (await tenant.call(
        "GET", "/subjects/requests")).json())["requests"]]
    assert "erasure" in kinds


async def test_correction_changes_name_and_attributes(tenant):
    await _setup_person(tenant)
    r = await tenant.call("POST", "/subjects/correct", json={
        "address": "05324445566", "name": "Gülşen Ağaoğlu-Kaya",
        "attributes": {"sehir": "Trabzon"}})
    assert r.status == 200
    report = await (await tenant.call("GET", "/subjects",
                                      params={"address": "+905324445566"})).json()
    assert report["contact"]["name"] == "Gülşen Ağaoğlu-Kaya"
    assert report["contact"]["attributes"] == {"sehir": "Trabzon"}
    r = await tenant.call("POST", "/subjects/correct", json={"address": "05320000000",
                                                             "name": "x"})
    assert r.status == 404
    r = await tenant.call("POST", "/subjects/correct", json={"address": "05324445566"})
    assert r.status == 400
