""""Load sample data" (admins): a list of sandbox contacts — some with consent, some without —
and a draft campaign on the sandbox line, to try izinli without real customers. Created through
the same API a user would call; then the campaign's page opens."""
from __future__ import annotations

import io

from aiohttp import web

from dashboard.audience_api import import_spooled
from dashboard.errors import ApiError
from dashboard.web import USER, api, error_page, forget_reads, page

LIST_NAME = "Örnek müşteriler"
CAMPAIGN_NAME = "Örnek kampanya"
TEMPLATE = "Merhaba {{name}}, bu bir örnek kampanyadır. Hafta sonu tüm ürünlerde %20 indirim!"
# Sandbox numbers: nothing leaves izinli on the sandbox line.
SAMPLE_CSV = """telefon;ad soyad;şehir;izin
0532 000 00 11;Şükrü Öztürk;İstanbul;evet
0532 000 00 12;Ayşe Yılmaz;Ankara;evet
0532 000 00 13;Mehmet Demir;İzmir;evet
0532 000 00 14;Gülşen Çağlar;Bursa;evet
0532 000 00 15;Emre Kaya;Antalya;evet
0532 000 00 16;Zeynep Arslan;Konya;hayır
0532 000 00 17;Can Doğan;Eskişehir;
0532 000 00 18;Elif Şahin;Trabzon;
"""


@page("POST", "/sample", "admin")
async def load_sample(request: web.Request) -> web.StreamResponse:
    lines = ((await api(request, "GET", "/lines")).data or {}).get("lines", [])
    sandbox = next((line for line in lines if line.get("channel") == "sandbox"), None)
    if sandbox is None:
        return error_page(request, 409, "no sandbox line / deneme hattı yok")
    created = await api(request, "POST", "/lists", body={"name": LIST_NAME})
    if not created.ok:
        return error_page(request, created.status, created.error)
    list_id = created.data["id"]
    spool = io.BytesIO(SAMPLE_CSV.encode("utf-8"))
    spool.seek(0, io.SEEK_END)  # import_spooled reads what was written so far
    try:
        await import_spooled(request, list_id, spool, "ornek-musteriler.csv")
    except ApiError as exc:
        return error_page(request, exc.status, exc.message)
    campaign = await api(request, "POST", "/campaigns", body={
        "name": CAMPAIGN_NAME, "line_id": sandbox["id"], "list_id": list_id,
        "template": TEMPLATE, "purpose": "commercial"})
    if not campaign.ok:
        return error_page(request, campaign.status, campaign.error)
    forget_reads(request[USER].tenant_id)
    raise web.HTTPSeeOther(f"/campaigns/{campaign.data['id']}")
