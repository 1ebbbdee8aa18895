"""Dashboard pages: audit (being written)."""
