"""``citrix_license_collector_failure{collector, kind}``: one case per kind, each from a fault of
the simulators (or, for ``dns`` and ``tls``, from what the exporter is pointed at), against one
real exporter process. The kind must be the one series at 1 for that collector, the log line
must name it, and ``/probe?debug=true`` must carry it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from citrix_license_exporter.collectors.base import FailureKind
from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import parse_scenario

from ..support.exporter import ExporterProcess
from ..support.exposition import samples, value

POOL = {"pld": "XDT_PLT_UD", "count": 10, "in_use": 2, "overdraft": 1, "license_type": "Retail",
        "sa_days": 100}
ALL_PORTS = ("license_manager", "vendor_daemon", "web_services")


@dataclass(frozen=True)
class Case:
    kind: FailureKind
    target: str
    collector: str
    scenario: dict[str, Any] | None  # None: a target without a simulator (dns)


def winrm(fault: str) -> dict[str, Any]:
    return {"auth": "ntlm", "scheme": "http", "pools": [POOL], "uploads": {"days": 2},
            "fault": fault}


CASES = [
    Case(FailureKind.TIMEOUT, "kind-timeout", "probe",
         {"network": {"ports": dict.fromkeys(ALL_PORTS, "hang")}}),
    Case(FailureKind.REFUSED, "kind-refused", "probe",
         {"network": {"ports": dict.fromkeys(ALL_PORTS, "refuse")}}),
    Case(FailureKind.DNS, "kind-dns", "probe", None),
    # The simulated controller's certificate, with a module that does not trust its CA.
    Case(FailureKind.TLS, "kind-tls", "controller", {"controller": {}}),
    Case(FailureKind.AUTH, "kind-auth", "winrm", {"winrm": winrm("wrong_password")}),
    Case(FailureKind.PROTOCOL, "kind-protocol", "controller", {"controller": {"fault": "error"}}),
    Case(FailureKind.LIMIT, "kind-limit", "winrm", {"winrm": winrm("huge_answer")}),
    Case(FailureKind.PARSE, "kind-parse", "winrm", {"winrm": winrm("garbage_xml")}),
]


def test_every_kind_but_internal_has_a_case() -> None:
    # internal is an exporter defect: no peer can cause it (tests/unit/test_probe_log.py).
    # The Kerberos kinds need a real KDC: tests/e2e/test_winrm_kerberos.py has them.
    kerberos = {FailureKind.KDC_UNREACHABLE, FailureKind.CLOCK_SKEW}
    assert {c.kind for c in CASES} == set(FailureKind) - {FailureKind.INTERNAL} - kerberos


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    tmp = tmp_path_factory.mktemp("kinds")
    scenarios = [parse_scenario({"name": c.target, **c.scenario}, f"test:{c.target}")
                 for c in CASES if c.scenario is not None]
    with Fleet(scenarios) as fleet:
        path = fleet.write_exporter_config(tmp / "exporter.yml", timeout="10s")
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        targets = {t["name"]: t for t in config["targets"]}
        tls = targets["kind-tls"]
        untrusted = dict(config["modules"][tls["module"]])
        untrusted["controller"] = {**untrusted["controller"], "tls": {}}  # system CAs only
        config["modules"]["controller-untrusted"] = untrusted
        tls["module"] = "controller-untrusted"
        # RFC 6761: .invalid never resolves.
        config["targets"].append({"name": "kind-dns", "address": "ls-retired.example.invalid",
                                  "module": "network"})
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with ExporterProcess(f"--config.file={path}") as process:
            yield process


def probe(exporter: ExporterProcess, target: str, **params: str) -> httpx.Response:
    response = exporter.get(
        "/probe", params={"target": target, **params},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "4"},
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.kind.value)
def test_failure_kind(exporter: ExporterProcess, case: Case) -> None:
    text = probe(exporter, case.target).text
    assert value(text, "citrix_license_collector_success", collector=case.collector) == 0
    kinds = {lab["kind"]: v for n, lab, v in samples(text)
             if n == "citrix_license_collector_failure" and lab["collector"] == case.collector}
    assert kinds == {k.value: 1.0 if k is case.kind else 0.0 for k in FailureKind}, text
    # The other collectors of the module report no failure kind.
    others = [(lab, v) for n, lab, v in samples(text)
              if n == "citrix_license_collector_failure" and lab["collector"] != case.collector
              and v != 0]
    assert not others
    line = exporter.wait_for_log(
        rf"collector failed.*target={re.escape(case.target)}\b.*collector={case.collector}\b")
    assert f"kind={case.kind.value}" in line
    debug = probe(exporter, case.target, debug="true").text
    assert (f'citrix_license_collector_failure{{collector="{case.collector}",'
            f'kind="{case.kind.value}"}} 1.0') in debug, debug


def test_success_has_no_failure_kind(exporter: ExporterProcess) -> None:
    # kind-tls' network probe succeeds: every kind of it is 0.
    text = probe(exporter, "kind-tls").text
    assert value(text, "citrix_license_collector_success", collector="probe") == 1
    assert {v for n, lab, v in samples(text)
            if n == "citrix_license_collector_failure" and lab["collector"] == "probe"} == {0.0}
