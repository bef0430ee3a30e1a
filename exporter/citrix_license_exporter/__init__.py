"""Prometheus exporter for Citrix License Servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("citrix-license-exporter")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
