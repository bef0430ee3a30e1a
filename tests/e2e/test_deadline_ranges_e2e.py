"""End to end: deadline ranges through the real exporter and the real Prometheus 2.42 with the
bundled rules (issue 14 items 3 and 8).

Three SIMULATED License Servers, each in a band the shared alerting stack cannot show with the
bundled catalog on every date the tests may run on:

- ``range-maybe-late`` on 53100, with the configuration overriding 56200's exact release day by
  bounds around "six months ago" (as if Citrix had published no day): past the earliest
  possible deadline, not the latest: ``CitrixLicenseUpdateOverdue`` warning;
- ``range-late`` on 52100: 53100 was out by 2026-03-16 (LAS docs, community guides), so the
  server is late even on the latest possible day (2026-09-16): critical;
- ``range-offline`` on 52100 with ``telemetry: manual``: held to 53100 by 2026-04-14
  (CTX695107 "before April 15, 2026"; LAS docs of build 52100: offline activation needs
  53100), rule ``minimum_build_53100_offline``.

The clocks are the shared stack's (rules' `for` divided by 60), the alerts are read from
Prometheus's API, and the dates in the descriptions are checked against `catalog show`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.simulator.fleet import Fleet

from ..support.exporter import ExporterProcess
from ..support.prometheus import Prometheus, wait_until
from ..support.stack import (
    CACHE_INTERVAL,
    _scenario,
    bundled_rule_files,
    fast_rules,
    prometheus_config,
    winrm,
)

pytestmark = pytest.mark.timeout(180)

TODAY = dt.datetime.now(dt.UTC).date()
SIX_MONTHS_AGO = dt.date(TODAY.year - (TODAY.month <= 6), (TODAY.month - 7) % 12 + 1, 1)
AFTER = SIX_MONTHS_AGO - dt.timedelta(days=20)
BY = SIX_MONTHS_AGO + dt.timedelta(days=40)


def add_six_months(day: dt.date) -> dt.date:
    from citrix_license_exporter.citrix.policy import add_months

    return add_months(day, 6)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ranges")
    scenarios = [
        _scenario("range-maybe-late", "53100; 56200 known only within bounds.",
                  winrm=winrm("11.17.2.0 build 53100")),
        _scenario("range-late", "52100, late even on the latest possible day.",
                  winrm=winrm("11.17.2.0 build 52100")),
        _scenario("range-offline", "52100, reports telemetry by hand (offline).",
                  winrm=winrm("11.17.2.0 build 52100")),
    ]
    with Fleet(scenarios) as fleet:
        config = fleet.exporter_config(root, timeout="5s")
        for module in config["modules"].values():
            for section in module.values():
                if isinstance(section, dict) and "cache_interval" in section:
                    section["cache_interval"] = CACHE_INTERVAL
        for target in config["targets"]:
            if target["name"] == "range-offline":
                target["telemetry"] = "manual"
        config["catalog"] = {"releases": [{
            "version": "11.17.2.0", "build": 56200, "released_after": AFTER.isoformat(),
            "released_by": BY.isoformat(),
            "source": "test: as if only bounds of the release day were known",
        }]}  # fmt: skip
        config_path = root / "exporter.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        exporter = ExporterProcess(f"--config.file={config_path}")
        prometheus: Prometheus | None = None
        try:
            address = exporter.wait_ready().removeprefix("http://")
            rules = root / "rules"
            rules.mkdir()
            for path in bundled_rule_files():
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
                (rules / path.name).write_text(yaml.safe_dump(fast_rules(data)), "utf-8")
            prom = prometheus_config([s.name for s in scenarios], address, "127.0.0.1:9",
                                     str(rules / "*.yml"))
            prom.pop("alerting")
            (root / "prometheus.yml").write_text(yaml.safe_dump(prom), encoding="utf-8")
            prometheus = Prometheus(root / "prometheus.yml", root / "data", root / "prom.log")
            yield {"prometheus": prometheus, "config": config_path, "exporter": exporter}
        finally:
            if prometheus is not None:
                prometheus.stop()
            exporter.stop()


def firing(prometheus: Prometheus) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (a["labels"]["alertname"], a["labels"]["instance"]): a
        for a in prometheus.alerts()
        if a["state"] == "firing" and a["labels"]["alertname"].startswith("CitrixLicenseUpdate")
    }


def test_each_band_fires_with_the_range_in_words(stack: dict[str, Any]) -> None:
    prometheus: Prometheus = stack["prometheus"]
    wanted = {
        ("CitrixLicenseUpdateOverdue", "range-maybe-late"): ("warning", "six_months_after_release"),
        ("CitrixLicenseUpdateOverdue", "range-late"): ("critical", "six_months_after_release"),
        ("CitrixLicenseUpdateOverdue", "range-offline"): ("critical",
                                                          "minimum_build_53100_offline"),
    }
    wait_until(lambda: set(wanted) <= set(firing(prometheus)), 90,
               f"the deadline alerts {sorted(wanted)}",
               explain=lambda: str(sorted(firing(prometheus))))
    alerts = firing(prometheus)
    assert set(alerts) == set(wanted)  # nothing else about deadlines, no second band
    for key, (severity, rule) in wanted.items():
        labels = alerts[key]["labels"]
        assert (labels["severity"], labels["rule"]) == (severity, rule), key

    earliest = add_six_months(AFTER).isoformat()
    latest = add_six_months(BY).isoformat()
    maybe = alerts[("CitrixLicenseUpdateOverdue", "range-maybe-late")]["annotations"]
    assert f"update between {earliest} and {latest}" in maybe["description"]
    assert f"certainly late after {latest}" in maybe["description"]
    late = alerts[("CitrixLicenseUpdateOverdue", "range-late")]["annotations"]
    assert "update between 2025-06-03 and 2026-09-16" in late["description"]
    offline = alerts[("CitrixLicenseUpdateOverdue", "range-offline")]["annotations"]
    assert "update between 2025-06-03 and 2026-04-14" in offline["description"]

    words = {
        s["metric"]["instance"]: s["metric"]["update"]
        for s in prometheus.query("citrix_license_server_update_deadline_info")
    }
    assert words["range-maybe-late"] == f"update between {earliest} and {latest}"
    assert words["range-late"] == "update between 2025-06-03 and 2026-09-16"
    assert words["range-offline"] == "update between 2025-06-03 and 2026-04-14"


def test_catalog_show_agrees_with_the_alerts(stack: dict[str, Any], tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def show(*args: str) -> dict[int, dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-m", "citrix_license_exporter.cli", "catalog", "show",
             "--config.file", str(stack["config"]), "--output", "json", *args],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        return {b["build"]: b for b in json.loads(out)["builds"]}

    records = show("--build", "53100", "--build", "52100")
    assert records[53100]["update_by_earliest"] == add_six_months(AFTER).isoformat()
    assert records[53100]["update_by_latest"] == add_six_months(BY).isoformat()
    assert (records[52100]["update_by_earliest"], records[52100]["update_by_latest"]) == (
        "2025-06-03", "2026-09-16",
    )
    offline = show("--build", "52100", "--telemetry", "manual")[52100]
    assert (offline["rule"], offline["update_by_latest"]) == (
        "minimum_build_53100_offline", "2026-04-14",
    )
