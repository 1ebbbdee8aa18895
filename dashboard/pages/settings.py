"""Dashboard pages: settings (being written)."""
