"""Benchmarks on labelled datasets: fit on the normal training videos, score the test videos,
frame-level AUC."""
