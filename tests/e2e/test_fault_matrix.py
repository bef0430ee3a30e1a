"""Every fault every simulator can inject, against one running exporter at once.

For each faulty target: the probe answers 200 within the deadline, the target's ``up`` (network
faults) or the failing collector's ``citrix_license_collector_success`` goes to 0, and the log
says why. Meanwhile the healthy targets' answers do not change (durations and timestamps
aside), and the exporter stays alive and healthy.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from citrix_license_exporter.simulator import https as sim_https
from citrix_license_exporter.simulator import winrm as sim_winrm
from citrix_license_exporter.simulator.cloud import SimulatedCloud
from citrix_license_exporter.simulator.controller import SimulatedController
from citrix_license_exporter.simulator.scenario import FAULTS as NETWORK_FAULTS
from citrix_license_exporter.simulator.scenario import Scenario, parse_scenario

from ..support.exposition import samples, value

SCRAPE_TIMEOUT = 4.0  # Prometheus' header: the probe deadline is 3.5 s
POOL = {"pld": "XDT_PLT_UD", "count": 10, "in_use": 2, "overdraft": 1, "license_type": "Retail",
        "sa_days": 100}
LICENSE = {"serial": "SIM-1", "pld": "XDT_PLT_UD", "expires_days": 100}
#: Answers to collector faults the log must explain (a word of the reason per fault).
WINRM_REASONS = {
    "wrong_password": "authentication failed",
    "access_denied": "access denied",
    "namespace_missing": "not found",
    "garbage_xml": "unreadable WinRM answer",
    "huge_answer": "exceeds max_response_bytes",
    "huge_chunked": "exceeds max_response_bytes",
    "slow_drip": "deadline",
    "reset": "connection",
    "xml_bomb": "DTD or entities",
    "bad_log": "uploader log",
}
HTTP_REASONS = {
    "unauthorized": "401", "forbidden": "403", "not_found": "404", "error": "500",
    "rate_limit": "429", "unavailable": "503", "malformed": "invalid JSON", "slow": "",
}


@dataclass(frozen=True)
class Case:
    target: str
    source: str  # network, winrm, controller, cloud
    fault: str


def scenario(name: str, **sections: Any) -> Scenario:
    return parse_scenario({"name": name, **sections}, f"test:{name}")


def winrm_section(fault: str) -> dict[str, Any]:
    section: dict[str, Any] = {"auth": "ntlm", "scheme": "http", "pools": [POOL],
                               "licenses": [LICENSE], "uploads": {"days": 3}}
    if fault == "bad_log":
        section["uploader_log"] = "2026-05-01 uploader started\nno result block in this format\n"
    elif fault != "none":
        section["fault"] = fault
    return section


def build_fleet() -> tuple[list[Scenario], list[Case], list[str]]:
    scenarios: list[Scenario] = []
    cases: list[Case] = []
    healthy = ["ok-net", "ok-winrm", "ok-controller", "ok-cloud"]
    scenarios += [
        scenario("ok-net"),
        scenario("ok-winrm", winrm=winrm_section("none")),
        scenario("ok-controller", controller={}),
        scenario("ok-cloud", cloud={}),
    ]
    for fault in NETWORK_FAULTS:
        if fault == "ok":
            continue
        name = f"net-{fault}"
        scenarios.append(scenario(name, network={
            "ports": dict.fromkeys(("license_manager", "vendor_daemon", "web_services"), fault),
            "slow_seconds": 60,
        }))
        cases.append(Case(name, "network", fault))
    for fault in [*(f for f in sim_winrm.FAULTS if f != "none"), "bad_log"]:
        name = f"winrm-{fault}".replace("_", "-")
        scenarios.append(scenario(name, winrm=winrm_section(fault)))
        cases.append(Case(name, "winrm", fault))
    for fault in (f for f in sim_https.FAULT_KINDS if f != "none"):
        name = f"ddc-{fault}".replace("_", "-")
        scenarios.append(scenario(name, controller={"fault": fault}))
        cases.append(Case(name, "controller", fault))
        name = f"cloud-{fault}".replace("_", "-")
        # Its own customer, so the fault hits this simulated Cloud only.
        scenarios.append(scenario(name, cloud={"fault": fault, "customer_id": f"c-{fault}"}))
        cases.append(Case(name, "cloud", fault))
    return scenarios, cases, healthy


VOLATILE = re.compile(r"duration|timestamp|_age_|_seconds_ago")


def stable(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """The samples of an answer without durations and timestamps."""
    return sorted(
        (name, tuple(sorted(labels.items())), val)
        for name, labels, val in samples(text)
        if not VOLATILE.search(name)
    )


def probe(client: httpx.Client, url: str, target: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = client.get(
        f"{url}/probe", params={"target": target},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)},
    )
    return response, time.monotonic() - start


@pytest.mark.timeout(120)
def test_every_fault_of_every_source(fleet_of, make_exporter, tmp_path: Path) -> None:
    scenarios, cases, healthy = build_fleet()
    fleet = fleet_of(*scenarios)
    for kind in (SimulatedController, SimulatedCloud):
        for server in fleet.servers:
            if server.name.endswith("-slow") and any(
                isinstance(i, kind) for i in server.interfaces
            ):
                # Slower than any deadline here, so the outcome does not depend on timing.
                simulator = server.interface(kind).simulator
                simulator.clear_faults()
                simulator.set_fault("slow", slow_seconds=60)
    config = fleet.write_exporter_config(tmp_path / "exporter.yml", timeout="10s")
    exporter = make_exporter(config)
    url = exporter.url
    with httpx.Client(timeout=30) as client:
        before = {}
        for name in healthy:
            response, _ = probe(client, url, name)
            assert value(response.text, "citrix_license_up") == 1, (name, response.text)
            before[name] = stable(response.text)

        # Every fault at once, while the healthy targets keep being scraped.
        results: dict[str, tuple[httpx.Response, float]] = {}
        during: list[tuple[str, httpx.Response, float]] = []
        stop = threading.Event()

        def scrape_healthy() -> None:
            while not stop.is_set():
                for name in healthy:
                    response, took = probe(client, url, name)
                    during.append((name, response, took))

        watcher = threading.Thread(target=scrape_healthy)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=len(cases)) as pool:
                futures = {c.target: pool.submit(probe, client, url, c.target) for c in cases}
                results = {name: f.result() for name, f in futures.items()}
        finally:
            stop.set()
            watcher.join()

        problems = []
        for case in cases:
            response, _ = results[case.target]
            text = response.text
            if response.status_code != 200:
                problems.append(f"{case}: HTTP {response.status_code}")
                continue
            # Nothing waited for the 60 s "slow" fault or the endless drip: the answer came
            # (the test's timeout is the guard), and a failing collector failed with a kind
            # (the deadline or the fault itself), checked below. No wall-clock bound: 34 probes
            # at once on a loaded 2-core machine take what they take.
            if case.source == "network":
                if case.fault in ("reset", "slow"):
                    # The ports accept (TCP completes), then reset or stall: reachable, but the
                    # Web Services certificate cannot be read.
                    expiry = "citrix_license_web_certificate_expiry_timestamp_seconds"
                    metric_ok = value(text, expiry) is None
                else:
                    metric_ok = value(text, "citrix_license_up") == 0
            else:
                metric_ok = value(text, "citrix_license_collector_success",
                                  collector=case.source) == 0
            if not metric_ok:
                problems.append(f"{case}: the failure is not visible in the metrics")
            collector = "probe" if case.source == "network" else case.source
            if value(text, "citrix_license_collector_success", collector=collector) == 0:
                kinds = [lab["kind"] for n, lab, v in samples(text)
                         if n == "citrix_license_collector_failure"
                         and lab["collector"] == collector and v == 1]
                if len(kinds) != 1:
                    problems.append(f"{case}: failure kinds {kinds}")
        assert not problems, "\n".join(problems)

        unexplained = []
        for case in cases:
            what = rf"collector (failed|timed out).*target={re.escape(case.target)}\b"
            if case.source == "network" and case.fault in ("reset", "slow"):
                what = rf"web services certificate not read.*target={re.escape(case.target)}\b"
            elif case.source == "cloud":
                # One list per Citrix Cloud customer: its failure is logged once, by customer.
                # (A fetch outliving the deadline is reported by the probe for the target.)
                what = (rf"License Server list unavailable.*customer_id=c-{case.fault}\b|"
                        rf"{what}")
            reasons = WINRM_REASONS if case.source == "winrm" else HTTP_REASONS
            line = exporter.wait_for_log(what, timeout=5)
            word = reasons.get(case.fault, "") if case.source != "network" else ""
            if "timed out" not in line and word.lower() not in line.lower():
                unexplained.append(f"{case}: {line}")
        assert not unexplained, "\n".join(unexplained)

        # The healthy targets: unchanged while every fault was being probed (one that waited
        # for a faulty target would have been cut by its own deadline: up 0).
        for name, response, _ in during:
            assert response.status_code == 200
            assert value(response.text, "citrix_license_up") == 1, name
        assert {name for name, _, _ in during} == set(healthy)
        for name in healthy:
            response, _ = probe(client, url, name)
            assert stable(response.text) == before[name], name

        assert exporter.proc.poll() is None, "the exporter died"
        assert client.get(f"{url}/-/healthy").status_code == 200
        metrics = client.get(f"{url}/metrics").text
        failures = sum(v for n, lab, v in samples(metrics)
                       if n == "citrix_license_exporter_probes_total"
                       and lab.get("result") == "failure")
        assert failures >= len([c for c in cases if c.source == "network"
                                and c.fault not in ("reset", "slow")])
    assert not [line for line in exporter.lines if "Traceback" in line], exporter.log()
