"""Consent through the HTTP API: import, gate, STOP/START/HELP on the sandbox, ledger, export."""
from __future__ import annotations

import asyncio
import csv
import io
import time

import pytest
from conftest import PASSPHRASE, ApiTenant

import accounts
from dashboard.keys import db_key, master_key

MESSY_CP1254 = (
    "Telefon;Ad Soyad;Şehir;consent\n"
    "0532 111 22 33;Şükrü Çağlayan;İstanbul;evet\n"
    "+90 (532) 111-22-44;Işıl Ünlü;İzmir;granted\n"
    "905321112255;İsmail Göğüş;Muğla;\n"
    "5321112233;Şükrü Ç.;İstanbul;evet\n"          # same person as row 2
    "abc;Kötü Satır;Ankara;evet\n"                  # invalid phone
    ";Boş Telefon;Bursa;evet\n"                     # missing phone
    "0532 111 22 66;Ayşe;Konya;belki\n"             # unrecognised consent value
)


async def _import(t: ApiTenant, text: str, list_id: str | None = None, encoding="utf-8"):
    q = f"?list_id={list_id}" if list_id else ""
    r = await t.call("POST", "/contacts/import" + q, data=text.encode(encoding),
                     headers={"Content-Type": "text/csv"})
    return r.status, await r.json()


async def _gate(t: ApiTenant, address: str, purpose="commercial", channel="sandbox"):
    r = await t.call("GET", "/gate", params={"address": address, "channel": channel,
                                             "purpose": purpose})
    assert r.status == 200, await r.text()
    return await r.json()


async def _sandbox_line(t: ApiTenant) -> str:
    lines = (await (await t.call("GET", "/lines")).json())["lines"]
    assert [line["channel"] for line in lines] == ["sandbox"]
    return lines[0]["id"]


async def _reply(t: ApiTenant, line: str, frm: str, text: str) -> dict:
    r = await t.call("POST", "/sandbox/inbound", json={"line_id": line, "from": frm, "text": text})
    assert r.status == 200, await r.text()
    return await r.json()


async def _inbox(t: ApiTenant, to: str | None = None) -> list[dict]:
    r = await t.call("GET", "/sandbox/messages", params={"to": to} if to else None)
    assert r.status == 200, await r.text()
    return (await r.json())["messages"]


async def _new_list(t: ApiTenant, name="müşteriler") -> str:
    r = await t.call("POST", "/lists", json={"name": name})
    assert r.status == 201
    return (await r.json())["id"]


async def test_messy_turkish_csv_import_counts_and_reasons(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    status, res = await _import(tenant, MESSY_CP1254, await _new_list(tenant), "cp1254")
    assert status == 200, res
    assert (res["imported"], res["updated"]) == (3, 1)
    assert res["encoding"] == "cp1254" and res["delimiter"] == ";"
    assert sorted((i["row"], i["reason"]) for i in res["invalid"]) == [
        (6, "invalid_phone"), (7, "missing_phone"), (8, "invalid_consent")]
    assert (await _gate(tenant, "+905321112233"))["reason"] == "allowed"
    assert (await _gate(tenant, "0532 111 22 44"))["reason"] == "allowed"
    assert (await _gate(tenant, "905321112255"))["reason"] == "no_consent"
    # Importing the same file again only updates.
    _, again = await _import(tenant, MESSY_CP1254, None, "cp1254")
    assert (again["imported"], again["updated"]) == (0, 4)


async def test_file_without_phone_column_is_400(tenant):
    status, res = await _import(tenant, "ad,şehir\nElif,İzmir\n")
    assert status == 400 and res["error"]["code"] == "no_phone_column"
    assert "phone" in res["error"]["message"]


async def test_import_to_unknown_list_is_404_and_empty_body_400(tenant):
    status, res = await _import(tenant, "phone\n05321112233\n", "no-such-list")
    assert status == 404
    status, res = await _import(tenant, "")
    assert status == 400 and res["error"]["code"] == "empty_file"


async def test_stop_flips_gate_at_once_and_sends_one_turkish_confirmation(tenant):
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    await _import(tenant, "phone,name,consent\n05440001122,Elif,granted\n")
    assert await _gate(tenant, "+905440001122") == {"allowed": True, "reason": "allowed"}
    assert (await _gate(tenant, "+905440001122", "informational"))["allowed"] is True
    res = await _reply(tenant, line, "0544 000 11 22", "  İptal! ")
    assert res == {"intent": "stop", "duplicate": False, "replied": True}
    assert await _gate(tenant, "+905440001122") == {"allowed": False, "reason": "opted_out"}
    assert await _gate(tenant, "+905440001122", "informational") == {
        "allowed": False, "reason": "opted_out"}
    (msg,) = await _inbox(tenant, "+905440001122")
    assert "Örnek Mağaza" in msg["text"] and "BAŞLA" in msg["text"]
    assert msg["to"] == "+905440001122" and msg["line_id"] == line


async def test_start_after_stop_regrants_and_help_answers(tenant):
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    await _reply(tenant, line, "+905440001133", "DUR")
    assert (await _gate(tenant, "+905440001133"))["reason"] == "opted_out"
    # Events are ordered by the whole second (optout.order): a START of the STOP's own second
    # never undoes it, so the person's START comes in the next second.
    await asyncio.sleep(1.01 - time.time() % 1)
    assert (await _reply(tenant, line, "+905440001133", "başla"))["intent"] == "start"
    assert await _gate(tenant, "+905440001133") == {"allowed": True, "reason": "allowed"}
    assert (await _reply(tenant, line, "+905440001133", "yardım"))["intent"] == "help"
    texts = [m["text"] for m in await _inbox(tenant, "+905440001133")]
    assert len(texts) == 3 and "RET" in texts[2]


async def test_a_sentence_containing_a_keyword_is_not_a_stop(tenant):
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    await _import(tenant, "phone,consent\n05440001144,evet\n")
    res = await _reply(tenant, line, "05440001144", "dur bir dakika, sipariş nerede?")
    assert res["intent"] is None and res["replied"] is False
    assert (await _gate(tenant, "+905440001144"))["allowed"] is True
    assert await _inbox(tenant, "+905440001144") == []


async def test_brand_ret_stops(tenant):
    await tenant.unlock()
    line = await _sandbox_line(tenant)
    await _import(tenant, "phone,consent\n05440001155,evet\n")
    assert (await _reply(tenant, line, "05440001155", "ÖRNEK MAĞAZA RET"))["intent"] == "stop"
    assert (await _gate(tenant, "+905440001155"))["reason"] == "opted_out"


async def test_consent_ledger_state_history_and_evidence(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    body = {"address": "0555 123 45 67", "channel": "whatsapp", "status": "granted",
            "source": "HS_WEB", "evidence": "Kampanya formu: izin kutusu işaretlendi"}
    r = await tenant.call("POST", "/consents", json=body)
    assert r.status == 201
    assert (await r.json())["state"]["status"] == "granted"
    await tenant.call("POST", "/consents", json={**body, "status": "revoked", "source": "HS_MESAJ"})
    r = await tenant.call("GET", "/consents", params={"address": "+905551234567",
                                                      "channel": "whatsapp"})
    got = await r.json()
    assert got["state"]["status"] == "revoked" and got["state"]["consent_type"] == "MESAJ"
    assert [h["status"] for h in got["history"]] == ["granted", "revoked"]
    assert got["history"][0]["iys_source"] == "HS_WEB" and got["history"][0]["iys_deadline"]
    await tenant.unlock()
    got = await (await tenant.call("GET", "/consents", params={
        "address": "+905551234567", "channel": "whatsapp"})).json()
    assert got["history"][0]["evidence"]["statement"].startswith("Kampanya formu")
    assert (await _gate(tenant, "+905551234567", channel="whatsapp"))["reason"] == "opted_out"


async def test_older_event_does_not_overwrite_newer_state(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    base = {"address": "05551112233", "channel": "sandbox", "source": "HS_WEB", "evidence": "x"}
    await tenant.call("POST", "/consents", json={**base, "status": "revoked",
                                                 "occurred_at": "2026-06-01T10:00:00+03:00"})
    await tenant.call("POST", "/consents", json={**base, "status": "granted",
                                                 "occurred_at": "2026-01-01T10:00:00+03:00"})
    assert (await _gate(tenant, "+905551112233"))["reason"] == "opted_out"


@pytest.mark.parametrize("body, code", [
    ({"address": "abc", "channel": "sandbox", "status": "granted", "source": "x",
      "evidence": "y"}, "invalid_address"),
    ({"address": "05551112233", "channel": "pigeon", "status": "granted", "source": "x",
      "evidence": "y"}, "invalid_consent"),
    ({"address": "05551112233", "channel": "sandbox", "status": "maybe", "source": "x",
      "evidence": "y"}, "invalid_consent"),
    ({"address": "05551112233", "channel": "sandbox", "status": "granted", "source": "x"},
     "missing_field"),
    ({"address": "05551112233", "channel": "sandbox", "status": "granted", "source": "x",
      "evidence": "y", "occurred_at": "2999-01-01T00:00:00Z"}, "invalid_field"),
])
async def test_bad_consent_is_400_and_changes_nothing(tenant, body, code):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    r = await tenant.call("POST", "/consents", json=body)
    assert r.status == 400 and (await r.json())["error"]["code"] == code
    assert (await _gate(tenant, "+905551112233"))["reason"] == "no_consent"


async def test_merchant_needs_no_consent_but_not_after_refusal(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    await _import(tenant, "telefon,alıcı tipi\n05321119988,tacir\n")
    assert (await _gate(tenant, "+905321119988"))["reason"] == "allowed"
    await tenant.call("POST", "/consents", json={
        "address": "+905321119988", "channel": "sandbox", "status": "revoked",
        "source": "HS_FIZIKSEL_ORTAM", "evidence": "Mağazada sözlü ret",
        "recipient_type": "merchant"})
    assert (await _gate(tenant, "+905321119988"))["reason"] == "opted_out"


async def test_suppressions_export_is_spreadsheet_safe(tenant):
    await tenant.unlock()
    for kind in ("manual", "complaint"):
        r = await tenant.call("POST", "/suppressions", json={"address": "05321110000",
                                                             "channel": "sandbox", "kind": kind})
        assert r.status == 201
    await tenant.call("POST", "/suppressions", json={"address": "05321110001", "kind": "erasure"})
    assert (await _gate(tenant, "+905321110000", "informational"))["reason"] == "suppressed"
    assert (await _gate(tenant, "+905321110001", "informational"))["reason"] == "suppressed"
    text = await (await tenant.call("GET", "/suppressions")).text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["address", "scope", "kind", "source", "created_at"]
    assert rows[1][:3] == ["'+905321110000", "MESAJ", "complaint"]
    assert rows[2][:3] == ["", "*", "erasure"]  # erasure keeps no address
    js = await (await tenant.call("GET", "/suppressions", params={"format": "json"})).json()
    assert js["suppressions"][0]["address"] == "+905321110000"


async def test_suppressions_export_needs_unlock(tenant):
    await tenant.call("POST", "/suppressions", json={"address": "05321110000"})
    r = await tenant.call("GET", "/suppressions")
    assert r.status == 423


async def test_tenants_are_isolated(client, tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    other_id, other_key = await accounts.create_tenant(
        client.app[db_key], client.app[master_key], "Başka Firma", PASSPHRASE, kdf="min")
    other = ApiTenant(client, other_id, other_key)
    await other.unlock()
    await _import(tenant, "phone,consent\n05321112233,evet\n")
    assert (await _gate(other, "+905321112233"))["reason"] == "no_consent"
    line = await _sandbox_line(tenant)
    r = await other.call("POST", "/sandbox/inbound", json={"line_id": line, "from": "05321112233",
                                                          "text": "STOP"})
    assert r.status == 404
    assert (await _gate(tenant, "+905321112233"))["reason"] == "allowed"


async def test_gate_rejects_bad_purpose_and_reports_invalid_address(tenant):
    r = await tenant.call("GET", "/gate", params={"address": "05321112233", "purpose": "spam"})
    assert r.status == 400
    assert await _gate(tenant, "12") == {"allowed": False, "reason": "invalid_address"}


async def test_sandbox_lines_can_be_added_with_any_rate(tenant):
    r = await tenant.call("POST", "/lines", json={"channel": "sandbox", "name": "hızlı",
                                                  "rate_per_second": 1_000_000})
    assert r.status == 201 and (await r.json())["rate_per_second"] == 1_000_000
    r = await tenant.call("POST", "/lines", json={"channel": "sandbox", "name": "x",
                                                  "rate_per_second": 0})
    assert r.status == 400
    r = await tenant.call("POST", "/lines", json={"channel": "whatsapp", "name": "x"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "missing_field"
    r = await tenant.call("POST", "/lines", json={"channel": "pigeon", "name": "x"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "unsupported_channel"


async def test_settings_english_confirmation_and_iys_pending_ret(tenant):
    await tenant.unlock()
    r = await tenant.call("PATCH", "/settings", json={"iys_enabled": True})
    assert r.status == 400  # needs the İYS codes
    r = await tenant.call("PATCH", "/settings", json={
        "language": "en", "sender_name": "Ornek Shop", "sender_contact": "0212 555 00 00",
        "iys_enabled": True, "iys_code": "123456", "iys_brand_code": "654321"})
    assert r.status == 200 and (await r.json())["language"] == "en"
    r = await tenant.call("PATCH", "/settings", json={"colour": "red"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "unknown_field"
    line = await _sandbox_line(tenant)
    await _reply(tenant, line, "05321113344", "STOP")
    (msg,) = await _inbox(tenant, "+905321113344")
    assert msg["text"].startswith("Ornek Shop: You are unsubscribed")
    history = (await (await tenant.call("GET", "/consents", params={
        "address": "+905321113344"})).json())["history"]
    assert [(h["status"], h["iys_sync_state"]) for h in history] == [("revoked", "pending")]


async def test_bireysel_tacir_are_accepted(tenant):
    await tenant.unlock()  # the number index needs the tenant's key (issue 17)
    r = await tenant.call("POST", "/consents", json={
        "address": "05321113355", "channel": "sandbox", "status": "granted", "source": "HS_WEB",
        "evidence": "form", "recipient_type": "TACIR"})
    assert r.status == 201 and (await r.json())["state"]["recipient_type"] == "merchant"


async def test_redelivered_inbound_message_is_applied_once(tenant):
    from campaigns.lines import get_line
    from dashboard.keys import inbound_key
    await tenant.unlock()
    app = tenant.client.app
    async with app[db_key].connect() as conn:
        line = await get_line(conn, tenant.id, await _sandbox_line(tenant))
    first = await app[inbound_key].receive(line, "+905321113366", "RET", "wamid.ABC")
    again = await app[inbound_key].receive(line, "+905321113366", "RET", "wamid.ABC")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert len(await _inbox(tenant, "+905321113366")) == 1
