"""Issue 16, defect 3, end to end: SIMULATED peers on 127.0.0.1 send values that are valid on the
wire but once broke the exposition (the probe got no HTTP answer, the log said "request
failed"). The exporter process must answer 200 with a parseable exposition every time: the
value cleaned or left out, or the collector failed with its reason in the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from citrix_license_exporter.simulator.scenario import Scenario, parse_scenario

from ..support.exposition import samples, value


def scenario(name: str, **sections: Any) -> Scenario:
    return parse_scenario({"name": name, **sections}, f"test:{name}")


def hostile_fleet() -> list[Scenario]:
    return [
        scenario("pv-grace-max", controller={"sites": [
            {"name": "Max", "grace_active": True, "grace_hours_left": 2147483647}]}),
        scenario("pv-grace-1e20", controller={"sites": [
            {"name": "Huge", "grace_active": True, "grace_hours_left": 1e20}]}),
        # The simulator answers JSON with ASCII escapes: "Branch \ud800" on the wire.
        scenario("pv-surrogate", controller={"sites": [{"name": "Branch \ud800", "id": "s1"}]}),
        # An Id goes into the next request's path: refused with a reason.
        scenario("pv-surrogate-id", controller={"sites": [{"name": "B", "id": "site-\udfff"}]}),
        scenario("pv-long-name", controller={"sites": [{"name": "N" * 200_000}]}),
        scenario("pv-count", winrm={"auth": "basic", "pools": [
            {"pld": "XDT_PLT_UD", "count": 10**400, "in_use": 1}]}),
    ]


def test_values_that_broke_the_exposition(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(*hostile_fleet())
    exporter = make_exporter(fleet.exporter_config(tmp_path, timeout="5s"))

    def probe(name: str) -> str:
        response = exporter.get(f"/probe?target={name}")
        assert response.status_code == 200, (name, response.status_code)
        samples(response.text)  # parses back
        return response.text

    for name in ("pv-grace-max", "pv-grace-1e20"):
        text = probe(name)
        assert value(text, "citrix_license_up") == 1
        assert value(text, "citrix_license_site_supplemental_grace_active") == 1
        assert value(text, "citrix_license_site_supplemental_grace_end_timestamp_seconds") is None
    text = probe("pv-surrogate")
    assert value(text, "citrix_license_site_info", site="Branch \ufffd") == 1
    text = probe("pv-surrogate-id")
    assert value(text, "citrix_license_collector_success", collector="controller") == 0
    line = exporter.wait_for_log(r"target=pv-surrogate-id.*collector failed|collector failed"
                                 r".*target=pv-surrogate-id")
    assert "Items[0].Id: not valid Unicode (a lone UTF-16 surrogate)" in line
    text = probe("pv-long-name")
    (site,) = [lab["site"] for n, lab, _ in samples(text) if n == "citrix_license_site_info"]
    assert site.startswith("NNNN") and len(site) <= 256
    text = probe("pv-count")
    assert value(text, "citrix_license_up") == 0  # winrm is this target's primary collector
    assert value(text, "citrix_license_collector_success", collector="winrm") == 0
    assert value(text, "citrix_license_installed") is None
    line = exporter.wait_for_log(r"collector failed.*target=pv-count|target=pv-count.*"
                                 r"collector failed")
    assert "Count '1000" in line and "is out of range" in line
    assert "request failed" not in exporter.log()
    assert "Traceback" not in exporter.log()
