"""The exporter as users run it: a real process, real HTTP, simulated License Servers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from ..conftest import scenario
from ..support.exposition import value


def network_config(fleet: object, timeout: str = "5s", **module: object) -> dict[str, object]:
    config = fleet.exporter_config(Path("."), timeout=timeout)  # type: ignore[attr-defined]
    config["modules"]["network"].update(module)
    return config


def test_probe_healthy_server(fleet_of, make_exporter) -> None:
    fleet = fleet_of(scenario("ls-ok", certificate_days_left=300))
    exporter = make_exporter(network_config(fleet))
    response = exporter.get("/probe?target=ls-ok&module=network")
    assert response.status_code == 200
    text = response.text
    assert value(text, "citrix_license_up") == 1
    assert value(text, "citrix_license_collector_success", collector="probe") == 1
    ports = fleet.server("ls-ok").network.ports
    assert set(ports) == {"license_manager", "vendor_daemon", "web_services"}
    for role, port in ports.items():
        assert value(text, "citrix_license_port_up", role=role, port=str(port)) == 1
    expiry = value(text, "citrix_license_web_certificate_expiry_timestamp_seconds")
    assert expiry is not None
    assert abs(expiry - (time.time() + 300 * 86400)) < 120
    assert value(text, "citrix_license_collector_last_success_timestamp_seconds",
                 collector="probe") == pytest.approx(time.time(), abs=30)


def test_probe_by_address_and_module_defaults_to_target_module(fleet_of, make_exporter) -> None:
    fleet = fleet_of(scenario("ls-ok"))
    exporter = make_exporter(network_config(fleet))
    # The address of a configured target resolves to that target (its module and ports).
    text = exporter.get("/probe?target=127.0.0.1").text
    assert value(text, "citrix_license_up") == 1


def test_one_port_down(fleet_of, make_exporter) -> None:
    fleet = fleet_of(scenario("ls-vd", ports={"vendor_daemon": "refuse"}))
    exporter = make_exporter(network_config(fleet))
    text = exporter.get("/probe?target=ls-vd").text
    ports = fleet.server("ls-vd").network.ports
    assert value(text, "citrix_license_up") == 1
    # The simulator's ports are random: the role says which one is down, the number where.
    assert value(text, "citrix_license_port_up", role="vendor_daemon",
                 port=str(ports["vendor_daemon"])) == 0
    assert value(text, "citrix_license_port_up", role="license_manager",
                 port=str(ports["license_manager"])) == 1


def test_unreachable_server_is_up_0_with_reason_logged(fleet_of, make_exporter) -> None:
    down = {"license_manager": "refuse", "vendor_daemon": "refuse", "web_services": "refuse"}
    fleet = fleet_of(scenario("ls-down", ports=down))
    exporter = make_exporter(network_config(fleet))
    response = exporter.get("/probe?target=ls-down")
    assert response.status_code == 200
    assert value(response.text, "citrix_license_up") == 0
    assert value(response.text, "citrix_license_collector_success", collector="probe") == 0
    assert value(response.text, "citrix_license_port_up") is None
    line = exporter.wait_for_log(r"collector failed.*target=ls-down")
    assert "connection refused" in line


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "exactly one 'target' parameter is required"),
        ("?target=ls-ok&module=nope", "unknown module 'nope'"),
        ("?target=elsewhere.example", "target 'elsewhere.example' is not configured"),
        ("?target=elsewhere.example&module=network", "does not set allow_unlisted_targets"),
    ],
)
def test_bad_probe_requests_are_400(fleet_of, make_exporter, query: str, message: str) -> None:
    fleet = fleet_of(scenario("ls-ok"))
    exporter = make_exporter(network_config(fleet))
    response = exporter.get("/probe" + query)
    assert response.status_code == 400
    assert message in response.text


def debug_fields(text: str, message: str) -> dict[str, str]:
    """The logfmt fields of the first ``msg=message`` line of a ``debug=true`` answer."""
    for line in text.splitlines():
        if f'msg="{message}"' in line or f"msg={message} " in line:
            return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
    raise AssertionError(f"no {message!r} line in:\n{text}")


def test_scrape_timeout_header_bounds_the_probe(fleet_of, make_exporter) -> None:
    hang = {"license_manager": "hang", "vendor_daemon": "hang", "web_services": "hang"}
    fleet = fleet_of(scenario("ls-hang", ports=hang))
    exporter = make_exporter(network_config(fleet, timeout="20s"))
    response = exporter.get("/probe?target=ls-hang&debug=true",
                            headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    assert response.status_code == 200
    # The mechanism, not the wall clock: the probe was given 2 s - 0.5 s offset, far below the
    # module's 20 s, the collector got no more than that, and the probe ended on it.
    started = debug_fields(response.text, "probe started")
    assert float(started["deadline_seconds"]) == 1.5
    assert "X-Prometheus-Scrape-Timeout-Seconds 2 minus 0.5s" in started["deadline_from"]
    collector = debug_fields(response.text, "collector started")
    assert 0 < float(collector["deadline_seconds"]) <= 1.5
    failed = debug_fields(response.text, "collector failed")
    assert failed["kind"] == "timeout"
    metrics = response.text.split("Metrics that would have been returned:\n", 1)[1]
    assert value(metrics, "citrix_license_up") == 0


def in_flight(exporter) -> float:
    return value(exporter.get("/metrics").text, "citrix_license_exporter_probes_in_flight") or 0


def test_hanging_target_does_not_delay_another(fleet_of, make_exporter) -> None:
    hang = {"license_manager": "hang", "vendor_daemon": "hang", "web_services": "hang"}
    fleet = fleet_of(scenario("ls-hang", ports=hang), scenario("ls-ok"))
    exporter = make_exporter(network_config(fleet, timeout="20s"))
    hung: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: hung.append(exporter.get(
        "/probe?target=ls-hang", headers={"X-Prometheus-Scrape-Timeout-Seconds": "6"})))
    thread.start()
    end = time.monotonic() + 30
    while in_flight(exporter) < 1:  # the hanging probe is running
        assert time.monotonic() < end and thread.is_alive()
        time.sleep(0.02)
    text = exporter.get("/probe?target=ls-ok").text
    # Answered, with data, while the hanging probe was still waiting for its deadline.
    still_hanging = thread.is_alive()
    thread.join()
    assert value(text, "citrix_license_up") == 1
    assert still_hanging, "the healthy probe was answered only after the hanging one"
    assert value(hung[0].text, "citrix_license_up") == 0


def test_landing_page_and_own_metrics(fleet_of, make_exporter) -> None:
    fleet = fleet_of(scenario("ls-ok"))
    exporter = make_exporter(network_config(fleet))
    page = exporter.get("/").text
    assert "ls-ok" in page and 'href="probe?target=ls-ok"' in page
    metrics = exporter.get("/metrics").text
    assert value(metrics, "citrix_license_exporter_config_last_reload_successful") == 1
    assert value(metrics, "citrix_license_exporter_build_info") == 1
    assert value(metrics, "citrix_license_release_catalog_latest_release_timestamp_seconds")
    assert "citrix_license_port_up" not in metrics  # target metrics only on /probe
    assert exporter.get("/-/healthy").status_code == 200
    assert exporter.get("/-/ready").status_code == 200
    assert exporter.get("/-/reload").status_code == 405
    assert exporter.get("/nope").status_code == 404


def test_reload_keeps_old_config_on_error(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(scenario("ls-ok"), scenario("ls-two"))
    config = network_config(fleet)
    targets = config["targets"]
    config["targets"] = targets[:1]
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump(config))
    exporter = make_exporter(path)

    path.write_text("modules:\n  network:\n    timeout: never\n    colectors: [probe]\n")
    exporter.signal(signal.SIGHUP)
    exporter.wait_for_log(r"reload failed")
    problems = [line for line in exporter.lines if "configuration problem" in line]
    assert any(f"{path}: modules.network.timeout:" in line for line in problems)
    assert any(f"{path}: modules.network.colectors: unknown key" in line for line in problems)
    metrics = exporter.get("/metrics").text
    assert value(metrics, "citrix_license_exporter_config_last_reload_successful") == 0
    # The old config still serves probes.
    assert value(exporter.get("/probe?target=ls-ok").text, "citrix_license_up") == 1

    response = exporter.post("/-/reload")
    assert response.status_code == 500 and "modules.network.timeout" in response.text

    config["targets"] = targets
    path.write_text(yaml.safe_dump(config))
    assert exporter.post("/-/reload").status_code == 200
    metrics = exporter.get("/metrics").text
    assert value(metrics, "citrix_license_exporter_config_last_reload_successful") == 1
    assert value(exporter.get("/probe?target=ls-two").text, "citrix_license_up") == 1


def test_sigterm_and_sigint_stop_cleanly(fleet_of, make_exporter) -> None:
    fleet = fleet_of(scenario("ls-ok"))
    for signum in (signal.SIGTERM, signal.SIGINT):
        exporter = make_exporter(network_config(fleet))
        exporter.signal(signum)
        assert exporter.proc.wait(10) == 0
        exporter.stop()
        assert any("msg=stopped" in line for line in exporter.lines)


def test_config_check_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("modules: {default: {}}\ntargets: [{name: a, address: b}]\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("modules: {default: {timeout: x}}\n")
    cmd = [sys.executable, "-m", "citrix_license_exporter.cli", "--config.check"]
    ok = subprocess.run([*cmd, f"--config.file={good}"], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK (1 module(s), 1 target(s))" in ok.stdout
    failed = subprocess.run([*cmd, f"--config.file={bad}"], capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{bad}: modules.default.timeout: 'x' is not a duration" in failed.stderr


def test_invalid_config_at_start_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("modules: {default: {timeout: x}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", f"--config.file={bad}",
         "--web.listen-address=127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "modules.default.timeout" in result.stderr
