"""Dashboard pages: sample (being written)."""
