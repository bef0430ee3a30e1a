"""A probe's answer as bytes, in the format the scraper asked for.

Each collector's data is turned into metric families and encoded on its own, so that a value
that cannot be exposed (a date out of range, a number too large, a lone surrogate) fails that
collector only: the target answers 200 with that collector's ``collector_success 0`` (and
``up 0`` when it is the primary one), the reason is logged, and the engine stops serving that
data from its cache. The bytes of a cached fetch are built (their label values scrubbed of
secrets) once per fetch and format, then reused by every scrape until the next fetch. Where the
text format and OpenMetrics come out the same (gauges whose help has no ``"``: the usual case),
one bytes object serves both: every probe also keeps the text format for the probe history, so
each cached target would otherwise keep its answer twice. The cache keeps them compressed
(zlib, level 1: a 72 KB answer of 50 license pools in ~5 KB, inflated in ~0.05 ms per scrape),
so 500 cached targets hold ~3 MB of answers instead of ~35 MB.
"""

from __future__ import annotations

import logging
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from .collectors import registry
from .config import ModuleConfig, TargetConfig, redact
from .metrics import outcome_families, probe_duration_family, server_families
from .probe import Outcome, Prober, ProbeResult, describe, is_cached
from .writer import OPENMETRICS_CONTENT_TYPE, format_of, write_alike

log = logging.getLogger(__name__)

EOF_MARK = b"# EOF\n"
#: Encoded data kept per (collector, fetch, format): a few per cached target.
MAX_ENCODED = 4096

Encoder = Callable[[CollectorRegistry], bytes]


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def scrub(families: Iterable[Metric]) -> list[Metric]:
    """``families`` with every label value scrubbed of secrets, even one a hostile server echoed.

    Label values are the only text in an answer that comes from outside the code (peers and the
    configuration); names, label names and HELP texts are the exporter's own. Scrubbing the
    encoded text instead would also cut a secret's fragments out of metric names: a password
    starting with "second" would turn every ``_seconds`` into ``_<hidden>s`` and make the
    answer unparseable.
    """
    out = list(families)
    for metric in out:
        samples = metric.samples
        for i, sample in enumerate(samples):
            if not sample.labels:
                continue
            clean = {name: redact(value) for name, value in sample.labels.items()}
            if clean != sample.labels:
                # _replace is the namedtuple's public API, not a private attribute.
                samples[i] = sample._replace(labels=clean)
    return out


def encode(families: Iterable[Metric], encoder: Encoder, content_type: str) -> bytes:
    """``families`` in the negotiated format, scrubbed of secrets, without OpenMetrics' EOF."""
    return _encode(scrub(families), encoder, content_type, format_of(encoder, content_type))[0]


def _encode(families: list[Metric], encoder: Encoder, content_type: str,
            fmt: bool | None) -> tuple[bytes, bool]:
    """Scrubbed ``families`` in the negotiated format (``fmt``: the writer's, or None), and
    whether the other of the writer's formats would give the same bytes (``writer.write_alike``;
    False for a format the writer does not write)."""
    if fmt is not None:
        text, alike = write_alike(families, fmt)
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        raw = encoder(registry)
        if raw.endswith(EOF_MARK):
            raw = raw[: -len(EOF_MARK)]
        text, alike = raw.decode("utf-8"), False
    return text.encode("utf-8"), alike


class ProbeRenderer:
    """Renders probe results; remembers the encoded data of recent fetches."""

    def __init__(self, prober: Prober) -> None:
        self.prober = prober
        #: (collector, id(data), format) -> (data, compressed bytes); the format is the
        #: writer's (False: text, True: OpenMetrics) or else the content type.
        self._encoded: OrderedDict[tuple[str, int, bool | str], tuple[object, bytes]] = (
            OrderedDict())

    def _data_bytes(
        self, outcome: Outcome, result: ProbeResult, encoder: Encoder, content_type: str
    ) -> tuple[bytes, bool]:
        """The data's bytes, and whether the other format's would be the same."""
        fmt = format_of(encoder, content_type)
        key = (outcome.collector, id(outcome.data), content_type if fmt is None else fmt)
        hit = self._encoded.get(key)
        if hit is not None and hit[0] is outcome.data:
            self._encoded.move_to_end(key)
            other = (None if fmt is None
                     else self._encoded.get((outcome.collector, id(outcome.data), not fmt)))
            return zlib.decompress(hit[1]), other is not None and other[1] is hit[1]
        collector = registry.get(outcome.collector)
        assert collector is not None  # render() asks only for registered collectors
        families = scrub(collector.exposition(outcome.data, result))
        data, alike = _encode(families, encoder, content_type, fmt)
        if outcome.from_cache or is_cached(collector, result.module):
            # Only data a later scrape can be served again (a cached collector's): a fresh
            # fetch's bytes (the network probe's) are never asked for twice, and keeping them
            # would cost a compression per probe and MAX_ENCODED fetches' data in memory.
            # Keeping the data object alive with its bytes makes the id() key safe.
            kept = zlib.compress(data, 1)
            self._encoded[key] = (outcome.data, kept)
            if alike:
                self._encoded[(outcome.collector, id(outcome.data), not fmt)] = (
                    outcome.data, kept)
            while len(self._encoded) > MAX_ENCODED:
                self._encoded.popitem(last=False)
        return data, alike

    def render(
        self, result: ProbeResult, duration: float, accept: str
    ) -> tuple[bytes, str, ProbeResult]:
        """The answer's body and content type, and the result as exposed (a collector whose
        data could not be exposed turned into a failure)."""
        body, content_type, result, _ = self._render(result, duration, accept)
        return body, content_type, result

    def render_with_text(
        self, result: ProbeResult, duration: float, accept: str
    ) -> tuple[bytes, str, ProbeResult, bytes]:
        """``render``, and the same answer in the text format (for the probe history): taken
        from the answer when every part is written alike in both formats, as a network or
        cached probe's usually is, else rendered again."""
        body, content_type, result, alike = self._render(result, duration, accept)
        if content_type.startswith("text/plain"):
            return body, content_type, result, body
        if alike and content_type == OPENMETRICS_CONTENT_TYPE:
            return body, content_type, result, body[: -len(EOF_MARK)]
        return body, content_type, result, self.render(result, duration, "")[0]

    def _render(
        self, result: ProbeResult, duration: float, accept: str
    ) -> tuple[bytes, str, ProbeResult, bool]:
        encoder, content_type = choose_encoder(accept)
        fmt = format_of(encoder, content_type)
        #: Whether the text format would give the same body (without OpenMetrics' EOF): only
        #: when nothing failed, so that a second render would not log anything either.
        alike = fmt is not None
        outcomes: list[Outcome] = []
        parts: list[bytes] = []
        for outcome in result.outcomes:
            exposed = outcome
            if outcome.success and registry.get(outcome.collector) is not None:
                try:
                    data, data_alike = self._data_bytes(outcome, result, encoder, content_type)
                    parts.append(data)
                    alike = alike and data_alike
                except Exception as exc:
                    exposed = self._reject(result.target, result.module, outcome, exc)
                    alike = False
            outcomes.append(exposed)
        if tuple(outcomes) != result.outcomes:
            result = replace(result, outcomes=tuple(outcomes))
        try:
            server = scrub(server_families(result))
            server_bytes, server_alike = _encode(server, encoder, content_type, fmt)
            parts.append(server_bytes)
            alike = alike and server_alike
        except Exception as exc:
            alike = False
            log.warning("cannot expose the version assessment",
                        extra={"fields": {"target": result.target.name,
                                          "reason": describe(exc)}})
        core = scrub(outcome_families(result))
        timing = scrub([probe_duration_family(duration)])
        core_bytes, core_alike = _encode(core, encoder, content_type, fmt)
        timing_bytes, timing_alike = _encode(timing, encoder, content_type, fmt)
        alike = alike and core_alike and timing_alike
        body = b"".join([core_bytes, *parts, timing_bytes])
        if content_type.startswith("application/openmetrics-text"):
            body += EOF_MARK
        return body, content_type, result, alike

    def _reject(
        self, target: TargetConfig, module: ModuleConfig, outcome: Outcome, exc: Exception
    ) -> Outcome:
        reason = f"the collected data could not be exposed: {describe(exc)}"
        log.warning("collector failed",
                    extra={"fields": {"target": target.name, "collector": outcome.collector,
                                      "reason": reason}})
        log.debug("exposition failure details", exc_info=True)
        return self.prober.reject(target, module, outcome, reason)
