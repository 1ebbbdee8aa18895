"""Application services: what the dashboard's pages and the JSON API both do, written once.

A service is a plain async function (or a small class) that takes a `Context` — who acts, for
which tenant, with the application's components — and typed arguments, and returns dataclasses
or raises the domain's errors (campaigns.service.CampaignError, ServiceError below, …), which
the JSON API maps to `{"error": …}` answers (dashboard.errors) and pages to a message. Neither
side reimplements the other: a JSON handler parses, calls, maps; a page reads its form, calls,
renders."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Context:
    tenant_id: str
    actor: str  # as the audit log names it: "user:<id>" or "api_key:<id>"
    role: str | None  # the caller's role; None where the caller checked it already
    components: Mapping[Any, Any]  # the application (read its dashboard.keys entries)

    def __getitem__(self, key):
        return self.components[key]


class ServiceError(Exception):
    """A request a service refuses because of what was asked (bad input): a stable lowercase
    `code` and a message written to be shown, naming fields, never a value the caller sent.
    The web layer maps the family to statuses in one place (dashboard.errors: 400, and the
    subclasses' 404 and 409); pages show the code's text (dashboard.labels)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class ServiceNotFoundError(ServiceError):
    """The tenant has no such object (another tenant's is not found either)."""

    def __init__(self, message: str, code: str = "not_found"):
        super().__init__(code, message)


class ServiceStateError(ServiceError):
    """The request is well formed, but the state of things forbids it now."""
