"""The overview's numbers mean what they say: opt-outs are people's own refusals, the funnel
fits its largest value, and the last 14 days of sends are drawn by outcome."""
import asyncio
import re
import time
from datetime import date

from dashboard.pages.overview import LABEL_WIDTH, VALUE_WIDTH, funnel_svg
from dashboard.services.overview import Day, split_day

CSV = ("telefon;ad soyad;izin\n"
       "0532 444 55 66;Gülşen Ağaoğlu;evet\n"
       "0532 444 55 67;Ali Veli;hayır\n"
       "0532 444 55 68;Ayşe Kaya;hayır\n"
       "0532 444 55 69;Can Demir;hayır\n")


def _figure(page: str, testid: str) -> int:
    found = re.search(rf'data-testid="{testid}">(\d+)<', page)
    assert found, testid
    return int(found.group(1))


async def _import(tenant) -> str:
    list_id = (await (await tenant.call("POST", "/lists", json={"name": "vip"})).json())["id"]
    r = await tenant.call("POST", f"/contacts/import?list_id={list_id}",
                          data=CSV.encode("utf-8"), headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    return list_id


async def test_optouts_today_counts_people_only(tenant, owner):
    await tenant.unlock()
    await _import(tenant)  # three "hayır" rows: the business's records, not refusals today
    assert _figure(await (await owner.get("/")).text(), "opt-outs-today") == 0
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    for text in ("DUR", "DUR"):  # the same person twice: one person
        r = await tenant.call("POST", "/sandbox/inbound", json={
            "line_id": line, "from": "05324445566", "text": text})
        assert r.status == 200
    # A refusal the business records over the API is not one a person made on a channel.
    r = await tenant.call("POST", "/consents", json={
        "address": "05324445570", "channel": "sandbox", "status": "revoked",
        "source": "HS_WEB", "evidence": "form"})
    assert r.status == 201, await r.text()
    from dashboard.services import reads
    reads.forget(tenant.id)
    page = await (await owner.get("/")).text()
    assert _figure(page, "opt-outs-today") == 1
    # The API's figure keeps its documented meaning (every refusal recorded today); beside it,
    # the overview's: the people who refused themselves.
    stats = await (await tenant.call("GET", "/stats")).json()
    assert stats["opt_outs"] >= 4 and stats["opt_outs_by_people"] == 1


def test_funnel_scales_to_its_largest_value():
    funnel = funnel_svg([("a", 1000), ("b", 10), ("c", 0)])
    widest = funnel["rows"][0]
    assert widest["width"] == funnel["width"] - LABEL_WIDTH - VALUE_WIDTH
    assert widest["value_x"] + len("1000") * 8 <= funnel["width"]  # its figure fits too
    assert funnel["rows"][1]["width"] == round(widest["width"] / 100)
    assert funnel["rows"][2]["width"] == 0


def test_a_days_outcomes_add_up_once():
    outcomes = split_day({"sent": 10, "delivered": 7, "read": 4, "failed": 1, "skipped": 2})
    assert outcomes == {"read": 4, "delivered": 3, "sent": 3, "failed": 1, "skipped": 2}
    assert Day(date(2026, 11, 30), outcomes).total == 13
    # A read receipt without a delivery one still counts as delivered and read, once.
    assert split_day({"sent": 1, "read": 1}) == {"read": 1, "delivered": 0, "sent": 0,
                                                 "failed": 0, "skipped": 0}


async def test_overview_draws_the_last_14_days_by_outcome(tenant, owner):
    await tenant.unlock()
    list_id = await _import(tenant)
    page = await (await owner.get("/")).text()
    assert 'data-testid="days-chart"' not in page  # nothing sent yet: said in words
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    cid = (await (await tenant.call("POST", "/campaigns", json={
        "name": "yaz", "line_id": line, "list_id": list_id, "template": "Merhaba"})).json())["id"]
    await tenant.call("POST", f"/campaigns/{cid}/start")
    deadline = time.monotonic() + 10
    while (await (await tenant.call("GET", f"/campaigns/{cid}")).json())["state"] != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    from dashboard.services import reads
    reads.forget(tenant.id)
    page = await (await owner.get("/")).text()
    assert 'data-testid="days-chart"' in page and 'style="' not in page
    chart = page.split('data-testid="days-chart"', 1)[1].split("</svg>", 1)[0]
    assert chart.count("<g>") == 14
    drawn = {o: sum(int(n) for n in re.findall(rf'data-outcome="{o}" data-n="(\d+)"', chart))
             for o in ("read", "delivered", "sent", "failed", "skipped")}
    # One consented person reached; three skipped (they said no).
    assert drawn["skipped"] == 3
    assert drawn["sent"] + drawn["delivered"] + drawn["read"] == 1
