"""Benchmarks: each module prints one JSON document; `python -m bench all` runs them all."""
