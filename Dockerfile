# syntax=docker/dockerfile:1
# citrix-license-exporter container image. See docs/deployment.md.
#
#   make image        (docker build with the package version, the commit and the date as labels)
#   docker run --rm -p 9957:9957 \
#     -v "$PWD/etc:/etc/citrix-license-exporter:ro" citrix-license-exporter
#
# tests/unit/test_dockerfile.py lints this file with hadolint and runs its RUN steps (the wheel
# build, the venv install) and its HEALTHCHECK outside Docker, so keep the RUN lines plain.

# ---- build: the wheel, from the same sources `pip install .` uses --------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN pip wheel --no-deps --wheel-dir /dist .

# ---- final: a venv with the wheel and its dependencies, run as a fixed non-root uid ----------
FROM python:3.11-slim-bookworm

# No default: `make image` passes the package version (pyproject.toml, the one version source).
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="citrix-license-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Citrix License Servers (multi-target, /probe?target=...)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/citrix-license-exporter/citrix-license-exporter" \
      org.opencontainers.image.documentation="https://github.com/citrix-license-exporter/citrix-license-exporter/blob/main/docs/deployment.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# The wheel is bind-mounted from the build stage, so it never lands in a layer. The base
# image's pip installs into the venv, which gets no pip of its own.
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir /dist/*.whl \
    && groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter \
    && mkdir -p /etc/citrix-license-exporter/secrets

# Configuration and secrets are mounted read-only here (one directory, so a reload sees edits):
#   /etc/citrix-license-exporter/config.yml, /etc/citrix-license-exporter/secrets/*
USER 65532:65532
WORKDIR /etc/citrix-license-exporter
EXPOSE 9957

# No curl in the image: Python asks /-/healthy. The port follows
# CITRIX_LICENSE_EXPORTER_WEB_LISTEN_ADDRESS (change the port there, not with the flag).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CITRIX_LICENSE_EXPORTER_WEB_LISTEN_ADDRESS', ':9957').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/-/healthy', timeout=4)"]

# The exporter is PID 1: it handles SIGTERM and SIGINT itself (stops serving, exits 0) and
# SIGHUP (reloads the configuration), so no init process is needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["citrix-license-exporter"]
CMD ["--config.file=/etc/citrix-license-exporter/config.yml"]
