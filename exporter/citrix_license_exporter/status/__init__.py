"""The fleet status page at ``/``: ``snapshot`` (state to data) and ``render_status`` (data to
HTML bytes)."""

from .model import FleetStatus, snapshot
from .page import render_status

__all__ = ["FleetStatus", "render_status", "snapshot"]
