"""The ``controller`` and ``cloud`` collectors end to end: the exporter process against the
SIMULATED Delivery Controller and Citrix Cloud over real HTTPS on 127.0.0.1, TLS verification
on (the simulators' CA file is in the module config)."""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.citrix.controller_api import LICENSE_SERVER_STATUSES
from citrix_license_exporter.simulator import cloud as sim_cloud
from citrix_license_exporter.simulator import controller as sim_controller
from citrix_license_exporter.simulator.cloud import SimulatedCloud
from citrix_license_exporter.simulator.controller import SimulatedController
from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import Scenario, parse_scenario

from ..support.exporter import ExporterProcess
from ..support.exposition import samples, value

SUCCESS = "citrix_license_collector_success"


def scenario(name: str, **sections: Any) -> Scenario:
    return parse_scenario({"name": name, **sections}, f"test:{name}")


def site(name: str = "Production", **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def lint(promtool: str, text: str) -> str:
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    return (result.stdout + result.stderr).strip() if result.returncode else ""


def controller_of(fleet: Fleet, name: str) -> sim_controller.ControllerSimulator:
    sim: sim_controller.ControllerSimulator = fleet.server(name).interface(
        SimulatedController).simulator
    return sim


def cloud_of(fleet: Fleet, name: str) -> sim_cloud.CloudSimulator:
    sim: sim_cloud.CloudSimulator = fleet.server(name).interface(SimulatedCloud).simulator
    return sim


def start(
    fleet: Fleet,
    make_exporter: Any,
    tmp_path: Path,
    *,
    timeout: str = "5s",
    controller: dict[str, Any] | None = None,
    cloud: dict[str, Any] | None = None,
    edit: Any = None,
) -> ExporterProcess:
    config = fleet.exporter_config(tmp_path, timeout=timeout)
    for module in config["modules"].values():
        if "controller" in module:
            module["controller"].update(controller or {})
        if "cloud" in module:
            module["cloud"].update(cloud or {})
    if edit is not None:
        edit(config)
    exporter: ExporterProcess = make_exporter(config, "--log.level=debug")
    return exporter


def assert_no_secrets(exporter: ExporterProcess, fleet: Fleet) -> None:
    """Neither a password, a client secret, their Basic encoding nor any token ever issued
    shows in the exporter's log (debug level)."""
    log = exporter.log()
    basic = base64.b64encode(
        f"{sim_controller.USERNAME}:{sim_controller.PASSWORD}".encode()
    ).decode()
    for secret in (sim_controller.PASSWORD, sim_cloud.CLIENT_SECRET, basic):
        assert secret not in log
    for server in fleet.servers:
        for interface in server.interfaces:
            for token in getattr(interface.simulator, "issued", []):
                assert token not in log


def probe(exporter: ExporterProcess, name: str, **headers: str) -> str:
    response = exporter.get(f"/probe?target={name}", headers=headers)
    assert response.status_code == 200
    return response.text


# ---------------------------------------------------------------------------------------------
# Delivery Controller: every state


STATE_SCENARIOS = [
    scenario(f"site-{status.lower()}", controller={"sites": [site(
        f"Site-{status}", license_server_status=status)]})
    for status in LICENSE_SERVER_STATUSES
]


@pytest.fixture(scope="module")
def states() -> Iterator[tuple[Fleet, ExporterProcess]]:
    extra = [
        scenario("site-grace", controller={"sites": [site(
            "Branch", license_server_status="Compatible", grace_active=True,
            grace_hours_left=200, licensing_model="Concurrent", peak_concurrent_users=560,
            unique_users=1210, licensed_sessions_active=548,
            alerts=[{"level": "Alarm"}, {"level": "Alert"}, {"level": "Alert"},
                    {"level": "Info"}, {"level": "Whatever"}])]}),
        scenario("site-oob", controller={"sites": [site(
            "Lab", license_server_status="NoInventory", out_of_box_grace=True,
            unique_users=None, licensed_sessions_active=None)]}),
        scenario("site-two", controller={"site": "Second", "sites": [
            site("First", license_server_status="Compatible"),
            site("Second", license_server_status="LasCompatible")]}),
        scenario("site-all", controller={"sites": [
            site("Same", license_server_status="Compatible"),
            site("Same", license_server_status="Incompatible")]}),
        scenario("site-old-controller", controller={"overview": False, "sites": [site("Old")]}),
    ]
    with tempfile.TemporaryDirectory() as tmp, Fleet([*STATE_SCENARIOS, *extra]) as fleet:
        config_path = fleet.write_exporter_config(Path(tmp, "config.yml"))
        with ExporterProcess(f"--config.file={config_path}", "--log.level=debug") as exporter:
            yield fleet, exporter
            assert_no_secrets(exporter, fleet)


@pytest.mark.parametrize("status", LICENSE_SERVER_STATUSES)
def test_each_license_server_status(states: tuple[Fleet, ExporterProcess], promtool: str,
                                    status: str) -> None:
    _, exporter = states
    text = probe(exporter, f"site-{status.lower()}")
    assert value(text, SUCCESS, collector="controller") == 1
    label = f"Site-{status}"
    series = {lab["status"]: v for n, lab, v in samples(text)
              if n == "citrix_license_site_license_server_status" and lab["site"] == label}
    assert series == {s: (1.0 if s == status else 0.0) for s in LICENSE_SERVER_STATUSES}
    assert value(text, "citrix_license_site_supplemental_grace_active", site=label) == 0
    assert value(text, "citrix_license_site_supplemental_grace_end_timestamp_seconds") is None
    assert value(text, "citrix_license_site_out_of_box_grace_active", site=label) == 0
    for level in ("Unknown", "Info", "Alert", "Alarm"):
        assert value(text, "citrix_license_site_alerts", site=label, level=level) == 0
    assert value(text, "citrix_license_site_info", site=label,
                 license_server=f"site-{status.lower()}.example.test:27000") == 1
    assert lint(promtool, text) == ""


def test_supplemental_grace_alerts_and_usage(states: tuple[Fleet, ExporterProcess],
                                             promtool: str) -> None:
    _, exporter = states
    text = probe(exporter, "site-grace")
    assert value(text, "citrix_license_site_supplemental_grace_active", site="Branch") == 1
    end = value(text, "citrix_license_site_supplemental_grace_end_timestamp_seconds",
                site="Branch")
    assert end is not None and abs(end - (time.time() + 200 * 3600)) < 120
    assert value(text, "citrix_license_site_alerts", site="Branch", level="Alarm") == 1
    assert value(text, "citrix_license_site_alerts", site="Branch", level="Alert") == 2
    assert value(text, "citrix_license_site_alerts", site="Branch", level="Info") == 1
    assert value(text, "citrix_license_site_alerts", site="Branch", level="Unknown") == 1
    assert value(text, "citrix_license_site_peak_concurrent_users", site="Branch") == 560
    assert value(text, "citrix_license_site_unique_users", site="Branch") == 1210
    assert value(text, "citrix_license_site_licensed_sessions_active", site="Branch") == 548
    assert lint(promtool, text) == ""


def test_out_of_box_grace_and_absent_counts(states: tuple[Fleet, ExporterProcess],
                                            promtool: str) -> None:
    _, exporter = states
    text = probe(exporter, "site-oob")
    assert value(text, "citrix_license_site_out_of_box_grace_active", site="Lab") == 1
    assert value(text, "citrix_license_site_license_server_status", site="Lab",
                 status="NoInventory") == 1
    # null in the API: left out, never shown as 0
    assert value(text, "citrix_license_site_unique_users") is None
    assert value(text, "citrix_license_site_licensed_sessions_active") is None
    assert value(text, "citrix_license_site_peak_concurrent_users") is None
    assert lint(promtool, text) == ""


def test_target_site_selection_and_repeated_names(states: tuple[Fleet, ExporterProcess],
                                                  promtool: str) -> None:
    fleet, exporter = states
    text = probe(exporter, "site-two")
    assert {lab["site"] for n, lab, _ in samples(text) if n == "citrix_license_site_info"} == {
        "Second"}
    text = probe(exporter, "site-all")
    ids = [s.id for s in controller_of(fleet, "site-all").section.sites]
    assert {lab["site"] for n, lab, _ in samples(text) if n == "citrix_license_site_info"} == {
        f"Same ({ids[0]})", f"Same ({ids[1]})"}
    assert lint(promtool, text) == ""


def test_controller_without_license_overview(states: tuple[Fleet, ExporterProcess],
                                             promtool: str) -> None:
    fleet, exporter = states
    text = probe(exporter, "site-old-controller")
    assert value(text, SUCCESS, collector="controller") == 1
    assert value(text, "citrix_license_site_license_server_status") is None  # not made up
    assert value(text, "citrix_license_site_info", site="Old") == 1
    assert controller_of(fleet, "site-old-controller").count("overview") >= 1
    assert lint(promtool, text) == ""


def test_own_metrics_of_the_state_fleet_pass_promtool(states: tuple[Fleet, ExporterProcess],
                                                      promtool: str) -> None:
    _, exporter = states
    assert lint(promtool, exporter.get("/metrics").text) == ""


# ---------------------------------------------------------------------------------------------
# Delivery Controller: tokens


def test_token_fetched_once_and_reused_across_probes(fleet_of, make_exporter,
                                                     tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site()]}))
    exporter = start(fleet, make_exporter, tmp_path, controller={"cache_interval": "0s"})
    sim = controller_of(fleet, "ls-a")
    for _ in range(4):
        assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    assert sim.count("tokens") == 1
    assert sim.count("sites") == 4 and sim.count("site") == 4 and sim.count("overview") == 4
    headers = sim.last_headers["sites"]
    assert headers["citrix-customerid"] == "CitrixOnPremises"
    assert headers["authorization"] == f"CWSAuth Bearer={sim.issued[0]}"
    assert sim.last_headers["overview"]["citrix-instanceid"] == sim.section.sites[0].id
    assert_no_secrets(exporter, fleet)


def test_probe_cache_serves_repeated_scrapes(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site()]}))
    exporter = start(fleet, make_exporter, tmp_path)  # cache_interval 1m
    for _ in range(3):
        assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    assert controller_of(fleet, "ls-a").count("sites") == 1


def test_token_renewed_before_it_expires(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"token_lifetime_seconds": 3,
                                                  "sites": [site()]}))
    exporter = start(fleet, make_exporter, tmp_path, controller={"cache_interval": "0s"})
    sim = controller_of(fleet, "ls-a")
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    # One token, or two if a loaded machine took the probes past its renewal (at 2.7 s).
    held = sim.count("tokens")
    time.sleep(3.2)  # past ExpiresAt of any token held now
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    # A new token before calling the API: no request was refused (3 probes, 3 site lists;
    # an expired token would have been refused with 401 and the call retried: 4).
    assert sim.count("tokens") == held + 1
    assert sim.count("sites") == 3


def test_relogin_on_401(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site()]}))
    exporter = start(fleet, make_exporter, tmp_path, controller={"cache_interval": "0s"})
    sim = controller_of(fleet, "ls-a")
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    sim.revoke_tokens()  # e.g. the controller restarted
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    assert sim.count("tokens") == 2
    assert sim.count("sites") == 3  # the refused one and its retry
    assert_no_secrets(exporter, fleet)


def test_rejected_credentials_do_not_try_the_next_controller(fleet_of, make_exporter,
                                                             tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site()]}),
                     scenario("ls-b", controller={"sites": [site()]}))

    def edit(config: dict[str, Any]) -> None:
        (tmp_path / "controller-password").write_text("wrong-password\n")
        first, second = config["targets"]
        first["controllers"] = [*first["controllers"], *second["controllers"]]

    exporter = start(fleet, make_exporter, tmp_path, edit=edit)
    text = probe(exporter, "ls-a")
    assert value(text, SUCCESS, collector="controller") == 0
    assert value(text, "citrix_license_up") == 1  # the License Server itself is fine
    line = exporter.wait_for_log(r"collector failed.*collector=controller")
    assert "rejected the credentials of SIM\\\\prometheus-ro" in line  # logfmt: \\
    assert controller_of(fleet, "ls-b").count("tokens") == 0  # no second lockout attempt
    assert "wrong-password" not in exporter.log()


# ---------------------------------------------------------------------------------------------
# Delivery Controller: faults


@pytest.mark.parametrize(
    ("kind", "retry_after", "expected"),
    [
        ("rate_limit", 1, None),  # waited for, then answered
        ("unavailable", 1, None),
        ("rate_limit", 30, "HTTP 429 (rate limited); Retry-After 30s does not fit"),
        ("rate_limit", None, "HTTP 429 (rate limited) without Retry-After"),
        ("error", None, "/cvad/manage/Sites: HTTP 500"),
        ("malformed", None, "/cvad/manage/Sites: invalid JSON (Expecting value at line 1"),
        ("forbidden", None, "HTTP 403: the account SIM\\\\prometheus-ro may not read the site"),
    ],
)
def test_controller_faults(fleet_of, make_exporter, tmp_path: Path, promtool: str, kind: str,
                           retry_after: int | None, expected: str | None) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site(
        license_server_status="LasCompatible")]}))
    exporter = start(fleet, make_exporter, tmp_path, controller={"cache_interval": "0s"})
    sim = controller_of(fleet, "ls-a")
    sim.set_fault(kind, "sites", count=1, retry_after=retry_after)
    started = time.monotonic()
    text = probe(exporter, "ls-a")
    elapsed = time.monotonic() - started
    assert lint(promtool, text) == ""
    if expected is None:
        assert value(text, SUCCESS, collector="controller") == 1
        # The Retry-After wait was respected. A lower bound that only the exporter's own
        # sleep can make true (a loaded machine only makes it longer), not a timing assertion.
        assert elapsed >= 1.0
        assert sim.count("sites") == 2
        return
    assert value(text, SUCCESS, collector="controller") == 0
    assert value(text, "citrix_license_site_license_server_status") is None
    # No waiting beyond the deadline and no blind retries: the reason says why it did not
    # wait (below) and the controller saw one request.
    line = exporter.wait_for_log(r"collector failed.*collector=controller")
    assert expected in line, line
    assert sim.count("sites") == 1
    # The fault was for one request: the next probe answers.
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 1
    assert_no_secrets(exporter, fleet)


def test_slow_controller_is_bounded_by_the_scrape_timeout(fleet_of, make_exporter,
                                                          tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site()]}))
    exporter = start(fleet, make_exporter, tmp_path, timeout="20s",
                     controller={"cache_interval": "0s"})
    controller_of(fleet, "ls-a").set_fault("slow", "sites", slow_seconds=10)
    response = exporter.get("/probe?target=ls-a&debug=true",
                            headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
    # The probe was given the scrape's 2.5 s, not the module's 20 s, and the controller
    # collector ended on that deadline.
    assert "deadline_seconds=2.5 " in response.text, response.text
    metrics = response.text.split("Metrics that would have been returned:\n", 1)[1]
    assert value(metrics, SUCCESS, collector="controller") == 0
    assert value(metrics, "citrix_license_collector_failure", collector="controller",
                 kind="timeout") == 1
    assert value(metrics, SUCCESS, collector="probe") == 1


def test_failover_to_the_next_controller(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site("A")]}),
                     scenario("ls-b", controller={"sites": [site("B")]}))

    def edit(config: dict[str, Any]) -> None:
        first, second = config["targets"]
        first["controllers"] = [*first["controllers"], *second["controllers"]]

    exporter = start(fleet, make_exporter, tmp_path, controller={"cache_interval": "0s"},
                     edit=edit)
    controller_of(fleet, "ls-a").set_fault("error", "sites")
    text = probe(exporter, "ls-a")
    assert value(text, SUCCESS, collector="controller") == 1
    assert value(text, "citrix_license_site_info", site="B") == 1
    controller_of(fleet, "ls-b").set_fault("error", "sites")
    assert value(probe(exporter, "ls-a"), SUCCESS, collector="controller") == 0
    line = exporter.wait_for_log(r"collector failed.*collector=controller")
    assert "no controller answered (2 tried)" in line


def test_tls_verification_is_on_without_the_ca_file(fleet_of, make_exporter,
                                                    tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-a", controller={"sites": [site()]}))
    exporter = start(fleet, make_exporter, tmp_path, controller={"tls": None})
    text = probe(exporter, "ls-a")
    assert value(text, SUCCESS, collector="controller") == 0
    line = exporter.wait_for_log(r"collector failed.*collector=controller")
    assert "TLS certificate verification failed" in line
    assert controller_of(fleet, "ls-a").count("tokens") == 0  # no credential was sent


# ---------------------------------------------------------------------------------------------
# Citrix Cloud


def cloud_scenarios(customer: str, **fault: Any) -> list[Scenario]:
    return [
        scenario("cl-ok", cloud={"customer_id": customer, "fqdn": "ls-ok.example.test",
                                 "last_report_hours_ago": 2, **fault}),
        scenario("cl-silent", cloud={"customer_id": customer, "fqdn": "ls-silent.example.test",
                                     "phoning_home": False, "last_report_hours_ago": 216,
                                     "compliant": False, "time_format": "iso"}),
        scenario("cl-never", cloud={"customer_id": customer, "fqdn": "ls-new.example.test",
                                    "phoning_home": False, "last_report_hours_ago": None,
                                    "compliant": False}),
        scenario("cl-gone", cloud={"customer_id": customer, "fqdn": "ls-gone.example.test",
                                   "listed": False}),
    ]


def test_cloud_states_from_one_shared_fetch(fleet_of, make_exporter, tmp_path: Path,
                                            promtool: str) -> None:
    fleet = fleet_of(*cloud_scenarios("states"))
    exporter = start(fleet, make_exporter, tmp_path)
    now = time.time()
    for _ in range(2):
        ok = probe(exporter, "cl-ok")
        silent = probe(exporter, "cl-silent")
        never = probe(exporter, "cl-never")
        gone = probe(exporter, "cl-gone")
    for text in (ok, silent, never, gone):
        assert value(text, SUCCESS, collector="cloud") == 1
        assert lint(promtool, text) == ""
    assert value(ok, "citrix_license_cloud_listed") == 1
    assert value(ok, "citrix_license_cloud_reporting") == 1
    assert value(ok, "citrix_license_cloud_compliant") == 1
    last = value(ok, "citrix_license_cloud_last_report_timestamp_seconds")
    assert last is not None and abs(last - (now - 2 * 3600)) < 120
    # cl-ok's time comes in the US form, cl-silent's in ISO 8601 (both forms of Citrix's own
    # mock data); the list also holds the simulator's other servers in both forms.
    assert value(ok, "citrix_license_cloud_ever_reported") == 1
    assert value(silent, "citrix_license_cloud_reporting") == 0
    assert value(silent, "citrix_license_cloud_compliant") == 0
    last = value(silent, "citrix_license_cloud_last_report_timestamp_seconds")
    assert last is not None and abs(last - (now - 216 * 3600)) < 120
    assert value(never, "citrix_license_cloud_reporting") == 0
    assert value(never, "citrix_license_cloud_last_report_timestamp_seconds") is None
    assert value(never, "citrix_license_cloud_ever_reported") == 0
    assert value(gone, "citrix_license_cloud_listed") == 0
    assert value(gone, "citrix_license_cloud_reporting") is None
    fetched = {value(t, "citrix_license_cloud_list_fetch_timestamp_seconds")
               for t in (ok, silent, never, gone)}
    assert len(fetched) == 1  # one list for all targets
    sim = cloud_of(fleet, "cl-ok")
    assert sim.count("tokens") == 1
    assert sim.count("licenseservers") == 1  # 8 probes, one fetch
    assert sim.last_headers["licenseservers"]["authorization"] == \
        f"CwsAuth bearer={sim.issued[0]}"
    assert_no_secrets(exporter, fleet)


def test_cloud_token_reused_across_intervals_and_renewed_on_401(fleet_of, make_exporter,
                                                                tmp_path: Path) -> None:
    fleet = fleet_of(*cloud_scenarios("tokens")[:1])
    exporter = start(fleet, make_exporter, tmp_path, cloud={"cache_interval": "1s"})
    sim = cloud_of(fleet, "cl-ok")
    assert value(probe(exporter, "cl-ok"), SUCCESS, collector="cloud") == 1
    time.sleep(1.2)
    assert value(probe(exporter, "cl-ok"), SUCCESS, collector="cloud") == 1
    assert sim.count("licenseservers") == 2
    assert sim.count("tokens") == 1  # one token for both fetches
    sim.revoke_tokens()
    time.sleep(1.2)
    assert value(probe(exporter, "cl-ok"), SUCCESS, collector="cloud") == 1
    assert sim.count("tokens") == 2
    assert sim.count("licenseservers") == 4  # the refused one and its retry
    assert_no_secrets(exporter, fleet)


def test_organisation_without_the_api_logs_once_per_interval(fleet_of, make_exporter,
                                                             tmp_path: Path,
                                                             promtool: str) -> None:
    fleet = fleet_of(*cloud_scenarios("no-api", fault="forbidden"))
    exporter = start(fleet, make_exporter, tmp_path)
    names = ["cl-ok", "cl-silent", "cl-never", "cl-gone"]
    for _ in range(3):
        for name in names:
            text = probe(exporter, name)
            assert value(text, SUCCESS, collector="cloud") == 0
            assert value(text, "citrix_license_cloud_listed") is None
            assert lint(promtool, text) == ""
    warnings = [line for line in exporter.lines
                if "level=warn" in line and ("cloud" in line.lower())]
    assert len(warnings) == 1, warnings
    assert "Citrix Cloud License Server list unavailable" in warnings[0]
    assert "HTTP 403" in warnings[0] and "not documented for every customer" in warnings[0]
    assert cloud_of(fleet, "cl-ok").count("licenseservers") == 1


@pytest.mark.parametrize(
    ("kind", "retry_after", "expected"),
    [
        ("rate_limit", 1, None),
        ("unavailable", 30, "HTTP 503 (service unavailable); Retry-After 30s does not fit"),
        ("error", None, "/licenseservers: HTTP 500"),
        ("malformed", None, "/licenseservers: invalid JSON"),
    ],
)
def test_cloud_faults(fleet_of, make_exporter, tmp_path: Path, kind: str,
                      retry_after: int | None, expected: str | None) -> None:
    customer = f"fault-{kind}-{retry_after}"
    fleet = fleet_of(*cloud_scenarios(customer)[:1])
    exporter = start(fleet, make_exporter, tmp_path)
    cloud_of(fleet, "cl-ok").set_fault(kind, "licenseservers", count=1, retry_after=retry_after)
    text = probe(exporter, "cl-ok")
    if expected is None:
        assert value(text, SUCCESS, collector="cloud") == 1
        assert cloud_of(fleet, "cl-ok").count("licenseservers") == 2
        return
    assert value(text, SUCCESS, collector="cloud") == 0
    line = exporter.wait_for_log(r"Citrix Cloud License Server list unavailable")
    assert expected in line, line


def test_slow_cloud_is_bounded_and_fills_the_shared_list(fleet_of, make_exporter,
                                                         tmp_path: Path) -> None:
    fleet = fleet_of(*cloud_scenarios("slow")[:2])
    exporter = start(fleet, make_exporter, tmp_path, timeout="10s")
    sim = cloud_of(fleet, "cl-ok")
    sim.set_fault("slow", "licenseservers", count=1, slow_seconds=4)
    response = exporter.get("/probe?target=cl-ok&debug=true",
                            headers={"X-Prometheus-Scrape-Timeout-Seconds": "2.5"})
    # Bounded by the scrape's deadline (2 s), not the 4 s the list takes: the probe was given
    # 2 s and the cloud collector ended on it.
    assert "deadline_seconds=2.0 " in response.text, response.text
    assert 'citrix_license_collector_failure{collector="cloud",kind="timeout"} 1.0' in (
        response.text), response.text
    # The fetch went on with the module timeout; a later scrape uses its result.
    end = time.monotonic() + 30
    while value(probe(exporter, "cl-silent"), SUCCESS, collector="cloud") != 1:
        assert time.monotonic() < end, "the shared list was never filled"
        time.sleep(0.2)
    assert sim.count("licenseservers") == 1


def test_generated_demo_config_is_valid(tmp_path: Path) -> None:
    scenarios = [scenario("d-site", controller={"sites": [site()]}),
                 *cloud_scenarios("demo-config")[:1]]
    with Fleet(scenarios) as fleet:
        path = fleet.write_exporter_config(tmp_path / "demo.yml")
        result = subprocess.run(
            [sys.executable, "-m", "citrix_license_exporter.cli", "--config.check",
             f"--config.file={path}"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stderr
        config = yaml.safe_load(path.read_text())
    assert config["targets"][0]["controllers"][0].startswith("https://127.0.0.1:")
    assert config["modules"]["cloud-demo-config"]["cloud"]["tls"]["ca_file"]
