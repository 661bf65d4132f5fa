"""Smoke tests of the benchmarks (bench/): each runs quickly and checks its results, no timing."""
