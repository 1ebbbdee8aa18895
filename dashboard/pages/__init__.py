"""Dashboard pages. Each module registers its routes with `dashboard.pages.web.page` on import."""
from dashboard.pages import (  # noqa: F401
    audit,
    business,
    campaigns,
    consents,
    contacts,
    invites,
    keys,
    lines,
    overview,
    people,
    sample,
    sandbox,
    settings,
    users,
    vault,
)
