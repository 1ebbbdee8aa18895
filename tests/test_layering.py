"""The dependency direction of DESIGN.md ("Layout"): a package imports only those below it.

    izinli ─→ dashboard ─→ accounts ─→ bot ─→ campaigns ─→ optout ─→ crypto
                                                                  └─→ store
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each package with the packages it may import (besides itself).
ALLOWED = {
    "store": set(),
    "crypto": set(),
    "optout": {"crypto", "store"},
    "campaigns": {"optout", "crypto", "store"},
    "bot": {"campaigns", "optout", "crypto", "store"},
    "accounts": {"bot", "campaigns", "optout", "crypto", "store"},
    "dashboard": {"accounts", "bot", "campaigns", "optout", "crypto", "store"},
    "izinli": {"dashboard", "accounts", "bot", "campaigns", "optout", "crypto", "store"},
}


def _imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_those_below_them(package):
    wrong = {f"{path.relative_to(ROOT)} imports {name}"
             for path in (ROOT / package).rglob("*.py")
             if "migrations" not in path.parts
             for name in _imported(path) - ALLOWED[package] - {package}}
    assert not wrong, sorted(wrong)


def _imports_of(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from x import y` gives x and x.y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_services_know_nothing_of_the_web():
    """Application services raise domain errors (dashboard.services.ServiceError, …); the web
    layer maps them to statuses. No service imports aiohttp or the API's ApiError."""
    services = sorted((ROOT / "dashboard" / "services").rglob("*.py"))
    assert services
    wrong = sorted(f"{path.relative_to(ROOT)} imports {name}"
                   for path in services for name in _imports_of(path)
                   if name.split(".")[0] == "aiohttp"
                   or name in ("dashboard.errors.ApiError", "dashboard.routing")
                   or name.startswith(("dashboard.api", "dashboard.pages",
                                       "dashboard.webhooks")))
    assert not wrong, wrong
