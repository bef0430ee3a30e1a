"""The status page's data: a snapshot of the exporter's state, one row per configured target.

Pure: built from the state and a clock reading, rendered by ``page.py``. Rows are sorted by
urgency: overdue first, then targets that are down (their state is unknown, which an on-call
engineer must look at before a deadline weeks away), then the soonest update deadline, then
failing telemetry, then by name; targets never probed come last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..citrix.licensing import WinRMData
from ..collectors.network import NetworkData
from ..history import ProbeRecord

if TYPE_CHECKING:
    from ..app import ExporterState

DAY = 86400.0
#: A deadline this close is shown as "soon" (the warning band of the default alert rules).
SOON_DAYS = 30

# Row states, most urgent first; each is a CSS class of the page.
OVERDUE = "overdue"
DOWN = "down"
SOON = "deadline-soon"
TELEMETRY = "telemetry-failing"
PORT = "port-down"
CERTIFICATE = "certificate-expiring"
FAILING = "collector-failing"
OK = "ok"
NEVER = "never-probed"
STATE_TEXT = {
    OVERDUE: "update overdue",
    DOWN: "down",
    SOON: "deadline soon",
    TELEMETRY: "telemetry failing",
    PORT: "port down",
    CERTIFICATE: "certificate expiring",
    FAILING: "collector failing",
    OK: "ok",
    NEVER: "never probed",
}


@dataclass(frozen=True)
class CollectorState:
    name: str
    success: bool
    kind: str | None
    error: str | None
    from_cache: bool


@dataclass(frozen=True)
class Usage:
    product: str  # the pool's PLD and license type
    in_use: int
    installed: int


@dataclass(frozen=True)
class Row:
    name: str
    address: str
    module: str
    state: str
    up: bool | None  # None: never probed
    reason: str | None
    kind: str | None
    version: str | None
    build: int | None
    deadline: float | None  # Unix seconds: overdue from then
    deadline_latest: float | None  # the latest it can be (a range when later than deadline)
    deadline_rule: str | None
    deadline_explanation: str | None
    days_left: float | None
    telemetry_last_success: float | None
    telemetry_last_attempt_ok: bool | None
    telemetry_manual: bool
    usage: tuple[Usage, ...]
    certificate_expiry: float | None
    probed_at: float | None
    duration: float | None
    probe_id: int | None
    collectors: tuple[CollectorState, ...]

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]

    def sort_key(self) -> tuple[int, float, int, str]:
        rank = {OVERDUE: 0, DOWN: 1, NEVER: 3}.get(self.state, 2)
        deadline = self.deadline if self.deadline is not None else math.inf
        telemetry_failing = 0 if self.telemetry_last_attempt_ok is False else 1
        return rank, deadline, telemetry_failing, self.name


@dataclass(frozen=True)
class RecentProbe:
    id: int
    target: str
    module: str
    started: float
    duration: float
    up: bool
    kind: str | None
    reason: str | None


@dataclass(frozen=True)
class ExporterInfo:
    version: str
    config_path: str
    reload_ok: bool
    reload_time: float
    catalog_latest: str | None  # the newest release, as the catalog states it
    catalog_sources: tuple[tuple[str, int], ...]  # (origin, releases)
    refresh_sources: tuple[str, ...]  # configured catalog.sources labels
    refresh_ok: bool | None
    refresh_time: float | None


@dataclass(frozen=True)
class FleetStatus:
    now: float
    demo: bool
    exporter: ExporterInfo
    rows: tuple[Row, ...]
    recent: tuple[RecentProbe, ...]
    refresh_seconds: int = 30


def _ts(moment: datetime | None) -> float | None:
    return moment.astimezone(UTC).timestamp() if moment is not None else None


def build_row(name: str, address: str, module: str, record: ProbeRecord | None,
              now: float) -> Row:
    empty = Row(name, address, module, NEVER, None, None, None, None, None, None, None, None,
                None, None, None, None, False, (), None, None, None, None, ())
    if record is None or record.result is None:
        return empty
    result = record.result
    collectors = tuple(
        CollectorState(o.collector, o.success, o.kind.value if o.kind else None, o.error,
                       o.from_cache)
        for o in result.outcomes
    )
    winrm: WinRMData | None = None
    network: NetworkData | None = None
    for outcome in result.outcomes:
        if outcome.success and isinstance(outcome.data, WinRMData):
            winrm = outcome.data
        if outcome.success and isinstance(outcome.data, NetworkData):
            network = outcome.data
    deadline = result.assessment.deadline if result.assessment is not None else None
    at = _ts(deadline.at) if deadline is not None else None
    latest = _ts(deadline.latest_at) if deadline is not None and deadline.latest_at else at
    telemetry = winrm.telemetry if winrm is not None else None
    usage = tuple(
        Usage(f"{pool.feature.pld} ({pool.license_type or 'unknown type'})", pool.in_use,
              pool.installed)
        for pool in (winrm.pools if winrm is not None else ())
    )
    cert = network.certificate if network is not None else None
    cert_expiry = _ts(cert.not_after) if cert is not None else None
    closed = tuple(f"port {p.port} ({p.name}) closed: {p.error}"
                   for p in (network.ports if network is not None else ()) if not p.up)
    reason = record.reason
    if closed and reason is None:
        reason = "; ".join(closed)
    days_left = (at - now) / DAY if at is not None else None
    if at is not None and at <= now:
        state = OVERDUE
    elif not result.up:
        state = DOWN
    elif days_left is not None and days_left <= SOON_DAYS:
        state = SOON
    elif telemetry is not None and telemetry.last_attempt_success is False:
        state = TELEMETRY
    elif closed:
        state = PORT
    elif cert_expiry is not None and cert_expiry - now <= SOON_DAYS * DAY:
        state = CERTIFICATE
    elif any(not c.success for c in collectors):
        state = FAILING
    else:
        state = OK
    return Row(
        name=name, address=address, module=module, state=state, up=result.up,
        reason=reason, kind=record.kind.value if record.kind else None,
        version=(f"{result.version.version} build {result.version.build}" if result.version
                 else result.version_text),
        build=result.version.build if result.version else None,
        deadline=at, deadline_latest=latest,
        deadline_rule=deadline.rule if deadline is not None else None,
        deadline_explanation=deadline.explanation if deadline is not None else None,
        days_left=days_left,
        telemetry_last_success=telemetry.last_success if telemetry is not None else None,
        telemetry_last_attempt_ok=telemetry.last_attempt_success if telemetry else None,
        telemetry_manual=bool(winrm and winrm.telemetry_manual),
        usage=usage,
        certificate_expiry=cert_expiry,
        probed_at=record.started + record.duration,
        duration=record.duration,
        probe_id=record.id,
        collectors=collectors,
    )


def snapshot(state: ExporterState, now: float) -> FleetStatus:
    config = state.config
    history = state.history
    rows = sorted(
        (build_row(t.name, t.address, t.module, history.latest(t.name), now)
         for t in config.targets),
        key=Row.sort_key,
    )
    recent = tuple(
        RecentProbe(r.id, r.target, r.module, r.started, r.duration, r.up,
                    r.kind.value if r.kind else None, r.reason)
        for r in history.recent()
    )
    latest = state.catalog.latest()
    refresh = state.catalog_refresh_status()
    exporter = ExporterInfo(
        version=state.version,
        config_path=state.config_path,
        reload_ok=state.last_reload_successful,
        reload_time=state.last_reload_success_time,
        catalog_latest=(f"{latest.version} ({latest.describe_date()})"
                        if latest is not None else None),
        catalog_sources=tuple(sorted(state.catalog.counts_by_origin().items())),
        refresh_sources=tuple(source.label for source in config.catalog.sources),
        refresh_ok=refresh.last_attempt_ok if refresh is not None else None,
        refresh_time=refresh.last_success if refresh is not None else None,
    )
    return FleetStatus(now=now, demo=state.demo, exporter=exporter, rows=tuple(rows),
                       recent=recent)
