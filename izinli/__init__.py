"""Composition root: configuration, wiring and the `izinli` command line."""
