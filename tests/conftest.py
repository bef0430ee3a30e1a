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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a skip is a failure: every skip here means a tool or package is missing,
    which .ci/run must install, so a green CI never hides untested parts."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (install what it needs in .ci/run): {reason}"
