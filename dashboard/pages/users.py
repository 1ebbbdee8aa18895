"""Dashboard pages: users (being written)."""
