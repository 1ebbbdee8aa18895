"""Dashboard form posts never answer 500: every POST page, every form field name the templates
use, filled with hostile values (NUL, huge and non-finite numbers, absurd dates, long text)."""
from __future__ import annotations

from dashboard.pages.web import _PAGES

FIELDS = ["access_token", "action", "address", "app_secret", "back", "bot_token", "business",
          "channel", "consent_text", "email", "format", "frequency_cap",
          "frequency_window_days", "from",
          "include_unknown", "iys_brand_code", "iys_code", "iys_enabled", "iys_password",
          "iys_username", "language", "line_id", "list_id", "messaging_tier", "name",
          "new_list", "new_password", "passphrase", "phone", "phone_number_id", "purpose",
          "quiet_end_hour", "quiet_hours", "quiet_start_hour", "role", "send_at",
          "sender_contact", "sender_name", "start_now", "template", "text", "timezone",
          "token", "ttl_minutes", "verify_token"]
HOSTILE = ["\x00", "a\x00b", "1e308", "-Infinity", "NaN", "9" * 40, "-1", "99999-12-31T23:59",
           "9999-12-31T23:59", "0001-01-01T00:00", "x" * 3000, "\ufffd", "٣", "{{", ""]
# Pages that would end the session or its vault for the pages after them.
LAST = ("/vault/lock", "/logout")


async def test_dashboard_forms_never_answer_500(client, tenant, owner):
    await tenant.unlock()
    campaign_line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    pages = sorted({path for method, path, _ in _PAGES if method == "POST"},
                   key=lambda p: p in LAST)
    answers = {}
    for path in pages:
        url = path.replace("{id}", campaign_line).replace("{action}", "pause")
        for value in HOSTILE:
            data = {name: value for name in FIELDS}
            data["password"] = owner.password  # pages asking it again get past that check
            r = await owner.post(url, data, allow_redirects=False)
            answers.setdefault(r.status, set()).add(path)
            assert r.status < 500, (path, value[:20], (await r.text())[:300])
    assert len(pages) > 15 and 400 in answers


QUERY = ["before", "limit", "address", "channel", "phone", "lang", "done", "show", "outcome",
         "token", "to", "id"]


async def test_dashboard_pages_never_answer_500_for_query_values(client, tenant, owner):
    from urllib.parse import quote
    await tenant.unlock()
    line = (await (await tenant.call("GET", "/lines")).json())["lines"][0]["id"]
    pages = sorted({path for method, path, _ in _PAGES if method == "GET"})
    for path in pages:
        url = path.replace("{id}", line).replace("{action}", "pause")
        for value in [*HOSTILE, "1e23", "%ff", "\ud800"]:
            text = quote(value.encode("utf-8", "surrogatepass"), safe="")
            r = await owner.get(url + "?" + "&".join(f"{n}={text}" for n in QUERY),
                                allow_redirects=False)
            assert r.status < 500, (path, value[:20], (await r.text())[:300])
