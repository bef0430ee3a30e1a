"""The alerting and recording rules, their promtool tests, runbooks and the Alertmanager example.

rules/check.sh is the authority (promtool lint and unit tests, generator drift, amtool); these
tests run it and add what it cannot see: every alert has a runbook section and all four kinds
of unit test, the annotations follow the conventions, and every metric a rule reads is one the
exporter really exposes.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "rules"
RULES = RULES_DIR / "citrix-license.rules.yml"
TESTS_DIR = RULES_DIR / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERTMANAGER = ROOT / "examples" / "alertmanager.yml"

TEST_KINDS = ("firing", "silent", "boundary", "scrape gap")
ANNOTATIONS = ("summary", "description", "runbook_url", "dashboard_url")
RECORDING_RULES = {
    "instance:citrix_license_update_deadline:days_remaining",
    "instance:citrix_license_update_deadline_latest:days_remaining",
    "instance:citrix_license_version_age:days",
    "instance:citrix_license_telemetry_last_success:days_ago",
    "instance_feature:citrix_license_usage:ratio",
}
#: Series Prometheus makes itself, not the exporter.
PROMETHEUS_SERIES = {"up"}


# ---------------------------------------------------------------------------------------------
# Loading


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rules_generate", RULES_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@functools.cache
def rule_groups() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert isinstance(groups, list)
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def alert_names() -> list[str]:
    return sorted({rule["alert"] for rule in alert_rules()})


@functools.cache
def promtool_test_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(TESTS_DIR.glob("*.test.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert data["rule_files"] == ["../citrix-license.rules.yml"], path
        groups.extend(data["tests"])
    return groups


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to -."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


# ---------------------------------------------------------------------------------------------
# rules/check.sh: promtool, amtool, drift


def test_check_script_passes() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); CI installs it")
    result = subprocess.run(
        ["bash", str(RULES_DIR / "check.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"rules/check.sh failed:\n{result.stdout}\n{result.stderr}"
    assert "failed: 0" in result.stdout


def test_rules_file_matches_thresholds() -> None:
    """The drift check without promtool: regenerating gives the committed file byte for byte."""
    generator = load_generator()
    assert generator.generate() == RULES.read_text(encoding="utf-8"), (
        "rules/citrix-license.rules.yml drifted from rules/thresholds.yml: "
        "run python rules/generate.py"
    )


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("alerts.CitrixLicenseExporterDown.for", "five minutes", "Prometheus duration"),
        ("update_deadline.critical_days", 40, "warning days > critical days"),
        ("licenses.usage_high_ratio", "high", "number"),
        ("site.ready_statuses", ['Las"Compatible'], "plain string"),
    ],
)
def test_generator_rejects_bad_thresholds(
    tmp_path: Path, path: str, value: object, message: str
) -> None:
    generator = load_generator()
    data = yaml.safe_load((RULES_DIR / "thresholds.yml").read_text(encoding="utf-8"))
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    bad = tmp_path / "thresholds.yml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(generator.ThresholdError, match=message):
        generator.generate(bad)


def test_generator_check_mode_exits_1_on_drift(tmp_path: Path) -> None:
    generator = load_generator()
    stale = tmp_path / "rules.yml"
    stale.write_text(RULES.read_text(encoding="utf-8").replace("for: 5m", "for: 6m", 1))
    assert generator.main(["--check", "--output", str(stale)]) == 1
    stale.write_text(RULES.read_text(encoding="utf-8"))
    assert generator.main(["--check", "--output", str(stale)]) == 0


# ---------------------------------------------------------------------------------------------
# Conventions of every alert


def test_recording_rules_have_the_fixed_names() -> None:
    recorded = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    assert recorded == RECORDING_RULES


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']}")
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"CitrixLicense[A-Z][A-Za-z]+", name)
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert set(ANNOTATIONS) <= set(annotations)
    summary = annotations["summary"]
    assert "{{" not in summary and "$" not in summary, "the summary must be static"
    assert summary.endswith("."), "the summary ends with a period"
    assert "{{ $labels.instance }}" in annotations["description"]
    assert annotations["runbook_url"].endswith(f"/docs/runbooks.md#{name.lower()}")
    assert "/d/citrix-license-fleet/citrix-license-servers" in annotations["dashboard_url"]
    assert re.fullmatch(r"[0-9]+[smh]", rule["for"])


def test_deadline_alerts_survive_scrape_gaps() -> None:
    """Date-based alerts keep firing through a lost scrape (their data is cached up to 15m)."""
    for rule in alert_rules():
        if "timestamp_seconds - time()" in rule["expr"] or "time() - " in rule["expr"]:
            assert "keep_firing_for" in rule, rule["alert"]


def test_summaries_agree_within_an_alert() -> None:
    seen: dict[str, str] = {}
    for rule in alert_rules():
        summary = seen.setdefault(rule["alert"], rule["annotations"]["summary"])
        assert summary == rule["annotations"]["summary"], rule["alert"]


# ---------------------------------------------------------------------------------------------
# Runbooks


def runbook_anchors() -> dict[str, str]:
    headings = re.findall(r"^## (.+)$", RUNBOOKS.read_text(encoding="utf-8"), flags=re.M)
    return {github_anchor(h): h for h in headings}


@pytest.mark.parametrize("name", alert_names())
def test_every_alert_has_a_runbook_section(name: str) -> None:
    anchors = runbook_anchors()
    assert name.lower() in anchors, f"docs/runbooks.md has no '## {name}' section"
    body = RUNBOOKS.read_text(encoding="utf-8").split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    for part in ("**Meaning.**", "**Impact.**", "**Confirm.**", "**Fix.**"):
        assert part in body, f"runbook section {name} lacks {part}"


def test_runbook_sections_are_all_alerts() -> None:
    assert sorted(runbook_anchors().values()) == alert_names()


def test_runbooks_say_the_citrix_facts_are_unverified() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    assert "not** been verified on a real License" in text or "not been verified" in text


# ---------------------------------------------------------------------------------------------
# promtool test cases


@pytest.mark.parametrize("name", alert_names())
def test_every_alert_has_four_kinds_of_test_case(name: str) -> None:
    kinds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in TEST_KINDS}
    for group in promtool_test_groups():
        title = group.get("name", "")
        if not title.startswith(f"{name}: "):
            continue
        kind = title.removeprefix(f"{name}: ").split(" - ", 1)[0]
        assert kind in kinds, f"unknown test kind in {title!r}"
        checks = [c for c in group.get("alert_rule_test", []) if c["alertname"] == name]
        assert checks, f"{title!r} does not evaluate {name}"
        kinds[kind].extend(checks)
    missing = [kind for kind, checks in kinds.items() if not checks]
    assert not missing, f"{name} has no {missing} test case"
    assert len([c for cs in kinds.values() for c in cs]) >= 4

    firing = [a for check in kinds["firing"] for a in check["exp_alerts"]]
    assert firing, f"{name}'s firing case expects no alert"
    for expected in firing:
        assert "severity" in expected["exp_labels"]
        assert set(ANNOTATIONS) <= set(expected.get("exp_annotations", {})), (
            f"{name}'s firing case must pin every annotation"
        )
    assert any(not c["exp_alerts"] for c in kinds["silent"]), f"{name}'s silent case fires"


def test_every_severity_band_fires_in_some_test() -> None:
    """Each (alert, severity) pair of the rules is expected firing by at least one test."""
    expected = {
        (check["alertname"], alert["exp_labels"]["severity"])
        for group in promtool_test_groups()
        for check in group.get("alert_rule_test", [])
        for alert in check["exp_alerts"]
    }
    bands = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    assert bands <= expected, f"never tested firing: {sorted(bands - expected)}"


# ---------------------------------------------------------------------------------------------
# Every metric the rules read is one the exporter exposes

KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^}]*\}")
CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
RANGE = re.compile(r"\[[^\]]*\]")
NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
TEMPLATE_QUERY = re.compile(r'printf\s+"((?:[^"\\]|\\.)*)"[^|}]*\|\s*query\b')


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside braces or grouping clauses) or parts of numbers and durations."""
    text = STRING.sub('""', expr)
    text = MATCHERS.sub(" ", text)
    text = CLAUSE.sub(" ", text)
    text = RANGE.sub(" ", text)
    return {m for m in NAME.findall(text) if m.lower() not in KEYWORDS}


def rule_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every rule expression and every query run by an annotation template."""
    found: list[tuple[str, str]] = []
    for group in rule_groups():
        for rule in group["rules"]:
            where = rule.get("alert") or rule.get("record")
            found.append((f"{where} expr", rule["expr"]))
            for key, text in (rule.get("annotations") or {}).items():
                for query in TEMPLATE_QUERY.findall(text):
                    found.append((f"{where} {key}", query.replace("%q", '"x"')))
    return found


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (job, instance) (citrix_license_in_use{feature=~"a|b"})\n/\n'
        "(sum without (pool) (rate(x_total[5m] offset 1m)) > 0) unless on (job) y == 1e3\n"
        'or label_replace(z, "a", "$1", "b", "(.*)") and time() - w:rec:ratio'
    )
    assert metric_names(expr) == {"citrix_license_in_use", "x_total", "y", "z", "w:rec:ratio"}


def test_metric_name_extraction_agrees_with_promql_parser() -> None:
    parser = pytest.importorskip("promql_parser", reason="promql-parser is not installed")
    for where, expr in rule_expressions():
        names: list[str] = []

        def visit(node: object, names: list[str] = names) -> bool:
            if isinstance(node, parser.VectorSelector):
                names.append(node.name)
            return True

        parser.walk(parser.parse(expr), visit)
        assert set(names) == metric_names(expr), where


def test_rule_metrics_exist() -> None:
    from tests.support.exposition import exported_metric_names

    exported = set(exported_metric_names())
    recorded = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    unknown: dict[str, set[str]] = {}
    for where, expr in rule_expressions():
        for name in metric_names(expr):
            if name in PROMETHEUS_SERIES or name in exported:
                continue
            if ":" in name and name in recorded:
                continue
            unknown.setdefault(name, set()).add(where)
    assert not unknown, f"rules read metrics the exporter does not expose: {unknown}"


# ---------------------------------------------------------------------------------------------
# Alertmanager inhibitions, checked on a real Alertmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, payload: object = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
    url = f"http://127.0.0.1:{free_port()}"
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={ALERTMANAGER}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("Alertmanager did not start:\n" + log.name)
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_alertmanager_inhibitions(alertmanager: str) -> None:
    now = datetime.now(UTC).isoformat()
    probe = {"job": "citrix-license"}

    def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
        return {
            "labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {},
            "startsAt": now,
        }

    sent = {
        # ls1 unreachable: its other alerts are muted, the unreachable alert itself is not.
        "unreachable": alert("CitrixLicenseServerUnreachable", "critical", instance="ls1", **probe),
        "ls1-overdue": alert(
            "CitrixLicenseUpdateOverdue", "critical", instance="ls1", rule="r", **probe
        ),
        # ls2: the critical band mutes the warning band of the same alert; other alerts stay.
        "ls2-critical": alert(
            "CitrixLicenseExpiring", "critical", instance="ls2", serial="a", **probe
        ),
        "ls2-warning": alert(
            "CitrixLicenseExpiring", "warning", instance="ls2", serial="b", **probe
        ),
        "ls2-other-warning": alert("CitrixLicenseUsageHigh", "warning", instance="ls2", **probe),
        # ls3: the probe scrape fails: the collector alert for it is muted.
        "ls3-probe": alert("CitrixLicenseProbeFailed", "warning", instance="ls3", **probe),
        "ls3-collector": alert(
            "CitrixLicenseCollectorFailing", "warning", instance="ls3", collector="winrm", **probe
        ),
    }
    http_json(f"{alertmanager}/api/v2/alerts", list(sent.values()))
    state = _alert_states(alertmanager, len(sent))
    assert state["CitrixLicenseServerUnreachable", "ls1", "critical"] == "active"
    assert state["CitrixLicenseUpdateOverdue", "ls1", "critical"] == "suppressed"
    assert state["CitrixLicenseExpiring", "ls2", "critical"] == "active"
    assert state["CitrixLicenseExpiring", "ls2", "warning"] == "suppressed"
    assert state["CitrixLicenseUsageHigh", "ls2", "warning"] == "active"
    assert state["CitrixLicenseCollectorFailing", "ls3", "warning"] == "suppressed"

    # The exporter is down: the per-server symptoms are muted (no `exporter` label on either side
    # in this setup, so across every server), the exporter alert itself pages.
    http_json(
        f"{alertmanager}/api/v2/alerts",
        [
            alert(
                "CitrixLicenseExporterDown",
                "critical",
                job="citrix-license-exporter",
                instance="exporter:9888",
            )
        ],
    )
    state = _alert_states(alertmanager, len(sent) + 1)
    assert state["CitrixLicenseExporterDown", "exporter:9888", "critical"] == "active"
    assert state["CitrixLicenseServerUnreachable", "ls1", "critical"] == "suppressed"
    assert state["CitrixLicenseProbeFailed", "ls3", "warning"] == "suppressed"


def _alert_states(url: str, count: int) -> dict[tuple[str, str, str], str]:
    deadline = time.monotonic() + 10
    while True:
        alerts = http_json(f"{url}/api/v2/alerts")
        states = {
            (a["labels"]["alertname"], a["labels"]["instance"], a["labels"]["severity"]): a[
                "status"
            ]["state"]
            for a in alerts
        }
        if len(alerts) >= count and "unprocessed" not in states.values():
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"Alertmanager did not process the alerts: {alerts}")
        time.sleep(0.1)
