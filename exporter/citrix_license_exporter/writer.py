"""A writer for gauge families, byte for byte what prometheus_client writes, faster.

prometheus_client's OpenMetrics encoder escapes every sample name one character at a time (for
its UTF-8 name escaping); for a cached probe with 50 pools that was most of the scrape's CPU
(docs/performance.md). The exporter's names are all legacy Prometheus names, so nothing needs
escaping: this writer checks that once per family and writes the lines directly. Anything it
does not handle (another type, a unit, timestamps, exemplars, a name outside the legacy set)
goes through prometheus_client's own encoder, family by family.

Its output equals prometheus_client's for every demo scenario in both formats
(tests/unit/test_writer.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

# prometheus_client's own functions carry no type hints.
_go_float: Callable[[float], str] = floatToGoString
_openmetrics: Callable[[CollectorRegistry], bytes] = openmetrics_latest

#: Names the writer handles: legacy metric names without ':' (OpenMetrics' sample-name
#: escaping would treat ':' differently) and legacy label names.
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = (
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
)


class _One:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


#: Names already matched against _NAME: the exporter's own, the same few on every probe.
_LEGACY: set[str] = set()
_MAX_LEGACY = 4096


def _legacy(name: str) -> bool:
    if name in _LEGACY:
        return True
    if _NAME.fullmatch(name) is None:
        return False
    if len(_LEGACY) >= _MAX_LEGACY:
        _LEGACY.clear()
    _LEGACY.add(name)
    return True


def _fast(metric: Metric) -> bool:
    if metric.type != "gauge" or metric.unit or not _legacy(metric.name):
        return False
    for sample in metric.samples:
        if sample.timestamp is not None or sample.exemplar is not None \
                or sample.native_histogram is not None or sample.name != metric.name:
            return False
        for key in sample.labels:
            if not _legacy(key):
                return False
    return True


def _fallback(metric: Metric, openmetrics: bool) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_One(metric))
    if openmetrics:
        text = _openmetrics(registry).decode("utf-8")
        return text[: -len("# EOF\n")]
    return text_latest(registry).decode("utf-8")


def write(families: Iterable[Metric], openmetrics: bool) -> str:
    """The families in the text format 0.0.4, or OpenMetrics 1.0.0 (without ``# EOF``),
    with prometheus_client's default (underscore) name escaping."""
    return write_alike(families, openmetrics)[0]


def write_alike(families: Iterable[Metric], openmetrics: bool) -> tuple[str, bool]:
    """``write``, and whether the other format would give the same text: gauges this writer
    writes itself, with no ``"`` in their help (which only OpenMetrics escapes)."""
    out: list[str] = []
    alike = True
    for metric in families:
        if not _fast(metric):
            out.append(_fallback(metric, openmetrics))
            alike = False
            continue
        name = metric.name
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        if '"' in doc:
            alike = False
            if openmetrics:
                doc = doc.replace('"', r"\"")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        for sample in metric.samples:
            labels = sample.labels
            if labels:
                inner = ",".join(
                    f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items())
                )
                out.append(f"{name}{{{inner}}} {_go_float(sample.value)}\n")
            else:
                out.append(f"{name} {_go_float(sample.value)}\n")
    return "".join(out), alike


def format_of(encoder: object, content_type: str) -> bool | None:
    """For prometheus_client's negotiated encoder: False for the text format, True for
    OpenMetrics 1.0.0 with underscore escaping, None for anything this writer does not write."""
    if content_type == TEXT_CONTENT_TYPE:
        return False
    keywords = getattr(encoder, "keywords", None) or {}
    if getattr(encoder, "func", None) is openmetrics_latest \
            and keywords.get("escaping") == "underscores" and keywords.get("version") == "1.0.0":
        return True
    return None
