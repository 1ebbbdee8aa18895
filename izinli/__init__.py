"""Composition root: configuration, wiring and the `izinli` command line."""
# The shipped channels register themselves (bot.registry) when imported: every entry point —
# the server, the CLI, the benchmarks — sees them, whichever module it loads first.
import bot.channels  # noqa: F401
