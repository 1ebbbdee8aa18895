"""An uploaded CSV never touches the disk in plaintext (issue 12 item 7): the API import and
the dashboard's upload form keep it in memory, up to the import limit."""
import io
import tempfile

import aiohttp
import pytest

ROWS = "telefon;ad\n05327654321;Zeynep Yıldırımoğlu\n05337654322;Gökhan Çelikkaya\n"
# Blank lines cost the parser nothing but push the file past the old spools' in-memory
# thresholds (1 MiB for the API, 8 MiB for the form), where they rolled over to /tmp.
PADDING = (" " * 1023 + "\n") * (9 * 1024)


@pytest.fixture
def empty_tmp(tmp_path, monkeypatch):
    """TMPDIR (and Python's cached temp dir) pointed at an empty directory, and every way the
    standard library makes a temporary file refused."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", str(spool))

    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was created for an upload")
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    return spool


async def test_uploaded_csv_never_touches_disk(tenant, owner, empty_tmp):
    body = (ROWS + PADDING).encode()
    assert len(body) > 9 * 1024 * 1024
    await tenant.unlock()
    r = await tenant.call("POST", "/contacts/import", data=io.BytesIO(body),
                          headers={"Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    assert (await r.json())["imported"] == 2
    form = aiohttp.FormData()
    form.add_field("csrf", owner.csrf)
    form.add_field("list_id", "")
    form.add_field("new_list", "form")
    form.add_field("file", io.BytesIO(body), filename="kisiler.csv", content_type="text/csv")
    r = await owner.client.post("/contacts/import", data=form)
    assert r.status == 200, await r.text()
    lists = (await (await tenant.call("GET", "/lists")).json())["lists"]
    assert [(item["name"], item["members"]) for item in lists if item["name"] == "form"] == [
        ("form", 2)]
    assert list(empty_tmp.iterdir()) == []
