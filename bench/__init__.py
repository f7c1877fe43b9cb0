"""Reproducible benchmarks of zzz against other Python HTTP servers (see bench/README.md)."""
