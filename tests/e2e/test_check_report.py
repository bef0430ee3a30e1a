"""``citrix-license-exporter check TARGET``: the report for the first real server, run as a user
runs it (a real process) against the demo fleet of SIMULATED License Servers.

A secret canary (the password of an extra module, refused by the server) and every secret of
the fleet (the simulated accounts' passwords, which the servers accept) must appear in no
output, in no spelling.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from citrix_license_exporter.check import ASSUMPTIONS
from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import bundled_scenarios

ROOT = Path(__file__).resolve().parents[2]
CANARY = "Canary-Pa55-4e1d9c!"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """The demo fleet's config with a canary target, and every secret value it holds."""
    tmp = tmp_path_factory.mktemp("check")
    with Fleet(bundled_scenarios()) as fleet:
        path = fleet.write_exporter_config(tmp / "demo.yml")
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        # The canary: a module like winrm-current's, whose password file holds the canary.
        current = next(t for t in config["targets"] if t["name"] == "winrm-current")
        module = json.loads(json.dumps(config["modules"][current["module"]]))
        (tmp / "canary-password").write_text(CANARY + "\n", encoding="utf-8")
        module["winrm"]["password_file"] = "canary-password"
        config["modules"]["winrm-canary"] = module
        config["targets"].append({**current, "name": "canary", "module": "winrm-canary"})
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        secrets = {CANARY}
        for file in tmp.iterdir():
            if "password" in file.name or "secret" in file.name:
                secrets.add(file.read_text(encoding="utf-8").strip())
        yield path, sorted(secrets)


def spellings(secret: str) -> list[str]:
    user = "CORP\\svc-citrix-monitor"
    return [secret, secret[:8], secret[-8:], quote(secret), secret.encode().hex(),
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"{user}:{secret}".encode()).decode(), json.dumps(secret)[1:-1]]


def check(demo: tuple[Path, list[str]], target: str, *args: str) -> tuple[int, str]:
    path, secrets = demo
    result = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", "check", target,
         f"--config.file={path}", *args],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    leaked = [s for secret in secrets for s in spellings(secret) if s in output]
    assert not leaked, f"secrets in the output of check {target}: {leaked}"
    assert "Traceback" not in output, output
    return result.returncode, result.stdout


def test_report_of_an_overdue_server(demo: tuple[Path, list[str]]) -> None:
    code, text = check(demo, "winrm-overdue")
    assert code == 0, text
    # What was read, and from where (winrm-overdue.yaml: one pool, 97 in use).
    assert re.search(r"TCP connect \[127\.0\.0\.1:\d+ \(license_manager\)\]: open", text)
    assert re.search(r"WMI root\\CitrixLicensing Citrix_GT_License_Pool \[PLD=MPS_PLT_CCU "
                     r"LicenseType=Retail\]: Count \d+, InUseCount 97, PooledAvailable \d+, "
                     r"Overdraft 10", text), text
    assert "WMI root\\CitrixLicensing Citrix_GT_License [SerialNumber=SIM-MPS-0201" in text
    assert "WMI root\\cimv2 Win32_Service [Name=Citrix Licensing]: State Running" in text
    assert ("registry HKLM:\\SOFTWARE\\WOW6432Node\\Citrix\\LicenseServer\\Install Version "
            "[on-box script]: 11.17.2.0 build 46000") in text
    assert "Logs\\log_ctxuploader.log]: " in text and "Code CTX_UPLOADER_SUCCESS" in text
    # What was derived, with the deadline's reasoning.
    assert "version: 11.17.2.0 build 46000" in text
    assert "deadline rule: six_months_after_release" in text
    assert re.search(r"deadline reasoning: overdue from 20\d\d-\d\d-\d\d 00:00:00 UTC: "
                     r"6 months after build \d+", text)
    assert re.search(r"deadline days left: -\d+", text)
    # The assumptions relied on, each with what to check.
    for number in (1, 11, 14, 19, 20, 22):
        assert f"   {number}. {ASSUMPTIONS[number].title} Check: " in text, number
    assert "msg=\"collector succeeded\"" in text  # the probe's log


def test_json_report_is_the_same_as_a_document(demo: tuple[Path, list[str]]) -> None:
    code, text = check(demo, "winrm-overdue", "--output", "json")
    assert code == 0
    report = json.loads(text)
    assert report["target"]["name"] == "winrm-overdue"
    winrm = next(c for c in report["collectors"] if c["collector"] == "winrm")
    sources = {read["source"] for read in winrm["read"]}
    assert "WMI root\\CitrixLicensing Citrix_GT_License_Pool" in sources
    assert report["derived"]["deadline_rule"] == "six_months_after_release"
    assert report["derived"]["deadline_days_left"] < 0
    assert {a["number"] for a in report["assumptions"]} >= {1, 11, 14, 22}


def test_report_of_an_unreachable_server(demo: tuple[Path, list[str]]) -> None:
    code, text = check(demo, "net-unreachable")
    assert code == 1
    assert "== probe: FAILED" in text
    assert "kind refused: no licensing port reachable on 127.0.0.1" in text
    assert "hint: the host answers but nothing listens" in text
    assert f"19. {ASSUMPTIONS[19].title}" in text


def test_report_with_the_canary_password(demo: tuple[Path, list[str]]) -> None:
    code, text = check(demo, "canary", "--output", "json")
    assert code == 1
    report = json.loads(text)
    winrm = next(c for c in report["collectors"] if c["collector"] == "winrm")
    assert winrm["kind"] == "auth" and "authentication failed" in winrm["reason"]
    assert 37 in {a["number"] for a in report["assumptions"]}


@pytest.mark.parametrize(("target", "expected"), [
    ("site-healthy-las", r"Delivery Controller REST \[GET https://127\.0\.0\.1:\d+/cvad/manage"
                         r"/Sites/[^\]]+\]: site "),
    ("cloud-reporting", r"Citrix Cloud REST \[GET https://127\.0\.0\.1:\d+/\S+/licenseservers\]"
                        r": \S+: isPhoningHome True"),
])
def test_report_names_the_rest_paths(demo: tuple[Path, list[str]], target: str,
                                     expected: str) -> None:
    code, text = check(demo, target)
    assert code == 0, text
    assert re.search(expected, text), text


def test_unknown_target_says_which_exist(demo: tuple[Path, list[str]]) -> None:
    code, _ = check(demo, "no-such-server")
    assert code == 2


def test_assumption_titles_match_the_document() -> None:
    text = (ROOT / "docs" / "assumptions.md").read_text(encoding="utf-8")
    titles = dict(re.findall(r"^(\d+)\. \*\*(.+?)\*\*", text, re.MULTILINE))
    for number, assumption in ASSUMPTIONS.items():
        assert titles.get(str(number), "").rstrip(".") == assumption.title.rstrip("."), number
