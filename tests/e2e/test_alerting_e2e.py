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

import pytest

from ..support.prometheus import Notification, wait_until
from ..support.stack import (
    NEWEST,
    Stack,
    change_winrm,
    e2e_stack,  # noqa: F401 - the shared session fixture
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
    ("CitrixLicenseWebCertificateExpiring", "e2e-stop-me"): "warning",
    ("CitrixLicenseWebCertificateExpiring", "e2e-cert-critical"): "critical",
    # The simulated ports are ephemeral, not 27000/7279: the warning band of the rule.
    ("CitrixLicensePortDown", "e2e-vendor-down"): "warning",
    ("CitrixLicenseServerUnreachable", "e2e-unreachable"): "critical",
    ("CitrixLicenseGracePeriodActive", "e2e-site-caching"): "critical",
    ("CitrixLicenseCachingModeActive", "e2e-site-caching"): "critical",
}
#: Alerts that fire but are muted by an inhibition (never at the webhook).
SUPPRESSED: dict[tuple[str, str], str] = {
    ("CitrixLicenseCollectorFailing", "e2e-unreachable"): "warning",
}
STEADY_TIMEOUT = 75.0  # the slowest alerts: first scrape ~6 s, WinRM fetch, for: 18 s


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
    failing = by_key[("CitrixLicenseTelemetryUploadFailing", "e2e-telemetry-failing")]
    assert re.search(r"\b3\b", failing.annotations["description"]), (
        "three failed uploads in a row: " + failing.annotations["description"])


def test_prometheus_fires_nothing_else_and_inhibited_alerts_stay_silent(
    e2e_stack: Stack,
) -> None:
    prom, am, hook = e2e_stack.prom, e2e_stack.am, e2e_stack.hook
    wanted = set(EXPECTED) | set(SUPPRESSED)
    changing = {"e2e-stop-me", "e2e-upgrade-me"}

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
    (source,) = am.alerts(alertname="CitrixLicenseServerUnreachable", instance="e2e-unreachable")
    assert alert["status"]["inhibitedBy"] == [source["fingerprint"]]
    # ... and never reached the webhook.
    assert not hook.received({"alertname": "CitrixLicenseCollectorFailing",
                              "instance": "e2e-unreachable"})


def test_stopped_server_pages_unreachable_and_its_other_alerts_are_muted(
    e2e_stack: Stack,
) -> None:
    hook, am = e2e_stack.hook, e2e_stack.am
    name = "e2e-stop-me"
    cert = {"alertname": "CitrixLicenseWebCertificateExpiring", "instance": name}
    hook.wait_for(cert, STEADY_TIMEOUT)  # it had an alert of its own before
    since = time.monotonic()
    stop_server(e2e_stack.simulated.server(name))

    page = hook.wait_for({"alertname": "CitrixLicenseServerUnreachable", "instance": name},
                         40, since=since)
    assert page.labels["severity"] == "critical" and page.receiver == "pager"
    assert not check_notification(page), check_notification(page)

    def muted_collector_alert() -> list[dict[str, object]]:
        return am.alerts(alertname="CitrixLicenseCollectorFailing", instance=name)

    wait_until(muted_collector_alert, 40, f"CitrixLicenseCollectorFailing for {name}")
    (source,) = am.alerts(alertname="CitrixLicenseServerUnreachable", instance=name)
    others = [a for a in am.alerts(instance=name)
              if a["labels"]["alertname"] != "CitrixLicenseServerUnreachable"]
    assert {a["labels"]["alertname"] for a in others} >= {"CitrixLicenseCollectorFailing"}
    for alert in others:
        assert alert["status"]["state"] == "suppressed", alert["labels"]
        assert source["fingerprint"] in alert["status"]["inhibitedBy"], alert["labels"]
    since_page = [n for n in hook.received({"instance": name}, since=since)
                  if n.name != "CitrixLicenseServerUnreachable"]
    assert not since_page, f"muted alerts reached the webhook: {[str(n) for n in since_page]}"


def test_upgrade_and_successful_upload_resolve_the_servers_alerts(e2e_stack: Stack) -> None:
    hook, prom = e2e_stack.hook, e2e_stack.prom
    name = "e2e-upgrade-me"
    alerts = [k[0] for k in EXPECTED if k[1] == name]
    for alertname in alerts:
        hook.wait_for({"alertname": alertname, "instance": name}, STEADY_TIMEOUT)
    since = time.monotonic()
    # Upgrade to the newest build, and let the daily upload succeed from now on.
    change_winrm(e2e_stack.simulated.server(name), version=NEWEST, display_version=NEWEST,
                 failing_days=0)

    for alertname in alerts:
        # keep_firing_for (30m in production, 18 s here) holds each alert a while on purpose.
        resolved = hook.wait_for({"alertname": alertname, "instance": name}, 60,
                                 status="resolved", since=since)
        assert resolved.receiver == ("pager" if EXPECTED[(alertname, name)] == "critical"
                                     else "ticket")
    left = [a["labels"]["alertname"] for a in prom.alerts()
            if a["labels"].get("instance") == name]
    assert not left, f"alerts still active for {name}: {left}"
    after = prom.query(f'citrix_license_server_info{{instance="{name}"}}')
    assert [r["metric"]["build"] for r in after] == ["56200"]
