"""End to end: the real Prometheus (bundled rules) and Alertmanager (examples/alertmanager.yml)
watch a simulated fleet through the exporter; a webhook receiver records what would page or
open a ticket. See tests/support/stack.py for the stack and what differs from production
(shorter clocks, receivers pointed at the test's webhook).

The tests run in file order on one shared stack: first the steady state, then run-time changes
to the two servers reserved for them (e2e-stop-me, e2e-upgrade-me).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..support.prometheus import ManagedProcess, Notification, group_members, wait_until
from ..support.stack import (
    NEWEST,
    Stack,
    change_winrm,
    job_names,
    stop_server,
)

pytestmark = pytest.mark.timeout(180)


DASHBOARD_PATH = "/d/citrix-license-fleet/citrix-license-servers"

#: (alertname, instance) -> severity: every alert that must reach the webhook in the steady
#: state, and (with SUPPRESSED) every alert Prometheus may fire for the fleet at all.
EXPECTED: dict[tuple[str, str], str] = {
    ("CitrixLicenseUpdateOverdue", "e2e-overdue"): "critical",
    ("CitrixLicenseUpdateOverdue", "e2e-upgrade-me"): "critical",
    ("CitrixLicenseUpdateDeadlineApproaching", "e2e-due-soon"): "warning",
    ("CitrixLicenseTelemetryUploadFailing", "e2e-telemetry-failing"): "warning",
    ("CitrixLicenseTelemetryUploadFailing", "e2e-upgrade-me"): "warning",
    # Last success 3 (and 2) days ago: past the 2-day stale threshold too.
    ("CitrixLicenseTelemetryUploadStale", "e2e-telemetry-failing"): "warning",
    ("CitrixLicenseTelemetryUploadStale", "e2e-upgrade-me"): "warning",
    ("CitrixLicenseExpiring", "e2e-license-expiring"): "warning",
    # Installed but not running, and required but not installed (issue 14 item 1).
    ("CitrixLicenseServiceDown", "e2e-services"): "warning",
    ("CitrixLicenseServiceMissing", "e2e-services"): "warning",
    ("CitrixLicenseWebCertificateExpiring", "e2e-stop-me"): "warning",
    ("CitrixLicenseWebCertificateExpiring", "e2e-cert-critical"): "critical",
    # The simulated ports are ephemeral, not 27000/7279: the rule is keyed on the role, so the
    # vendor daemon still pages (issue 14 item 2).
    ("CitrixLicensePortDown", "e2e-vendor-down"): "critical",
    ("CitrixLicenseServerUnreachable", "e2e-unreachable"): "critical",
    ("CitrixLicenseGracePeriodActive", "e2e-site-caching"): "critical",
    ("CitrixLicenseCachingModeActive", "e2e-site-caching"): "critical",
}
#: Alerts that fire but are muted by an inhibition (never at the webhook).
SUPPRESSED: dict[tuple[str, str], str] = {
    ("CitrixLicenseCollectorFailing", "e2e-unreachable"): "warning",
}
#: The slowest alerts: first scrape after ~6-12 s, then `for` 30m (30 s here).
STEADY_TIMEOUT = 90.0
#: A change shows at the next WinRM fetch (cache 5 s) and probe (2 s); alerts then resolve after
#: `keep_firing_for` (30m, 30 s here).
CHANGE_TIMEOUT = 75.0
STOP_ME, UPGRADE_ME = "e2e-stop-me", "e2e-upgrade-me"


@dataclass(frozen=True)
class Changes:
    since: float  # monotonic time the changes were made


@pytest.fixture(scope="module")
def run_time_changes(e2e_stack: Stack) -> Changes:
    """Stop one server and upgrade another at the same moment (their alerts take a while to
    change on purpose; done together, the waits overlap). Both must have alerted first."""
    hook = e2e_stack.hook
    for key in [*EXPECTED]:
        if key[1] in (STOP_ME, UPGRADE_ME):
            hook.wait_for({"alertname": key[0], "instance": key[1]}, STEADY_TIMEOUT)
    since = time.monotonic()
    stop_server(e2e_stack.simulated.server(STOP_ME))
    # Upgrade to the newest build, and let the daily upload succeed from now on.
    change_winrm(e2e_stack.simulated.server(UPGRADE_ME), version=NEWEST, display_version=NEWEST,
                 failing_days=0)
    return Changes(since)


def firing_keys(notifications: Iterable[Notification]) -> set[tuple[str, str]]:
    return {(n.name, n.instance) for n in notifications if n.status == "firing"}


def check_notification(n: Notification) -> list[str]:
    """The labels and annotations every Citrix License alert must carry."""
    problems = []
    where = f"{n.name} {n.instance}"
    if n.labels.get("job") != job_names()["probe"]:
        problems.append(f"{where}: job label {n.labels.get('job')!r}")
    summary = n.annotations.get("summary", "")
    if not summary.endswith(".") or "{{" in summary:
        problems.append(f"{where}: summary {summary!r}")
    description = n.annotations.get("description", "")
    if n.instance not in description or "{{" in description or "<no value>" in description:
        problems.append(f"{where}: description {description!r}")
    if not n.annotations.get("runbook_url", "").endswith(f"#{n.name.lower()}"):
        problems.append(f"{where}: runbook_url {n.annotations.get('runbook_url')!r}")
    if not n.annotations.get("dashboard_url", "").endswith(
        f"{DASHBOARD_PATH}?var-instance={n.instance}"
    ):
        problems.append(f"{where}: dashboard_url {n.annotations.get('dashboard_url')!r}")
    return problems


def test_expected_alerts_arrive_with_labels_annotations_and_routes(e2e_stack: Stack) -> None:
    hook = e2e_stack.hook

    def all_arrived() -> bool:
        return set(EXPECTED) <= firing_keys(hook.received())

    wait_until(all_arrived, STEADY_TIMEOUT, f"the steady-state alerts {sorted(EXPECTED)}",
               explain=hook.summary)
    received = hook.received(status="firing")

    unexpected = firing_keys(received) - set(EXPECTED)
    assert not unexpected, f"unexpected alerts at the webhook: {sorted(unexpected)}\n" + (
        hook.summary())
    problems = [p for n in received for p in check_notification(n)]
    for n in received:
        severity = EXPECTED[(n.name, n.instance)]
        if n.labels.get("severity") != severity:
            problems.append(f"{n}: severity should be {severity}")
    assert not problems, "\n".join(problems)

    # The example's routes: critical pages, warning opens a ticket, both only there.
    receivers = {n.labels["severity"]: {m.receiver for m in received
                                        if m.labels["severity"] == n.labels["severity"]}
                 for n in received}
    assert receivers == {"critical": {"pager"}, "warning": {"ticket"}}, receivers

    # Specific texts (what the on-call person reads).
    by_key = {(n.name, n.instance): n for n in received}
    overdue = by_key[("CitrixLicenseUpdateOverdue", "e2e-overdue")]
    assert "46000" in overdue.annotations["description"]
    expiring = by_key[("CitrixLicenseExpiring", "e2e-license-expiring")]
    assert expiring.labels.get("serial") == "E2E-0001"
    assert "XDT_PLT_UD" in expiring.annotations["description"]
    down = by_key[("CitrixLicenseServiceDown", "e2e-services")]
    assert down.labels.get("service") == "CitrixWebServicesforLicensing"
    assert "state: stopped" in down.annotations["description"]
    missing = by_key[("CitrixLicenseServiceMissing", "e2e-services")]
    assert missing.labels.get("service") == "CtxLSPortSvc"
    failing = by_key[("CitrixLicenseTelemetryUploadFailing", "e2e-telemetry-failing")]
    assert re.search(r"\b3\b", failing.annotations["description"]), (
        "three failed uploads in a row: " + failing.annotations["description"])


def test_prometheus_fires_nothing_else_and_inhibited_alerts_stay_silent(
    e2e_stack: Stack,
) -> None:
    prom, am, hook = e2e_stack.prom, e2e_stack.am, e2e_stack.hook
    wanted = set(EXPECTED) | set(SUPPRESSED)
    changing = {STOP_ME, UPGRADE_ME}

    def firing() -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["labels"].get("instance", ""))
                for a in prom.alerts() if a["state"] == "firing"}

    wait_until(lambda: wanted <= firing(), STEADY_TIMEOUT, "every expected alert firing",
               explain=lambda: f"firing: {sorted(firing())}")
    extra = {k for k in firing() - wanted if k[1] not in changing}
    assert not extra, f"Prometheus fires unexpected alerts: {sorted(extra)}"

    # The unreachable server's collector alert is held back by Alertmanager's inhibition ...
    (alert,) = am.alerts(alertname="CitrixLicenseCollectorFailing", instance="e2e-unreachable")
    assert alert["status"]["state"] == "suppressed"
    # Its description names the failure kind the runbook branches on (every port refuses).
    assert "(failure kind: refused;" in alert["annotations"]["description"], alert
    (source,) = am.alerts(alertname="CitrixLicenseServerUnreachable", instance="e2e-unreachable")
    assert alert["status"]["inhibitedBy"] == [source["fingerprint"]]
    # ... and never reached the webhook.
    assert not hook.received({"alertname": "CitrixLicenseCollectorFailing",
                              "instance": "e2e-unreachable"})


def test_stopped_server_pages_unreachable_and_its_other_alerts_are_muted(
    e2e_stack: Stack, run_time_changes: Changes,
) -> None:
    hook, am = e2e_stack.hook, e2e_stack.am
    since = run_time_changes.since
    page = hook.wait_for({"alertname": "CitrixLicenseServerUnreachable", "instance": STOP_ME},
                         CHANGE_TIMEOUT, since=since)
    assert page.labels["severity"] == "critical" and page.receiver == "pager"
    assert not check_notification(page), check_notification(page)

    # The collector alert starts 15m (15 s) after the failure: Alertmanager must hold it back.
    wait_until(lambda: am.alerts(alertname="CitrixLicenseCollectorFailing", instance=STOP_ME),
               CHANGE_TIMEOUT, f"CitrixLicenseCollectorFailing for {STOP_ME}")
    (source,) = am.alerts(alertname="CitrixLicenseServerUnreachable", instance=STOP_ME)
    others = [a for a in am.alerts(instance=STOP_ME)
              if a["labels"]["alertname"] != "CitrixLicenseServerUnreachable"]
    assert {a["labels"]["alertname"] for a in others} >= {"CitrixLicenseCollectorFailing"}
    for alert in others:
        assert alert["status"]["state"] == "suppressed", alert["labels"]
        assert source["fingerprint"] in alert["status"]["inhibitedBy"], alert["labels"]
    since_page = [n for n in hook.received({"instance": STOP_ME}, since=since)
                  if n.name != "CitrixLicenseServerUnreachable"]
    assert not since_page, f"muted alerts reached the webhook: {[str(n) for n in since_page]}"


def test_upgrade_and_successful_upload_resolve_the_servers_alerts(
    e2e_stack: Stack, run_time_changes: Changes,
) -> None:
    hook, prom = e2e_stack.hook, e2e_stack.prom
    alerts = [name for name, instance in EXPECTED if instance == UPGRADE_ME]
    assert len(alerts) >= 2
    for alertname in alerts:
        # keep_firing_for (30m in production, 30 s here) holds each alert a while on purpose.
        resolved = hook.wait_for({"alertname": alertname, "instance": UPGRADE_ME},
                                 CHANGE_TIMEOUT, status="resolved", since=run_time_changes.since)
        severity = EXPECTED[(alertname, UPGRADE_ME)]
        assert resolved.receiver == ("pager" if severity == "critical" else "ticket")
    left = [a["labels"]["alertname"] for a in prom.alerts()
            if a["labels"].get("instance") == UPGRADE_ME]
    assert not left, f"alerts still active for {UPGRADE_ME}: {left}"
    after = prom.query(f'citrix_license_server_info{{instance="{UPGRADE_ME}"}}')
    assert [r["metric"]["build"] for r in after] == ["56200"]


def test_harness_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    """What the session's "no process left" check relies on: stopping a started process also
    ends what it spawned (here a shell whose child ignores SIGTERM)."""
    process = ManagedProcess(
        "sh", ["sh", "-c", "trap '' TERM; sleep 300 & wait"], tmp_path / "sh.log"
    )
    wait_until(lambda: len(group_members(process.pgid)) >= 2, 10, "the shell and its child")
    process.stop(timeout=2)
    assert group_members(process.pgid) == []
    assert process.proc.returncode is not None
