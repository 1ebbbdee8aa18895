"""Dashboard pages. Each module registers its routes with `dashboard.web.page` on import."""
from dashboard.pages import campaigns, overview  # noqa: F401
