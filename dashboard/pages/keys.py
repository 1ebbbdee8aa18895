"""Dashboard pages: keys (being written)."""
