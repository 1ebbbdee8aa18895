"""Dashboard pages: people (being written)."""
