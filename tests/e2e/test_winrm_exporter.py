"""The exporter process probing SIMULATED License Servers over WinRM: what a user sees on
/probe and in the log, for the healthy cases, the compliance cases and every fault."""

from __future__ import annotations

import calendar
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import parse_scenario
from citrix_license_exporter.simulator.winrm import PASSWORD, WRONG_PASSWORD

from ..support.exporter import ExporterProcess
from ..support.exposition import samples, value

TIMEOUT = 3.0
POOLS = [
    {"pld": "XDT_PLT_UD", "count": 500, "in_use": 412, "overdraft": 50, "sa_days": 200},
    {"pld": "XDT_PLT_UD", "count": 100, "in_use": 7, "overdraft": 10, "sa_days": 20},
]
LICENSES = [{"serial": "SIM-1", "pld": "XDT_PLT_UD", "expires_days": 45},
            {"serial": "SIM-2", "pld": "XDT_PLT_UD", "expires": "permanent"}]


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# A catalog extension relative to today: build 91000 came out six months before "today + 20
# days", so a server on 90000 (two releases behind) has a deadline in 20 days.
TODAY = datetime.now(UTC).date()
RELEASE_91000 = add_months(TODAY + timedelta(days=20), -6)
CATALOG = [
    {"version": "11.17.2.0", "build": 90000, "released": RELEASE_91000 - timedelta(days=60),
     "source": "test fixture"},
    {"version": "11.17.2.0", "build": 91000, "released": RELEASE_91000, "source": "test fixture"},
    {"version": "11.17.2.0", "build": 92000, "released": TODAY - timedelta(days=10),
     "source": "test fixture"},
]


def server(name: str, **winrm: Any) -> dict[str, Any]:
    section = {"version": "11.17.2.0 build 92000", "pools": POOLS, "licenses": LICENSES,
               "uploads": {"days": 30, "failing_days": 0}}
    return {"name": name, "winrm": {**section, **winrm}}


SERVERS = [
    server("ls-current"),
    server("ls-two-behind", version="11.17.2.0 build 90000", auth="basic", scheme="https"),
    server("ls-overdue", version="11.17.2.0 build 46000", auth="ntlm", scheme="https"),
    server("ls-uploads-failing", uploads={"days": 30, "failing_days": 3}),
    server("ls-manual", telemetry="manual", uploads={"days": 20, "failing_days": 20}),
    server("ls-wrong-password", fault="wrong_password"),
    server("ls-service-stopped", services={"Citrix Licensing": "Stopped",
                                           "CtxLSPortSvc": "NotInstalled"}),
    # Overdraft (docs/assumptions.md): WMI Count with the overdraft allowance (the default
    # reading), and a server whose module says Count comes without it. 105 in use of 100 bought.
    server("ls-count-with-overdraft",
           pools=[{"pld": "XDT_PLT_UD", "purchased": 100, "overdraft": 10, "in_use": 105}]),
    server("ls-count-without-overdraft", count_includes_overdraft=False,
           pools=[{"pld": "XDT_PLT_UD", "purchased": 100, "overdraft": 10, "in_use": 105}]),
    server("ls-log-unexpected", uploader_log="2026-11-27 02:00:01 upload OK (new format)\r\n"),
    *(server(f"ls-fault-{f}", fault=f)
      for f in ("access_denied", "namespace_missing", "garbage_xml", "xml_bomb", "huge_answer",
                "huge_chunked", "slow_drip", "reset")),
]


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Fleet, ExporterProcess]]:
    scenarios = [parse_scenario(s, f"test:{s['name']}") for s in SERVERS]
    with tempfile.TemporaryDirectory() as tmp, Fleet(scenarios) as fleet:
        config = fleet.exporter_config(Path(tmp), timeout=f"{TIMEOUT:g}s")
        config["catalog"] = {"releases": CATALOG}
        path = Path(tmp, "config.yml")
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        with ExporterProcess(f"--config.file={path}") as exporter:
            yield fleet, exporter


_PROBES: dict[str, tuple[str, float]] = {}


def probe(setup: tuple[Fleet, ExporterProcess], name: str) -> str:
    """The target's /probe output (each target probed once: WinRM data is cached 15 min)."""
    if name not in _PROBES:
        start = time.monotonic()
        response = setup[1].get(f"/probe?target={name}")
        assert response.status_code == 200
        _PROBES[name] = (response.text, time.monotonic() - start)
    return _PROBES[name][0]


def now_of(setup: tuple[Fleet, ExporterProcess], name: str) -> float:
    from citrix_license_exporter.simulator.winrm import SimulatedWinRM

    sim: SimulatedWinRM = setup[0].server(name).interface(SimulatedWinRM)
    return sim.simulator.state.now


def test_current_build_with_daily_uploads(setup: tuple[Fleet, ExporterProcess]) -> None:
    text = probe(setup, "ls-current")
    now = now_of(setup, "ls-current")
    assert value(text, "citrix_license_up") == 1
    assert value(text, "citrix_license_collector_success", collector="winrm") == 1
    assert value(text, "citrix_license_server_info", build="92000") == 1
    assert value(text, "citrix_license_server_newer_releases") == 0
    assert value(text, "citrix_license_server_update_deadline_timestamp_seconds") is None
    labels = {"feature": "XDT_PLT_UD", "product": "virtual_apps_desktops", "edition": "premium",
              "model": "user_device", "license_type": "Retail"}
    big = datetime.fromtimestamp(now, UTC).date() + timedelta(days=200)
    pool = f"XDT_PLT_UD/Retail/{big.isoformat()}"
    assert value(text, "citrix_license_installed", pool=pool, **labels) == 500
    # Count taken to include the overdraft allowance (the default): 500 - 50 bought.
    assert value(text, "citrix_license_purchased", pool=pool, **labels) == 450
    assert value(text, "citrix_license_in_use", pool=pool) == 412
    assert value(text, "citrix_license_available", pool=pool) == 88
    assert value(text, "citrix_license_overdraft", pool=pool) == 50
    assert value(text, "citrix_license_subscription_advantage_timestamp_seconds",
                 pool=pool) == datetime(big.year, big.month, big.day, tzinfo=UTC).timestamp()
    in_use = [v for n, v in _series(text, "citrix_license_in_use")]
    assert sorted(in_use) == [7, 412]  # two pools of one feature; sum by (feature) = 419
    expiry = value(text, "citrix_license_expiry_timestamp_seconds", serial="SIM-1")
    assert expiry is not None and 44 * 86400 < expiry - now < 46 * 86400
    assert value(text, "citrix_license_expiry_timestamp_seconds", serial="SIM-2") is None
    last_ok = value(text, "citrix_license_telemetry_last_success_timestamp_seconds")
    assert last_ok is not None and 0 < now - last_ok < 86400
    assert value(text, "citrix_license_telemetry_last_attempt_success") == 1
    assert value(text, "citrix_license_telemetry_consecutive_failures") == 0
    assert value(text, "citrix_license_telemetry_pending_bundles") == 0
    assert value(text, "citrix_license_telemetry_oldest_pending_bundle_timestamp_seconds") is None
    assert value(text, "citrix_license_telemetry_manual") == 0
    services = ("Citrix Licensing", "CitrixWebServicesforLicensing", "Citrix_GTLicensingProv",
                "CtxLSPortSvc")
    for service in services:
        assert value(text, "citrix_license_service_up", service=service) == 1
        assert value(text, "citrix_license_service_state", service=service, state="running") == 1
        assert value(text, "citrix_license_service_required", service=service) == 1
    assert {labels["service"] for labels, _ in _series(text, "citrix_license_service_up")} == set(
        services)
    assert "may be up to the collector's cache interval old" in text.lower()


def _series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    from ..support.exposition import samples

    return [(labels, v) for n, labels, v in samples(text) if n == name]


def test_two_releases_behind_with_a_deadline_in_20_days(
    setup: tuple[Fleet, ExporterProcess],
) -> None:
    text = probe(setup, "ls-two-behind")  # Basic authentication over HTTPS
    assert value(text, "citrix_license_up") == 1
    assert value(text, "citrix_license_server_info", build="90000") == 1
    assert value(text, "citrix_license_server_newer_releases") == 2
    deadline = value(text, "citrix_license_server_update_deadline_timestamp_seconds",
                     rule="six_months_after_release")
    assert deadline is not None
    assert 19 * 86400 < deadline - time.time() < 22 * 86400


def test_overdue(setup: tuple[Fleet, ExporterProcess]) -> None:
    text = probe(setup, "ls-overdue")  # NTLM over HTTPS with channel binding
    assert value(text, "citrix_license_up") == 1
    assert value(text, "citrix_license_server_info", build="46000") == 1
    deadline = value(text, "citrix_license_server_update_deadline_timestamp_seconds")
    assert deadline is not None and deadline < time.time()
    assert value(text, "citrix_license_server_las_supported") == 0


def test_uploads_failing_for_three_days(setup: tuple[Fleet, ExporterProcess]) -> None:
    text = probe(setup, "ls-uploads-failing")
    now = now_of(setup, "ls-uploads-failing")
    assert value(text, "citrix_license_telemetry_last_attempt_success") == 0
    assert value(text, "citrix_license_telemetry_consecutive_failures") == 3
    assert value(text, "citrix_license_telemetry_pending_bundles") == 3
    last_ok = value(text, "citrix_license_telemetry_last_success_timestamp_seconds")
    assert last_ok is not None and 3 * 86400 < now - last_ok < 4 * 86400
    oldest = value(text, "citrix_license_telemetry_oldest_pending_bundle_timestamp_seconds")
    assert oldest is not None and 2 * 86400 < now - oldest < 3 * 86400
    last_try = value(text, "citrix_license_telemetry_last_attempt_timestamp_seconds")
    assert last_try is not None and now - last_try < 86400


def test_manual_mode(setup: tuple[Fleet, ExporterProcess]) -> None:
    text = probe(setup, "ls-manual")
    assert value(text, "citrix_license_telemetry_manual") == 1
    assert value(text, "citrix_license_telemetry_last_success_timestamp_seconds") is None
    assert value(text, "citrix_license_telemetry_pending_bundles") == 20
    assert value(text, "citrix_license_up") == 1


def test_wrong_credentials(setup: tuple[Fleet, ExporterProcess]) -> None:
    text = probe(setup, "ls-wrong-password")
    assert value(text, "citrix_license_up") == 0
    assert value(text, "citrix_license_collector_success", collector="winrm") == 0
    assert value(text, "citrix_license_collector_success", collector="probe") == 1
    assert value(text, "citrix_license_installed") is None
    exporter = setup[1]
    line = exporter.wait_for_log(r"target=ls-wrong-password.*NTLM authentication failed "
                                 r"\(HTTP 401\)|NTLM authentication failed \(HTTP 401\).*"
                                 r"target=ls-wrong-password")
    assert "collector=winrm" in line
    log = exporter.log()
    assert PASSWORD not in log
    assert WRONG_PASSWORD not in log


def test_licensing_service_stopped(setup: tuple[Fleet, ExporterProcess]) -> None:
    text = probe(setup, "ls-service-stopped")
    assert value(text, "citrix_license_up") == 1
    assert value(text, "citrix_license_service_up", service="Citrix Licensing") == 0
    assert value(text, "citrix_license_service_state", service="Citrix Licensing",
                 state="stopped") == 1
    assert value(text, "citrix_license_service_state", service="Citrix Licensing",
                 state="not_installed") == 0
    # Not installed is told apart from installed but not running: no service_up series.
    assert value(text, "citrix_license_service_up", service="CtxLSPortSvc") is None
    assert value(text, "citrix_license_service_state", service="CtxLSPortSvc",
                 state="not_installed") == 1
    assert value(text, "citrix_license_service_state", service="CtxLSPortSvc",
                 state="stopped") == 0
    assert value(text, "citrix_license_service_required", service="CtxLSPortSvc") == 1
    assert value(text, "citrix_license_service_up", service="Citrix_GTLicensingProv") == 1


@pytest.mark.parametrize(("name", "installed"), [("ls-count-with-overdraft", 110),
                                                 ("ls-count-without-overdraft", 100)])
def test_purchased_whichever_way_count_is_reported(setup: tuple[Fleet, ExporterProcess],
                                                    name: str, installed: int) -> None:
    text = probe(setup, name)
    assert value(text, "citrix_license_installed", feature="XDT_PLT_UD") == installed
    assert value(text, "citrix_license_overdraft", feature="XDT_PLT_UD") == 10
    assert value(text, "citrix_license_purchased", feature="XDT_PLT_UD") == 100
    assert value(text, "citrix_license_in_use", feature="XDT_PLT_UD") == 105


FAULTS = {
    "ls-log-unexpected": "uploader log: no <CtxUploaderResult> block",
    "ls-fault-access_denied": "access denied while reading WMI Citrix_GT_License_Pool",
    "ls-fault-namespace_missing": "WMI namespace root\\\\\\\\CitrixLicensing not found",
    "ls-fault-garbage_xml": "unreadable WinRM answer",
    "ls-fault-xml_bomb": "unreadable WinRM answer: XML answer contains a DTD or entities",
    "ls-fault-huge_answer": "WinRM answer of 52428800 bytes exceeds max_response_bytes",
    "ls-fault-huge_chunked": "WinRM answer exceeds max_response_bytes",
    "ls-fault-slow_drip": "probe deadline",
    "ls-fault-reset": "connection lost while reading the answer",
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_ends_as_a_failed_collector(setup: tuple[Fleet, ExporterProcess],
                                          name: str) -> None:
    text = probe(setup, name)
    assert value(text, "citrix_license_up") == 0
    assert value(text, "citrix_license_collector_success", collector="winrm") == 0
    assert value(text, "citrix_license_collector_success", collector="probe") == 1
    # Never a hung probe: the collector ended with a reason of one kind (the slow drip at the
    # deadline, every other fault on the fault itself).
    kinds = [lab["kind"] for n, lab, v in samples(text)
             if n == "citrix_license_collector_failure" and lab["collector"] == "winrm" and v]
    assert len(kinds) == 1, (name, kinds)
    assert (kinds[0] == "timeout") == (name == "ls-fault-slow_drip"), (name, kinds)
    setup[1].wait_for_log(rf"target={name}\b.*{FAULTS[name]}|{FAULTS[name]}.*target={name}\b")
    assert setup[1].proc.poll() is None  # never a crash


def test_exporter_still_serves_after_all_faults(setup: tuple[Fleet, ExporterProcess]) -> None:
    for name in FAULTS:
        probe(setup, name)
    assert setup[1].get("/-/healthy").status_code == 200
    assert value(probe(setup, "ls-current"), "citrix_license_up") == 1


@pytest.mark.parametrize("name", [s["name"] for s in SERVERS])
def test_promtool_accepts_every_scenario(setup: tuple[Fleet, ExporterProcess], promtool: str,
                                         name: str) -> None:
    result = subprocess.run([promtool, "check", "metrics"], input=probe(setup, name),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
