"""Dashboard pages: sandbox (being written)."""
