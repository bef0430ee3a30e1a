from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import Scenario, parse_scenario

from .support.exporter import ExporterProcess


def scenario(name: str, **network: object) -> Scenario:
    return parse_scenario({"name": name, "network": network}, f"test:{name}")


@pytest.fixture
def make_exporter(tmp_path: Path) -> Iterator[object]:
    """Start exporters on a config dict (or path); all are stopped at teardown."""
    started: list[ExporterProcess] = []

    def start(config: dict[str, object] | Path, *args: str,
              env: dict[str, str] | None = None) -> ExporterProcess:
        if isinstance(config, dict):
            path = tmp_path / "config.yml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
        else:
            path = config
        exporter = ExporterProcess(f"--config.file={path}", *args, env=env)
        started.append(exporter)
        exporter.wait_ready()
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


@pytest.fixture
def fleet_of() -> Iterator[object]:
    fleets: list[Fleet] = []

    def start(*scenarios: Scenario) -> Fleet:
        fleet = Fleet(scenarios)
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.close()


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


def require_tool(name: str) -> str:
    """The tool's path; in CI (CI=true) a missing tool fails the test instead of skipping it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (.ci/run installs it from Debian packages)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
