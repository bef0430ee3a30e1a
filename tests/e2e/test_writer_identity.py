"""The exposition writer (writer.py) writes exactly what prometheus_client writes: for every
demo scenario's probe answer, in the text format and in OpenMetrics, and for families with
every character that needs escaping."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from citrix_license_exporter.app import ExporterState
from citrix_license_exporter.collectors.base import Deadline
from citrix_license_exporter.exposition import ProbeRenderer
from citrix_license_exporter.metrics import probe_duration_family, probe_families
from citrix_license_exporter.probe import Prober, ProbeResult
from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import bundled_scenarios
from citrix_license_exporter.writer import write

#: What Prometheus 2.42 sends, and what a client without preference gets.
ACCEPTS = {
    "openmetrics": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                   "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "text": "",
}


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def reference(families: list[Metric], accept: str) -> bytes:
    encoder, _ = choose_encoder(accept)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return encoder(registry)


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory: pytest.TempPathFactory) -> list[ProbeResult]:
    folder: Path = tmp_path_factory.mktemp("demo")
    with Fleet(bundled_scenarios()) as fleet:
        state = ExporterState.load(str(fleet.write_exporter_config(folder / "demo.yml")))

        async def probe_all() -> list[ProbeResult]:
            config = state.config
            return await asyncio.gather(*(
                state.prober.probe(t, config.modules[t.module], Deadline.after(5),
                                   state.catalog, config.policy)
                for t in config.targets
            ))

        results = asyncio.run(probe_all())
        state.prober.close()
    assert len(results) >= 5
    return results


@pytest.mark.parametrize("fmt", sorted(ACCEPTS))
def test_every_demo_answer_is_byte_identical(demo_results: list[ProbeResult], fmt: str) -> None:
    accept = ACCEPTS[fmt]
    for result in demo_results:
        renderer = ProbeRenderer(Prober({}))
        body, _, exposed = renderer.render(result, 0.25, accept)
        assert exposed == result, result.target.name  # nothing failed to expose
        expected = reference([*probe_families(result), probe_duration_family(0.25)], accept)
        assert body == expected, result.target.name
        # Twice: the second answer comes from the bytes cached for the fetch.
        again, _, _ = renderer.render(result, 0.25, accept)
        assert again == expected


def test_the_text_kept_for_the_history_is_the_text_format(
    demo_results: list[ProbeResult],
) -> None:
    """The probe history keeps each answer in the text format; for an OpenMetrics scrape it is
    taken from the answer where both formats agree: it must equal a text render."""
    for result in demo_results:
        body, _, exposed, plain = ProbeRenderer(Prober({})).render_with_text(
            result, 0.25, ACCEPTS["openmetrics"])
        assert body == reference([*probe_families(result), probe_duration_family(0.25)],
                                 ACCEPTS["openmetrics"])
        text, _, _ = ProbeRenderer(Prober({})).render(exposed, 0.25, "")
        assert plain == text, result.target.name


def odd_families() -> list[Metric]:
    plain = GaugeMetricFamily("citrix_license_test", 'Doc with "quotes", a \\ and a\nnewline.')
    plain.add_metric([], 1.0)
    labelled = GaugeMetricFamily("citrix_license_test_labels", "Labels.", labels=["b", "a"])
    for text in ('q"uote', "back\\slash", "new\nline", "ünïcödé ✓", "", "{}=,"):
        labelled.add_metric([text, "x"], 2.5)
    values = GaugeMetricFamily("citrix_license_test_values", "Values.", labels=["v"])
    for i, number in enumerate((0.0, -0.0, 1e-300, 123456789.0, 1e22, 2**63, -7.5, math.inf,
                                -math.inf, math.nan, 1700000000.123)):
        values.add_metric([str(i)], number)
    empty = GaugeMetricFamily("citrix_license_test_empty", "No samples.")
    colon = GaugeMetricFamily("citrix:license_test", "A name with a colon (not written fast).")
    colon.add_metric([], 3.0)
    return [plain, labelled, values, empty, colon]


@pytest.mark.parametrize("fmt", sorted(ACCEPTS))
def test_escaping_and_numbers_are_byte_identical(fmt: str) -> None:
    accept = ACCEPTS[fmt]
    expected = reference(odd_families(), accept).decode("utf-8")
    written = write(odd_families(), openmetrics=fmt == "openmetrics")
    if fmt == "openmetrics":
        written += "# EOF\n"
    assert written == expected
