"""Benchmark scripts (`python -m benchmarks.<name>`); their results are in BENCHMARKS.md."""

import tensorflow_env  # noqa: F401  every benchmark runs as benchmarks.<name>: this runs first
