"""Benchmarks: run each with `.venv/bin/python bench/<name>.py`, or all with `scripts/bench-all` (`make bench`)."""
