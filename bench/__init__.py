"""Benchmarks that print figures (run through `izinli bench ...`; not part of the test suite)."""
# Benchmarks wire the pipeline themselves: the shipped channels must be registered first.
import bot.channels  # noqa: F401
