"""Dashboard pages: consents (being written)."""
