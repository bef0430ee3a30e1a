# syntax=docker/dockerfile:1
# citrix-license-exporter container image. See docs/deployment.md.
#
#   make image        (docker build with the package version, the commit and the date as labels)
#   docker run --rm -p 9957:9957 \
#     -v "$PWD/etc:/etc/citrix-license-exporter:ro" citrix-license-exporter
#
# tests/unit/test_dockerfile.py lints this file with hadolint, runs its ENV, WORKDIR, COPY and
# RUN lines in a chroot on debian:bookworm-slim made as Docker Hub makes it, holds the result to
# 150 MiB and runs the exporter and the HEALTHCHECK in it: keep the lines plain (no RUN options).

# ---- build: a venv with the wheel and its runtime dependencies -----------------------------
# Debian's own Python 3.11 on the same base as the final stage, so the venv's interpreter path
# (/usr/bin/python3) and libraries are the same there. pip, setuptools and binutils stay here.
FROM debian:bookworm-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# No version pins (DL3008): Debian's archive keeps only the newest version of a package in a
# stable release, so a pin would break every build at the next security update. The base's
# release (bookworm) fixes the versions that matter: Python 3.11.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# --no-compile and the stripped extension modules keep the image under 150 MiB, as the
# official python image does (pip --no-compile, *.pyc removed, LDFLAGS --strip-all): symbols
# and bytecode are about 24 MiB of the venv. The venv leaves without pip or setuptools.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-compile . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} +

# ---- final: Debian's Python and the venv, run as a fixed non-root uid ----------------------
FROM debian:bookworm-slim

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
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Runtime packages only: the interpreter, the CA store the exporter verifies TLS against when
# no ca_file is set, and /etc/services. Debian compiles the standard library on install; that
# bytecode goes too (as in the official python image), since uid 65532 could not refresh it.
# Unpinned for the reason given in the build stage (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates netbase \
    && rm -rf /var/lib/apt/lists/* \
    && find /usr/lib/python3.11 -depth -name __pycache__ -exec rm -rf {} + \
    && groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter \
    && mkdir -p /etc/citrix-license-exporter/secrets
COPY --from=build /opt/venv /opt/venv

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
