"""Benchmarks that print figures beside pgbench (not tests); see docs/performance.md."""
