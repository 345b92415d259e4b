"""Benchmarks for edgegrad: seeded network generators, baselines and timing scripts (not installed)."""
