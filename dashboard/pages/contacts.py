"""Dashboard pages: contacts (being written)."""
