"""The status page's rows (status/model.py) with a fixed clock, and what the renderer does with
hostile text. The real page in a real browser is tests/e2e/test_status_page.py."""

from __future__ import annotations

from datetime import date

from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.citrix.licensing import TelemetrySummary, WinRMData
from citrix_license_exporter.citrix.policy import MinimumBuild, PolicyConfig, assess
from citrix_license_exporter.citrix.versions import parse_version
from citrix_license_exporter.collectors.base import FailureKind
from citrix_license_exporter.config import ModuleConfig, TargetConfig
from citrix_license_exporter.history import ProbeHistory
from citrix_license_exporter.probe import Outcome, ProbeResult
from citrix_license_exporter.status.model import (
    DAY,
    ExporterInfo,
    FleetStatus,
    Row,
    build_row,
)
from citrix_license_exporter.status.page import render_status

MODULE = ModuleConfig(name="m", collectors=("winrm",), primary="winrm")
CATALOG = load_bundled()


def telemetry(ok: bool | None) -> TelemetrySummary:
    return TelemetrySummary(last_success=None, last_attempt=None, last_attempt_success=ok,
                            consecutive_failures=0 if ok else 3, pending_bundles=0,
                            oldest_pending_bundle=None)


DEFAULT = PolicyConfig()
#: A policy whose minimum build gives 56200 a deadline far in the future.
LATER = PolicyConfig(minimum_builds=(MinimumBuild("minimum_build_60000", 60000,
                                                  date(2027, 12, 31)),))


def result(name: str, build: int | None, *, up: bool = True, telemetry_ok: bool | None = True,
           policy: PolicyConfig = DEFAULT) -> ProbeResult:
    target = TargetConfig(name=name, address="10.0.0.1", module="m")
    if not up:
        failed = Outcome("winrm", False, 0.1, error="<b>refused</b>", kind=FailureKind.REFUSED)
        return ProbeResult(target, MODULE, (failed,))
    text = f"11.17.2.0 build {build}"
    data = WinRMData(license_server_version=text, version_source="registry", services=(),
                     pools=(), licenses=(), attempts=(), bundles=(),
                     telemetry=telemetry(telemetry_ok), telemetry_manual=False)
    version = parse_version(text)
    return ProbeResult(target, MODULE, (Outcome("winrm", True, 0.1, data=data),), version, text,
                       assess(version, CATALOG, policy))


def deadline_of(build: int) -> float:
    assessment = result("x", build).assessment
    assert assessment is not None and assessment.deadline is not None
    return assessment.deadline.at.timestamp()


def rows(now: float, *results: ProbeResult, never: tuple[str, ...] = ()) -> list[Row]:
    history = ProbeHistory()
    for item in results:
        history.record(item, lines=(), metrics="", duration=0.1, deadline=5.0,
                       started=now - 60)
    built = [build_row(r.target.name, r.target.address, "m", history.latest(r.target.name), now)
             for r in results]
    built += [build_row(name, "10.0.0.9", "m", None, now) for name in never]
    return sorted(built, key=Row.sort_key)


def test_urgency_order_and_states() -> None:
    # 53100's deadline (the bundled catalog) is ten days away, 46000's long past; 56200 under
    # the LATER policy is due at the end of 2027.
    now = deadline_of(53100) - 10 * DAY
    assert deadline_of(46000) < now
    ordered = rows(
        now,
        result("ok", 56200),
        result("telemetry", 56200, telemetry_ok=False),
        result("later", 56200, policy=LATER),
        result("never-seen", 56200, up=False),
        result("soon", 53100),
        result("overdue", 46000),
        never=("unprobed",),
    )
    assert [(r.name, r.state) for r in ordered] == [
        ("overdue", "overdue"),
        ("never-seen", "down"),
        ("soon", "deadline-soon"),
        ("later", "ok"),
        ("telemetry", "telemetry-failing"),
        ("ok", "ok"),
        ("unprobed", "never-probed"),
    ]
    soon = ordered[2]
    assert soon.days_left is not None and round(soon.days_left) == 10
    assert soon.version == "11.17.2.0 build 53100"
    assert soon.deadline_rule == "six_months_after_release"
    assert ordered[3].deadline_rule == "minimum_build_60000"
    down = ordered[1]
    assert down.kind == "refused" and down.reason == "winrm: <b>refused</b>"


def test_the_page_escapes_what_peers_said() -> None:
    now = deadline_of(52100)
    # Target names are validated at load (letters, digits, . _ : -); a peer's text is not.
    built = rows(now, result("ls-a", 56200, up=False))
    info = ExporterInfo(version="1", config_path="/etc/x.yml", reload_ok=True, reload_time=now,
                        catalog_latest=None, catalog_sources=(), refresh_sources=(),
                        refresh_ok=None, refresh_time=None)
    page = render_status(FleetStatus(now=now, demo=False, exporter=info, rows=tuple(built),
                                     recent=())).decode()
    assert "<script" not in page and "<b>refused" not in page
    assert "&lt;b&gt;refused&lt;/b&gt;" in page
    assert 'href="probe?target=ls-a&amp;debug=true"' in page
