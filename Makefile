# Convenience targets. The test command is scripts/test; see README.md.

PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
BENCH_ARGS ?=
# The one version source is pyproject.toml; everything else reads it from there.
VERSION := $(shell python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE ?= citrix-license-exporter
DOCKER ?= docker

.PHONY: bench bench-config bench-deps bench-quick dist image mixin version

## Render the monitoring mixin (monitoring/) into rules/ and grafana/dashboards/, then the
## Kubernetes files made from them (docs/mixin.md).
mixin:
	monitoring/render.sh
	$(PYTHON) deploy/kubernetes/generate.py

## The package version (pyproject.toml), as the image tag and the Kubernetes files use it.
version:
	@echo $(VERSION)

## The sdist and the wheel in dist/ (docs/release.md).
dist:
	rm -rf dist
	$(PYTHON) -m build --outdir dist .

## The container image, labelled with the package version and the commit.
image:
	$(DOCKER) build -t $(IMAGE):$(VERSION) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION="$$(git rev-parse HEAD)" \
	  --build-arg CREATED="$$(date -u +%Y-%m-%dT%H:%M:%SZ)" .

## What a scrape costs and how it grows with the fleet: writes docs/performance.md (~8 min).
bench:
	$(PYTHON) -m benchmarks.run $(BENCH_ARGS)

## A small run (fleets of 1 and 10), printed only.
bench-quick:
	$(PYTHON) -m benchmarks.run --sizes 1,10 --winrm-sizes 1,10 --out - $(BENCH_ARGS)

## pydantic against msgspec for the config files (issue 15's choice; needs pip install msgspec).
bench-config:
	$(PYTHON) -m benchmarks.config_validation $(BENCH_ARGS)

## blackbox_exporter, for the comparison, and a C compiler with OpenSSL's headers for the
## benchmark's target server (benchmarks/target.c); Debian packages.
bench-deps:
	apt-get install -y --no-install-recommends prometheus-blackbox-exporter gcc libc6-dev libssl-dev
