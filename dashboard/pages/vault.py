"""Dashboard pages: vault (being written)."""
