"""Helpers for tests and benchmarks: synthetic surveillance scenes with known anomalies. The
library itself never imports this package."""
