"""Benchmark harness: ``python -m bench`` (see docs/benchmark.md). Not part of the test suite."""
