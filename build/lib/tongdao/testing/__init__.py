"""Helpers for Tongdao's own tests and benchmarks (real PostgreSQL, key material)."""
