"""Benchmarks that print figures (run through `izinli bench ...`; not part of the test suite)."""
