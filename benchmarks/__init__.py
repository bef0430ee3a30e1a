"""Benchmarks of the exporter against fleets of SIMULATED License Servers (``make bench``).

Not tests: they measure and report (docs/performance.md); tests/unit/test_bench_smoke.py only
checks that a tiny run produces its table.
"""
