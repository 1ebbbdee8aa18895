"""Browser tests: the real `izinli serve` in a subprocess, driven by Playwright's sync API with
the system Chromium (never a downloaded one).

Skipped when /usr/bin/chromium (or Playwright) is missing, unless IZINLI_REQUIRE_BROWSER=1
(CI), where that fails the tests instead."""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from real_server import free_port

CHROMIUM = os.environ.get("IZINLI_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("IZINLI_REQUIRE_BROWSER") == "1"
HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
AXE = HERE.parent / "interop" / "node_modules" / "axe-core" / "axe.min.js"
OWNER_EMAIL = "sahip@ornek-magaza.com.tr"
OWNER_PASSWORD = "sahip-parola-123"
PASSPHRASE = "doğru at pil zımba 42"
VIEWPORT = {"width": 1280, "height": 800}


def _unavailable() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module", autouse=True)
def _need_browser():
    reason = _unavailable()
    if reason:
        if REQUIRE:
            pytest.fail(f"IZINLI_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)



def _izinli() -> list[str]:
    found = shutil.which("izinli", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-c", "from izinli.cli import main; main()"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("IZINLI_MASTER_KEY", "IZINLI_DATABASE_URL", "IZINLI_DATA_DIR")}
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")  # the master key: never the real home
    env["IZINLI_KDF"] = "min"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@dataclass
class World:
    base: str
    setup_url: str
    tmp: Path
    data_dir: Path
    api_key: str = ""
    tenant_id: str = ""
    sandbox_line: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    # --- the JSON API (data preparation only: what the tests check goes through the browser)
    def api(self, method: str, path: str, body: Any = None, *, content_type: str =
            "application/json") -> tuple[int, Any]:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.base + "/api/v1" + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.api_key}",
                                                  "Content-Type": content_type})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def ok(self, method: str, path: str, body: Any = None, **kw) -> Any:
        status, data = self.api(method, path, body, **kw)
        assert status < 400, f"{method} {path}: {status} {data}"
        return data

    def list_with(self, name: str, csv_text: str) -> str:
        list_id = self.ok("POST", "/lists", {"name": name})["id"]
        self.ok("POST", f"/contacts/import?list_id={list_id}", csv_text.encode(),
                content_type="text/csv")
        return list_id

    def list_id(self, name: str) -> str:
        for item in self.ok("GET", "/lists")["lists"]:
            if item["name"] == name:
                return item["id"]
        raise AssertionError(f"no list named {name!r}")

    def campaign(self, name: str, list_id: str, template: str = "Merhaba {{name}}",
                 purpose: str = "commercial") -> str:
        return self.ok("POST", "/campaigns", {"name": name, "line_id": self.sandbox_line,
                                              "list_id": list_id, "template": template,
                                              "purpose": purpose})["id"]

    def run(self, campaign_id: str, timeout: float = 30) -> dict:
        self.ok("POST", f"/campaigns/{campaign_id}/start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.ok("GET", f"/campaigns/{campaign_id}")
            if got["state"] in ("completed", "cancelled", "failed"):
                return got
            time.sleep(0.2)
        raise AssertionError(f"campaign {campaign_id} did not finish: {got}")

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*_izinli(), *args, "--data-dir", str(self.data_dir)],
                              cwd=self.tmp, env=_env(self.tmp), input=stdin, capture_output=True,
                              text=True, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`izinli serve` on a free loopback port, first run: yields (base url, setup link, dirs)."""
    if _unavailable():
        pytest.skip("no browser")
    tmp = tmp_path_factory.mktemp("izinli-browser")
    data_dir = tmp / "var"
    port = free_port()  # (real_server: a block of ports per xdist worker)
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([*_izinli(), "serve", "--port", str(port), "--host", "127.0.0.1",
                             "--data-dir", str(data_dir)],
                            cwd=tmp, env=_env(tmp), stdout=subprocess.PIPE, stderr=log)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keeps reading so the server never blocks on a full pipe
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip("\n"))

    threading.Thread(target=drain, daemon=True).start()
    base = setup_url = ""
    deadline = time.monotonic() + 60
    try:
        while not setup_url:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                raise RuntimeError("izinli serve did not print its setup link; log:\n"
                                   + (tmp / "server.log").read_text(errors="replace")[-3000:])
            try:
                line = lines.get(timeout=min(remaining, 1))
            except queue.Empty:
                continue
            if m := re.match(r"izinli listening on (http://\S+)", line):
                base = m.group(1).rstrip("/")
            elif m := re.match(r"first run: create your business at (\S+)", line):
                setup_url = m.group(1)
        yield World(base=base, setup_url=setup_url, tmp=tmp, data_dir=data_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--no-proxy-server"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def world(server: World, browser) -> World:
    """The business created through the first-run page; the vault unlocked over the API."""
    context = browser.new_context(viewport=VIEWPORT, locale="tr-TR")
    page = context.new_page()
    page.goto(server.setup_url)
    page.fill("#business", "Örnek Mağaza")
    page.fill("#email", OWNER_EMAIL)
    page.fill("#password", OWNER_PASSWORD)
    page.fill("#passphrase", PASSPHRASE)
    page.locator("form[action='/setup'] button[type=submit]").click()
    page.wait_for_load_state()
    found = re.search(r"izk_[A-Za-z0-9_\-]+", page.content())
    assert found, f"no API key on the welcome page:\n{page.content()[:2000]}"
    server.api_key = found.group(0)
    context.close()
    server.ok("POST", "/vault/unlock", {"passphrase": PASSPHRASE, "ttl_seconds": 3600})
    lines = server.ok("GET", "/lines")["lines"]
    server.sandbox_line = next(li["id"] for li in lines if li["channel"] == "sandbox")
    db = sqlite3.connect(f"file:{server.data_dir / 'izinli.db'}?mode=ro", uri=True)
    try:
        server.tenant_id = db.execute("SELECT id FROM tenants").fetchone()[0]
    finally:
        db.close()
    return server


def sign_in(browser, world: World, email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD,
            **options):
    """A fresh browser context signed in through the login form: (context, page)."""
    context = browser.new_context(**{"viewport": VIEWPORT, "locale": "tr-TR", **options})
    page = context.new_page()
    page.goto(world.base + "/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.locator("form[action='/login'] button[type=submit]").click()
    page.wait_for_load_state()
    assert not page.url.rstrip("/").endswith("/login"), f"login failed: {page.url}"
    return context, page


@pytest.fixture
def signed_in(browser, world):
    def make(email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD, **options):
        context, page = sign_in(browser, world, email, password, **options)
        made.append(context)
        return page
    made: list = []
    yield make
    for context in made:
        context.close()
