"""Everyday comfort on the contacts and sandbox pages: a list is browsable (paged, by consent
state, only while unlocked), a failed import leaves no list behind, and the sandbox reports
its sends delivered and read."""
import asyncio
import re
import time

import aiohttp

from dashboard.services import audience

CSV = ("telefon;ad soyad;izin\n"
       "0532 444 55 01;Gülşen Ağaoğlu;evet\n"
       "0532 444 55 02;Ali Veli;hayır\n"
       "0532 444 55 03;Ayşe Kaya;\n"
       "0532 444 55 04;Can Demir;evet\n"
       "0532 444 55 05;Şule Öz;evet\n")


async def _upload(user, content: bytes, new_list: str = "yaz", list_id: str = ""):
    data = aiohttp.FormData()
    data.add_field("csrf", user.csrf)
    data.add_field("list_id", list_id)
    data.add_field("new_list", new_list)
    data.add_field("file", content, filename="kisiler.csv", content_type="text/csv")
    return await user.client.post("/contacts/import", data=data)


async def _lists(tenant) -> list[dict]:
    return (await (await tenant.call("GET", "/lists")).json())["lists"]


async def test_a_list_is_browsable_by_page_and_consent_state(owner, tenant, monkeypatch):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    r = await _upload(owner, CSV.encode("utf-8"))
    assert r.status == 200, await r.text()
    (found,) = await _lists(tenant)
    page = await (await owner.get("/contacts")).text()
    assert f'href="/contacts/lists/{found["id"]}"' in page
    url = f"/contacts/lists/{found['id']}"
    await tenant.call("POST", "/vault/lock")
    locked = await (await owner.get(url)).text()  # sealed names: only while unlocked
    assert 'data-testid="list-locked"' in locked and "Gülşen" not in locked
    await tenant.unlock()
    monkeypatch.setattr(audience, "PAGE_SIZE", 2)
    first = await (await owner.get(url)).text()
    assert first.count("<tr><td>") == 2
    assert 'rel="next"' in first and 'rel="prev"' not in first
    last = await (await owner.get(url + "?page=3")).text()
    assert last.count("<tr><td>") == 1 and 'rel="next"' not in last and 'rel="prev"' in last
    seen = []
    for number in (1, 2, 3):
        text = await (await owner.get(f"{url}?page={number}")).text()
        seen += re.findall(r"<tr><td>([^<]*)</td>", text)
    assert sorted(seen) == sorted(["Gülşen Ağaoğlu", "Ali Veli", "Ayşe Kaya", "Can Demir",
                                   "Şule Öz"])  # every member once, in a stable order
    granted = await (await owner.get(url + "?consent=granted")).text()
    more = await (await owner.get(url + "?consent=granted&page=2")).text()
    names = re.findall(r"<tr><td>([^<]*)</td>", granted + more)
    assert sorted(names) == ["Can Demir", "Gülşen Ağaoğlu", "Şule Öz"]
    assert 'href="/contacts/lists/' + found["id"] + '?page=2&amp;consent=granted"' in granted
    refused = await (await owner.get(url + "?consent=revoked")).text()
    assert "Ali Veli" in refused and refused.count("<tr><td>") == 1
    none = await (await owner.get(url + "?consent=none")).text()
    assert "Ayşe Kaya" in none and none.count("<tr><td>") == 1
    # Bad values are no error: an unknown filter is everyone, a bad page the first.
    assert (await owner.get(url + "?consent=x&page=abc")).status == 200
    assert (await owner.get("/contacts/lists/nope")).status == 404


async def test_a_failed_import_leaves_no_list_behind(owner, tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    r = await _upload(owner, "ad;şehir\nAli;Rize\n".encode(), new_list="bozuk")
    assert r.status == 400 and 'data-testid="import-error"' in await r.text()
    r = await _upload(owner, b"telefon;ad\nbozuk;Ali\n", new_list="hepsi hatalı")
    assert r.status == 200 and 'data-testid="invalid">1<' in await r.text()
    assert await _lists(tenant) == []  # neither the failed nor the all-invalid file left one
    r = await _upload(owner, CSV.encode("utf-8"), new_list="iyi")
    assert [x["name"] for x in await _lists(tenant)] == ["iyi"]
    # Into an existing list, a failed import leaves the list as it was.
    (kept,) = await _lists(tenant)
    r = await _upload(owner, b"ad\nAli\n", list_id=kept["id"])
    assert r.status == 400
    assert [(x["name"], x["members"]) for x in await _lists(tenant)] == [("iyi", 5)]


async def test_the_sandbox_simulates_delivered_and_read(owner, tenant):
    await tenant.unlock()
    csv = "telefon;ad;izin\n" + "".join(f"0532 444 56 {i:02d};Kişi {i};evet\n"
                                        for i in range(10))
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "on"})).json())["id"]
    await tenant.call("POST", f"/contacts/import?list_id={list_id}", data=csv.encode(),
                      headers={"Content-Type": "text/csv"})
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": "Merhaba"})).json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 10
    while (await (await tenant.call("GET", f"/campaigns/{cid}")).json())["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    counts = (await (await tenant.call("GET", f"/campaigns/{cid}")).json())["counts"]
    assert counts["sent"] == 10 and counts.get("delivered", 0) == 0
    page = await (await owner.get("/sandbox")).text()
    assert 'data-testid="simulate-receipts"' in page
    r = await owner.post("/sandbox/receipts")
    assert r.status == 200
    text = await r.text()
    delivered = int(re.search(r'data-testid="receipts-delivered">(\d+)<', text).group(1))
    read = int(re.search(r'data-testid="receipts-read">(\d+)<', text).group(1))
    assert delivered == 10 and read == 7  # ten consecutive row ids: seven read
    counts = (await (await tenant.call("GET", f"/campaigns/{cid}")).json())["counts"]
    assert (counts["sent"], counts["delivered"], counts["read"]) == (0, 3, 7)
    # Again: nothing new to report.
    text = await (await owner.post("/sandbox/receipts")).text()
    assert 'data-testid="receipts-delivered">0<' in text
    viewer_r = await owner.client.post("/sandbox/receipts", data={"csrf": "wrong"})
    assert viewer_r.status == 403
