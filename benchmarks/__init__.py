"""Benchmarks: throughput and detection quality, veille beside its peers (run as modules)."""
