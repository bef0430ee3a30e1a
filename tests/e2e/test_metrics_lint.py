"""`promtool check metrics` on everything the exporter exposes for every bundled scenario."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import bundled_scenarios

from ..support.exporter import ExporterProcess

SCENARIOS = bundled_scenarios()


@pytest.fixture(scope="module")
def demo_exporter() -> Iterator[ExporterProcess]:
    with tempfile.TemporaryDirectory() as tmp, Fleet(SCENARIOS) as fleet:
        config = fleet.write_exporter_config(Path(tmp, "config.yml"))
        with ExporterProcess(f"--config.file={config}") as exporter:
            yield exporter


def lint(promtool: str, text: str) -> str:
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    return (result.stdout + result.stderr).strip() if result.returncode else ""


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_probe_output_passes_promtool(promtool: str, demo_exporter: ExporterProcess,
                                      name: str) -> None:
    response = demo_exporter.get(f"/probe?target={name}")
    assert response.status_code == 200
    assert "citrix_license_up" in response.text
    assert lint(promtool, response.text) == ""


def test_own_metrics_pass_promtool(promtool: str, demo_exporter: ExporterProcess) -> None:
    response = demo_exporter.get("/metrics")
    assert "citrix_license_exporter_build_info" in response.text
    assert lint(promtool, response.text) == ""


def test_promtool_really_lints(promtool: str) -> None:
    # Guards the test above: promtool must flag a badly named metric.
    bad = "# HELP x_days Bad.\n# TYPE x_days gauge\nx_days 1\n"
    assert "x_days" in lint(promtool, bad)
