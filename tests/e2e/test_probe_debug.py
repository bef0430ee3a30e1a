"""``/probe?debug=true``, as blackbox_exporter has it: text/plain, the probe's log lines (each
collector's steps, timings, cache use, the reason of a failure), then the metrics the probe
produced; secrets scrubbed. Against SIMULATED License Servers over WinRM."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from citrix_license_exporter.simulator import controller as sim_controller
from citrix_license_exporter.simulator.scenario import parse_scenario
from citrix_license_exporter.simulator.winrm import PASSWORD, USERNAME, WRONG_PASSWORD

from ..support.exposition import value

POOL = {"pld": "XDT_PLT_UD", "count": 10, "in_use": 2, "overdraft": 1, "license_type": "Retail",
        "sa_days": 100}


def winrm(fault: str = "none") -> dict[str, Any]:
    return {"auth": "ntlm", "scheme": "http", "pools": [POOL], "uploads": {"days": 2},
            "fault": fault}


def split(text: str) -> tuple[list[str], str]:
    head, sep, metrics = text.partition("\n\nMetrics that would have been returned:\n")
    assert sep, text
    lines = head.splitlines()
    assert lines[0].startswith("Logs for the probe (id ")
    return lines[1:], metrics


def secrets_in(text: str) -> list[str]:
    forms = [PASSWORD, WRONG_PASSWORD, sim_controller.PASSWORD,
             base64.b64encode(
                 f"{sim_controller.USERNAME}:{sim_controller.PASSWORD}".encode()).decode(),
             base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
             base64.b64encode(f"{USERNAME}:{WRONG_PASSWORD}".encode()).decode()]
    return [f for f in forms if f in text]


def test_debug_shows_steps_cache_use_and_metrics(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(parse_scenario({"name": "ls-a", "winrm": winrm()}, "t"))
    exporter = make_exporter(fleet.write_exporter_config(tmp_path / "c.yml"))
    first = exporter.get("/probe", params={"target": "ls-a", "debug": "true"})
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("text/plain")
    lines, metrics = split(first.text)
    text = "\n".join(lines)
    assert 'msg="probe started" target=ls-a' in text and "deadline_seconds=" in text
    assert 'msg="cache miss, fetching" target=ls-a collector=winrm' in text
    assert 'msg="port open"' in text
    for step in ("reading WMI Citrix_GT_License_Pool", "reading WMI Citrix_GT_License",
                 "reading WMI Win32_Service", "running the on-box script"):
        assert f'msg="winrm step" target=ls-a step="{step}"' in text, step
    assert 'msg="certificate read"' in text
    assert 'msg="winrm collection done" target=ls-a pools=1' in text
    assert 'msg="collector succeeded" target=ls-a collector=winrm duration_seconds=' in text
    assert 'msg="probe done" target=ls-a up=1' in text
    # The metrics are the probe's own exposition.
    assert value(metrics, "citrix_license_up") == 1
    assert value(metrics, "citrix_license_installed", feature="XDT_PLT_UD") == 10

    second = exporter.get("/probe", params={"target": "ls-a", "debug": "true"})
    lines, _ = split(second.text)
    cached = [line for line in lines if 'msg="served from cache"' in line]
    assert len(cached) == 1 and "collector=winrm" in cached[0] and "age_seconds=" in cached[0]
    assert not any("winrm collection done" in line for line in lines)
    # Without debug, the usual exposition.
    plain = exporter.get("/probe", params={"target": "ls-a"})
    assert plain.text.startswith("# HELP") and value(plain.text, "citrix_license_up") == 1


def test_debug_shows_the_failure_and_no_secret(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(parse_scenario({"name": "ls-bad", "winrm": winrm("wrong_password")}, "t"))
    exporter = make_exporter(fleet.write_exporter_config(tmp_path / "c.yml"), "--log.level=debug")
    response = exporter.get("/probe", params={"target": "ls-bad", "debug": "true"})
    lines, metrics = split(response.text)
    failed = [line for line in lines if 'msg="collector failed"' in line]
    assert len(failed) == 1, lines
    assert "collector=winrm" in failed[0] and "kind=auth" in failed[0]
    assert "NTLM authentication failed (HTTP 401)" in failed[0]
    assert value(metrics, "citrix_license_collector_failure", collector="winrm", kind="auth") == 1
    assert not secrets_in(response.text)
    assert not secrets_in(exporter.log())


def test_debug_shows_each_rest_call(fleet_of, make_exporter, tmp_path: Path) -> None:
    fleet = fleet_of(parse_scenario({"name": "ls-c", "controller": {}}, "t"))
    exporter = make_exporter(fleet.write_exporter_config(tmp_path / "c.yml"))
    response = exporter.get("/probe", params={"target": "ls-c", "debug": "true"})
    lines, metrics = split(response.text)
    calls = [line for line in lines if 'msg="http answer"' in line]
    assert any('request="POST https://127.0.0.1:' in c and "/cvad/manage/Tokens" in c
               and "status=200" in c for c in calls), calls
    assert any("/cvad/manage/Sites" in c and "status=200" in c for c in calls), calls
    assert value(metrics, "citrix_license_collector_success", collector="controller") == 1
    assert not secrets_in(response.text)
