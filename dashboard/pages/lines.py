"""Dashboard pages: lines (being written)."""
