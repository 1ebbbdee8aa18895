""""Load sample data" (admins): a list of sandbox contacts — some with consent, some without —
and a draft campaign on the sandbox line, to try izinli without real customers. Created through
the same services the API calls (dashboard.services); then the campaign's page opens."""
from __future__ import annotations

import io

from aiohttp import web

from campaigns.service import NewCampaign
from dashboard.context import context_of
from dashboard.pages.failures import shown
from dashboard.pages.web import error_page, forget_reads, page
from dashboard.services import audience
from dashboard.services import campaigns as campaign_services
from dashboard.services import lines as line_services

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
    ctx = context_of(request)
    sandbox = next(iter(await line_services.sandbox_lines(ctx)), None)
    if sandbox is None:
        return error_page(request, 409, "no sandbox line / deneme hattı yok")
    spool = io.BytesIO(SAMPLE_CSV.encode("utf-8"))
    spool.seek(0, io.SEEK_END)  # import_csv reads what was written so far
    try:
        done = await audience.import_csv(ctx, spool, "ornek-musteriler.csv",
                                         new_list_name=LIST_NAME)
        campaign = await campaign_services.create(ctx, NewCampaign(
            name=CAMPAIGN_NAME, line_id=sandbox["id"], list_id=done.list_id or "",
            template=TEMPLATE, purpose="commercial"))
    except Exception as exc:
        failed = shown(request, exc)
        if failed is None:
            raise
        return error_page(request, failed[0], failed[2])
    forget_reads(ctx.tenant_id)
    raise web.HTTPSeeOther(f"/campaigns/{campaign['id']}")
