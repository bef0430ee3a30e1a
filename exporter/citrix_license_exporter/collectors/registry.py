"""The collectors the exporter knows, in the order modules and the docs list them.

Adding a collector is one module (a ``CollectorUnit`` subclass: section model, fetch, families,
docs entry) and one line in ``BUILTIN``. The configuration (``collectors:`` names, module
sections, credentials), the prober and the exposition look collectors up here
(docs/collectors.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from .base import CollectorDocs, Deadline

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prometheus_client.core import Metric

    from ..config import ModuleConfig, TargetConfig
    from ..probe import ProbeResult
    from ..settings.problems import Section


class Registered(Protocol):
    """A registered collector as the configuration, the prober and the exposition see it: a
    ``CollectorUnit`` whatever its data and section types."""

    @property
    def name(self) -> str: ...
    @property
    def cached(self) -> bool: ...
    @property
    def credentials(self) -> bool: ...
    @property
    def config_model(self) -> type[Section] | None: ...
    @property
    def section_optional(self) -> bool: ...
    @property
    def docs(self) -> CollectorDocs: ...

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> object:
        ...

    def exposition(self, data: object, result: ProbeResult) -> Iterable[Metric]: ...


def _builtin() -> list[Registered]:
    from .cloud import CloudCollector
    from .controller import ControllerCollector
    from .network import NetworkCollector
    from .winrm import WinRMCollector

    return [
        NetworkCollector(),
        WinRMCollector(),
        ControllerCollector(),
        CloudCollector(),
    ]


_registered: dict[str, Registered] | None = None


def _all() -> dict[str, Registered]:
    # Filled on first use, not on import: the collector modules import the configuration,
    # which looks collectors up here while it validates.
    global _registered
    if _registered is None:
        _registered = {c.name: c for c in _builtin()}
    return _registered


def register(collector: Registered) -> None:
    """Add ``collector`` after the others; a name can be registered once."""
    known = _all()
    if collector.name in known:
        raise ValueError(f"a collector named {collector.name!r} is already registered")
    known[collector.name] = collector


def unregister(name: str) -> None:
    _all().pop(name, None)


@contextmanager
def registered(collector: Registered) -> Iterator[Registered]:
    """``collector`` registered for the duration of the block (tests, plugins' checks)."""
    register(collector)
    try:
        yield collector
    finally:
        unregister(collector.name)


def names() -> tuple[str, ...]:
    return tuple(_all())


def get(name: str) -> Registered | None:
    return _all().get(name)


def collectors() -> dict[str, Registered]:
    """Every registered collector by name, in order (a snapshot: the prober keeps its own)."""
    return dict(_all())


def sections() -> dict[str, Registered]:
    """The collectors that take a module section, by the section's key."""
    return {name: c for name, c in _all().items() if c.config_model is not None}


# ---------------------------------------------------------------------------------------------
# The generated reference (docs/collectors.md, between the markers; tests/unit/test_docs.py)

BEGIN = "<!-- collectors: generated from collectors/registry.py, do not edit -->"
END = "<!-- collectors: end -->"


def reference() -> str:
    """The table of registered collectors docs/collectors.md holds between BEGIN and END."""
    rows = [
        BEGIN,
        "| collector | module section | sends credentials | cached | what it reads | metrics |",
        "|---|---|---|---|---|---|",
    ]
    for c in _all().values():
        section = "none" if c.config_model is None else (
            f"`{c.name}:` (optional)" if c.section_optional else f"`{c.name}:` (required)")
        families = ", ".join(f"`{f}`" for f in c.docs.families)
        rows.append(
            f"| `{c.name}` | {section} | {'yes' if c.credentials else 'no'} | "
            f"{'yes' if c.cached else 'no'} | {c.docs.summary} | {families} |"
        )
    rows.append(END)
    return "\n".join(rows)


def generated_block(text: str) -> str | None:
    """The generated block of a document, or None when it has none."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(END)]
