# Convenience targets. The test command is scripts/test; see README.md.

PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
BENCH_ARGS ?=

.PHONY: bench bench-config bench-deps bench-quick

## What a scrape costs and how it grows with the fleet: writes docs/performance.md (~8 min).
bench:
	$(PYTHON) -m benchmarks.run $(BENCH_ARGS)

## A small run (fleets of 1 and 10), printed only.
bench-quick:
	$(PYTHON) -m benchmarks.run --sizes 1,10 --winrm-sizes 1,10 --out - $(BENCH_ARGS)

## pydantic against msgspec for the config files (issue 15's choice; needs pip install msgspec).
bench-config:
	$(PYTHON) -m benchmarks.config_validation $(BENCH_ARGS)

## blackbox_exporter, for the comparison (Debian package).
bench-deps:
	apt-get install -y --no-install-recommends prometheus-blackbox-exporter
