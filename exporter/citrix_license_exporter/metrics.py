"""Domain results to Prometheus metric families. Every metric name of the exporter lives here.

This module does no I/O (but for one log line when a collector's data cannot be exposed): it is
handed a ``ProbeResult`` (or the exporter's state) and builds fresh families for one scrape.
docs/metrics.md documents each family.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from .citrix.controller_api import LICENSE_SERVER_STATUSES, unique_site_labels
from .citrix.licensing import SERVICE_STATES, WinRMData
from .collectors.base import FailureKind
from .collectors.cloud import CloudData
from .collectors.controller import ControllerData
from .collectors.network import NetworkData
from .probe import ProbeResult

if TYPE_CHECKING:
    from .app import ExporterState

log = logging.getLogger(__name__)

PREFIX = "citrix_license"
CACHED_NOTE = (
    " May be up to the collector's cache interval old"
    " (see citrix_license_collector_last_success_timestamp_seconds)."
)


def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def single(name: str, doc: str, value: float) -> GaugeMetricFamily:
    """A gauge family with one unlabelled sample: most per-target facts are one number."""
    family = gauge(name, doc)
    family.add_metric([], value)
    return family


def ts(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every timestamp must be timezone-aware UTC")
    return moment.astimezone(UTC).timestamp()


# ---------------------------------------------------------------------------------------------
# Per collector


def network_families(data: NetworkData, result: ProbeResult) -> Iterator[Metric]:
    port_up = gauge(
        "port_up",
        "1 if a TCP connection to the licensing port succeeded. role: license_manager (lmadmin, "
        "default 27000), vendor_daemon (CITRIX, default 7279) or web_services (Web Services for "
        "Licensing, default 8083); port: the number probed for that role.",
        ["role", "port"],
    )
    for check in data.ports:
        port_up.add_metric([check.name, str(check.port)], 1.0 if check.up else 0.0)
    yield port_up
    if data.certificate is not None:
        yield single(
            "web_certificate_expiry_timestamp_seconds",
            "When the Web Services for Licensing TLS certificate expires (notAfter).",
            ts(data.certificate.not_after),
        )
        if data.certificate.verified is not None:
            yield single(
                "web_certificate_verified",
                "1 if the Web Services certificate verified against the configured CA bundle "
                "(absent when verification is switched off for the module).",
                1.0 if data.certificate.verified else 0.0,
            )


POOL_LABELS = ("feature", "product", "edition", "model", "license_type", "pool")


def service_families(data: WinRMData) -> Iterator[Metric]:
    """The watched Windows services: not installed is told apart from installed but not
    running (docs/metrics.md), and which of them the module requires."""
    service_up = gauge(
        "service_up",
        "1 if the watched Windows service is running, 0 if it is installed but not running; "
        "absent when it is not installed (see citrix_license_service_state)." + CACHED_NOTE,
        ["service"],
    )
    state = gauge(
        "service_state",
        "The watched Windows service's state (Win32_Service.State in snake case, or "
        "not_installed): one series per state, 1 for the current one." + CACHED_NOTE,
        ["service", "state"],
    )
    required = gauge(
        "service_required",
        "1 if the module lists the service as required (winrm.services), so that its absence "
        "alerts; 0 if it is watched only.",
        ["service"],
    )
    for service in data.services:
        if service.installed:
            service_up.add_metric([service.name], 1.0 if service.running else 0.0)
        current = service.state_label
        for name in SERVICE_STATES:
            state.add_metric([service.name, name], 1.0 if name == current else 0.0)
        required.add_metric([service.name], 1.0 if service.required else 0.0)
    yield service_up
    yield state
    yield required


def winrm_families(data: WinRMData, result: ProbeResult) -> Iterator[Metric]:
    """What the WinRM collector read (cached: every HELP says the data may be that old)."""
    yield from service_families(data)

    pool_metrics = {
        "installed": ("installed", "Licenses installed in the pool as the License Server "
                      "counts them (WMI Count; taken to include the overdraft allowance, see "
                      "citrix_license_purchased)."),
        "in_use": ("in_use", "Licenses of the pool in use (WMI InUseCount)."),
        "available": ("available", "Licenses of the pool available (WMI PooledAvailable)."),
        "overdraft": ("overdraft", "Overdraft licenses of the pool (WMI Overdraft)."),
    }
    families = {
        attr: gauge(name, doc + " One series per pool; sum by (feature) for totals." + CACHED_NOTE,
                    POOL_LABELS)
        for attr, (name, doc) in pool_metrics.items()
    }
    purchased = gauge(
        "purchased",
        "Licenses of the pool bought, without the overdraft allowance: WMI Count minus "
        "Overdraft when the module's winrm.count_includes_overdraft is true (the default, from "
        "public evidence: docs/assumptions.md), else Count. In use above this: overdraft in use."
        " One series per pool; sum by (feature) for totals." + CACHED_NOTE,
        POOL_LABELS,
    )
    sa = gauge(
        "subscription_advantage_timestamp_seconds",
        "Subscription Advantage / Customer Success Services date of the pool (absent when the "
        "pool has none)." + CACHED_NOTE,
        POOL_LABELS,
    )
    for pool in data.pools:
        feature = pool.feature
        labels = [feature.pld, feature.product, feature.edition, feature.model,
                  pool.license_type or "unknown", pool.pool]
        for attr, family in families.items():
            family.add_metric(labels, float(getattr(pool, attr)))
        purchased.add_metric(labels, float(pool.purchased(data.count_includes_overdraft)))
        if pool.subscription_advantage is not None:
            sa.add_metric(labels, ts(pool.subscription_advantage))
    yield from families.values()
    yield purchased
    yield sa

    expiry = gauge(
        "expiry_timestamp_seconds",
        "When the license expires (permanent licenses have no series)." + CACHED_NOTE,
        ["feature", "serial"],
    )
    for item in data.licenses:
        if item.expiry is not None:
            expiry.add_metric([item.feature, item.serial], ts(item.expiry))
    yield expiry

    tele = data.telemetry
    yield single(
        "telemetry_manual",
        "1 if the target is configured telemetry: manual (air-gapped, reported by hand); the "
        "upload metrics then describe the automatic uploader only (see docs/windows-setup.md).",
        1.0 if data.telemetry_manual else 0.0,
    )
    optional = (
        ("telemetry_last_success_timestamp_seconds", tele.last_success,
         "Last successful compliance telemetry upload in the uploader log tail (absent: none "
         "there)."),
        ("telemetry_last_attempt_timestamp_seconds", tele.last_attempt,
         "Last compliance telemetry upload attempt in the uploader log tail (absent: none "
         "there)."),
        ("telemetry_last_attempt_success",
         None if tele.last_attempt_success is None else float(tele.last_attempt_success),
         "1 if the last compliance telemetry upload attempt succeeded (absent: no attempt)."),
        ("telemetry_oldest_pending_bundle_timestamp_seconds", tele.oldest_pending_bundle,
         "Creation time of the oldest upload bundle waiting in the License Server's "
         "resource/usage folder (absent: none waiting)."),
    )
    for name, value, doc in optional:
        if value is not None:
            yield single(name, doc + CACHED_NOTE, float(value))
    yield single(
        "telemetry_consecutive_failures",
        "Failed compliance uploads since the last success in the uploader log tail (a lower "
        "bound when the tail holds no success)." + CACHED_NOTE,
        float(tele.consecutive_failures),
    )
    yield single(
        "telemetry_pending_bundles",
        "Upload bundles newer than the last successful upload, waiting in the License "
        "Server's resource/usage folder." + CACHED_NOTE,
        float(tele.pending_bundles),
    )


# ---------------------------------------------------------------------------------------------
# Delivery Controller: the licensing state of the site(s) using this License Server


def controller_families(data: ControllerData, result: ProbeResult) -> Iterator[Metric]:
    labels = unique_site_labels(data.sites)
    info = gauge(
        "site_info",
        "A site using this License Server, with the License Server it is configured with "
        "(LicenseServerName:LicenseServerPort), as the Delivery Controller reports it (value 1)."
        + CACHED_NOTE,
        ["site", "license_server"],
    )
    out_of_box = gauge(
        "site_out_of_box_grace_active",
        "1 if the site is in the licensing out-of-box grace period "
        "(LicensingOutOfBoxGracePeriodActive)." + CACHED_NOTE,
        ["site"],
    )
    grace = gauge(
        "site_supplemental_grace_active",
        "1 if the site's licensing grace period is active (LicensingGracePeriodActive): "
        "connections beyond the installed licenses are allowed until it ends." + CACHED_NOTE,
        ["site"],
    )
    grace_end = gauge(
        "site_supplemental_grace_end_timestamp_seconds",
        "When the site's licensing grace period ends: the time of the fetch plus "
        "LicensingGraceHoursLeft. Absent when no grace period is active.",
        ["site"],
    )
    status = gauge(
        "site_license_server_status",
        "The License Server status as the site sees it (LicenseServerStatus): one series per "
        "state, 1 for the current state. Absent when the controller does not report it."
        + CACHED_NOTE,
        ["site", "status"],
    )
    alerts = gauge(
        "site_alerts",
        "Active licensing alerts of the site (LicensingAlerts), by AlertLevel." + CACHED_NOTE,
        ["site", "level"],
    )
    peak = gauge(
        "site_peak_concurrent_users",
        "Peak concurrent licensed users of the site (PeakConcurrentLicenseUsers; concurrent "
        "licensing model only)." + CACHED_NOTE,
        ["site"],
    )
    unique = gauge(
        "site_unique_users",
        "Unique licensed users of the site (TotalUniqueLicenseUsers)." + CACHED_NOTE,
        ["site"],
    )
    sessions = gauge(
        "site_licensed_sessions_active",
        "Active licensed sessions of the site (LicensedSessionsActive)." + CACHED_NOTE,
        ["site"],
    )
    for site, label in zip(data.sites, labels, strict=True):
        server = site.license_server_name or ""
        if server and site.license_server_port is not None:
            server = f"{server}:{site.license_server_port}"
        info.add_metric([label, server], 1.0)
        if site.out_of_box_grace_active is not None:
            out_of_box.add_metric([label], 1.0 if site.out_of_box_grace_active else 0.0)
        if site.grace_active is not None:
            grace.add_metric([label], 1.0 if site.grace_active else 0.0)
        end = site.grace_end(data.fetched_at)
        if end is not None:
            grace_end.add_metric([label], ts(end))
        if site.license_server_status is not None:
            for state in LICENSE_SERVER_STATUSES:
                status.add_metric(
                    [label, state], 1.0 if state == site.license_server_status else 0.0
                )
        for level, count in site.alerts.items():
            alerts.add_metric([label, level], float(count))
        for family, number in (
            (peak, site.peak_concurrent_users),
            (unique, site.unique_users),
            (sessions, site.licensed_sessions_active),
        ):
            if number is not None:
                family.add_metric([label], float(number))
    for family in (info, out_of_box, grace, grace_end, status, alerts, peak, unique, sessions):
        if family.samples:
            yield family


# ---------------------------------------------------------------------------------------------
# Citrix Cloud (experimental)

CLOUD_NOTE = (
    " From Citrix Cloud's License Server list, fetched once per cloud.cache_interval for all"
    " targets (see citrix_license_cloud_list_fetch_timestamp_seconds)."
)


def cloud_families(data: CloudData, result: ProbeResult) -> Iterator[Metric]:
    yield single(
        "cloud_list_fetch_timestamp_seconds",
        "When the exporter fetched the Citrix Cloud License Server list the cloud metrics of "
        "this target come from.",
        ts(data.fetched_at),
    )
    yield single(
        "cloud_listed",
        "1 if Citrix Cloud lists this License Server (matched by FQDN: the target's cloud_fqdn "
        "or address)." + CLOUD_NOTE,
        1.0 if data.server is not None else 0.0,
    )
    server = data.server
    if server is None:
        return
    if server.phoning_home is not None:
        yield single(
            "cloud_reporting",
            "1 if Citrix Cloud sees this License Server reporting (isPhoningHome)." + CLOUD_NOTE,
            1.0 if server.phoning_home else 0.0,
        )
    if server.ever_reported is not None:
        yield single(
            "cloud_ever_reported",
            "1 if Citrix Cloud has ever received data from this License Server "
            "(isEverReported; absent when the list does not say)." + CLOUD_NOTE,
            1.0 if server.ever_reported else 0.0,
        )
    if server.last_phoning_home is not None:
        yield single(
            "cloud_last_report_timestamp_seconds",
            "When Citrix Cloud last received data from this License Server "
            "(lastPhoningHomeTime, ISO 8601 or the US form; read only when isEverReported is "
            "not false). Absent when it never did." + CLOUD_NOTE,
            ts(server.last_phoning_home),
        )
    if server.compliant is not None:
        yield single(
            "cloud_compliant",
            "1 if Citrix Cloud considers this License Server compliant (isCompliant)."
            + CLOUD_NOTE,
            1.0 if server.compliant else 0.0,
        )


#: collector name -> builder of that collector's data families. Collectors whose data is
#: defined elsewhere register here (see the end of this module).
DATA_FAMILIES: dict[str, Callable[[Any, ProbeResult], Iterable[Metric]]] = {
    "probe": network_families,
    "winrm": winrm_families,
    "controller": controller_families,
    "cloud": cloud_families,
}


# ---------------------------------------------------------------------------------------------
# The License Server's version against the release catalog


def server_families(result: ProbeResult) -> Iterator[Metric]:
    if result.version is None:
        if result.version_text is not None:
            yield single(
                "server_version_known",
                "1 if the running build is in the release catalog." + CACHED_NOTE,
                0.0,
            )
        return
    assessment = result.assessment
    assert assessment is not None
    info = gauge(
        "server_info",
        "The License Server's version and build (value 1)." + CACHED_NOTE,
        ["version", "build"],
    )
    info.add_metric([str(result.version.version), str(result.version.build)], 1.0)
    yield info
    yield single(
        "server_version_known", "1 if the running build is in the release catalog." + CACHED_NOTE,
        1.0 if assessment.known else 0.0,
    )
    if assessment.release_time is not None:
        yield single(
            "server_release_timestamp_seconds",
            "Release date of the running build per the release catalog (00:00 UTC; for a date "
            "known only as a bound, see docs/catalog.md).",
            ts(assessment.release_time),
        )
    yield single(
        "server_newer_releases",
        "How many releases in the catalog are newer than the running build.",
        float(assessment.newer_releases),
    )
    if assessment.deadline is not None:
        # The two ends of the deadline range (docs/catalog.md "Deadlines as ranges"): the
        # catalog knows many release dates only within bounds, so one date would overstate.
        deadline = gauge(
            "server_update_deadline_timestamp_seconds",
            "The earliest possible update deadline: from this instant (00:00 UTC after the last "
            "day on time) the running build is overdue if the release that starts the clock "
            "came out on its earliest possible day; the server may be late from here. Equal to "
            "..._latest_timestamp_seconds when the dates are exact. rule: the binding policy "
            "rule. Absent when no rule applies.",
            ["rule"],
        )
        deadline.add_metric([assessment.deadline.rule], ts(assessment.deadline.at))
        yield deadline
        latest = gauge(
            "server_update_deadline_latest_timestamp_seconds",
            "The latest possible update deadline: from this instant the running build is "
            "overdue even if the release that starts the clock came out on its latest possible "
            "day; the server is certainly late from here.",
            ["rule"],
        )
        latest.add_metric([assessment.deadline.rule], ts(assessment.deadline.latest_at))
        yield latest
        words = gauge(
            "server_update_deadline_info",
            "The update deadline in words (value 1), e.g. update=\"update between 2024-09-06 "
            "and 2024-10-15\": the last day (UTC) an update is on time if the release that "
            "starts the clock came out on its earliest, and on its latest, possible day; "
            "\"update by D\" when the dates are exact.",
            ["rule", "update"],
        )
        words.add_metric([assessment.deadline.rule, assessment.deadline.in_words()], 1.0)
        yield words
    yield single(
        "server_las_supported",
        "1 if the running build can use the License Activation Service (build 51000 or later; "
        "offline activation needs 53100). It does not prove the server was onboarded to LAS: "
        "where a Delivery Controller is configured, citrix_license_site_license_server_status "
        "(LasCompatible, LasNotOnboarded, ...) tells.",
        1.0 if assessment.las_supported else 0.0,
    )


# ---------------------------------------------------------------------------------------------
# One probe


def exposable(build: Callable[[], Iterable[Metric]]) -> tuple[list[Metric], str | None]:
    """The families ``build`` makes, checked so that the exposition can encode them; or none and
    the reason. The parsers already clean every peer value (citrix/peer_values.py): this is the
    net under them, so a value they missed fails its collector instead of the whole answer."""
    try:
        families = list(build())
        for family in families:
            for sample in family.samples:
                for text in sample.labels.values():
                    if not text.isascii():
                        text.encode("utf-8")
                float(sample.value)
    except Exception as exc:  # OverflowError, UnicodeEncodeError, ...: never the whole answer
        return [], f"{type(exc).__name__}: {str(exc)[:160]}"
    return families, None


def _not_exposed(result: ProbeResult, what: str, reason: str) -> None:
    log.warning(
        "collector data could not be turned into metrics",
        extra={"fields": {"target": result.target.name, "collector": what, "reason": reason}},
    )


def probe_families(result: ProbeResult) -> list[Metric]:
    built: dict[str, list[Metric]] = {}
    for outcome in result.outcomes:
        builder = DATA_FAMILIES.get(outcome.collector)
        if outcome.success and builder is not None:
            data_families, reason = exposable(partial(builder, outcome.data, result))
            if reason is not None:
                _not_exposed(result, outcome.collector, reason)
                continue
            built[outcome.collector] = data_families
    exposed = {o.collector: o.success and (o.collector in built or o.collector not in
                                           DATA_FAMILIES) for o in result.outcomes}
    server, reason = exposable(lambda: server_families(result))
    if reason is not None:
        _not_exposed(result, "version", reason)
    families = outcome_families(result, exposed)
    for outcome in result.outcomes:
        families.extend(built.get(outcome.collector, ()))
    families.extend(server)
    return families


def probe_duration_family(seconds: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "citrix_license_probe_duration_seconds",
        "How long the whole probe took, as seen by the exporter.",
    )
    family.add_metric([], seconds)
    return family


def outcome_families(
    result: ProbeResult, exposed: dict[str, bool] | None = None
) -> list[Metric]:
    """The families every probe answer starts with: up, and each collector's outcome.
    ``exposed``: per collector, whether it succeeded and its data could be exposed (default:
    its outcome's success; exposition.py turns an outcome whose data failed into a failure)."""
    if exposed is None:
        exposed = {o.collector: o.success for o in result.outcomes}
    up = gauge(
        "up",
        "1 if the target's primary collector succeeded "
        f"(this target: {result.module.primary}).",
    )
    up.add_metric([], 1.0 if exposed.get(result.module.primary, False) else 0.0)
    success = gauge("collector_success", "1 if the collector succeeded.", ["collector"])
    duration = gauge(
        "collector_duration_seconds",
        "How long the collector's last fetch took (for cached data: the fetch that produced it).",
        ["collector"],
    )
    last_ok = gauge(
        "collector_last_success_timestamp_seconds",
        "When the collector last fetched data successfully from this target.",
        ["collector"],
    )
    failure = gauge(
        "collector_failure",
        "Why the collector failed: one series per kind ("
        + ", ".join(kind.value for kind in FailureKind)
        + "), 1 for the kind of this probe's failure; all 0 when it succeeded. See "
        "docs/runbooks.md for what each kind means.",
        ["collector", "kind"],
    )
    families: list[Metric] = [up, success, failure, duration, last_ok]
    for outcome in result.outcomes:
        ok = exposed[outcome.collector]
        success.add_metric([outcome.collector], 1.0 if ok else 0.0)
        if ok:
            failed_kind = None
        elif outcome.success:
            # The peer's answer arrived but holds a value the exposition cannot carry.
            failed_kind = FailureKind.PARSE
        else:
            failed_kind = outcome.kind or FailureKind.INTERNAL
        for kind in FailureKind:
            failure.add_metric([outcome.collector, kind.value], 1.0 if kind is failed_kind else 0.0)
        duration.add_metric([outcome.collector], outcome.duration)
        if outcome.last_success is not None:
            last_ok.add_metric([outcome.collector], outcome.last_success)
    return families


# ---------------------------------------------------------------------------------------------
# The exporter itself, on /metrics


def exporter_families(state: ExporterState) -> Iterator[Metric]:
    build = InfoMetricFamily(
        f"{PREFIX}_exporter_build",
        "The exporter's version and the Python it runs on.",
    )
    build.add_metric([], {"version": state.version, "python_version": state.python_version})
    yield build
    yield single(
        "exporter_config_last_reload_successful",
        "1 if the last configuration load succeeded (a failed reload keeps the old config).",
        1.0 if state.last_reload_successful else 0.0,
    )
    yield single(
        "exporter_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully.",
        state.last_reload_success_time,
    )
    yield single(
        "exporter_targets",
        "How many targets the configuration names.",
        float(len(state.config.targets)),
    )
    catalog = state.catalog
    latest = catalog.latest()
    if latest is not None:
        yield single(
            "release_catalog_latest_release_timestamp_seconds",
            "Release date of the newest release in the effective catalog (exact date, or its "
            "'released by' bound). Old means a newer release has probably been missed.",
            ts(_release_moment(latest)),
        )
    releases = gauge(
        "release_catalog_releases",
        "How many releases each catalog source contributes to the effective catalog.",
        ["source"],
    )
    for source, count in sorted(catalog.counts_by_origin().items()):
        releases.add_metric([source], float(count))
    yield releases
    yield from catalog_refresh_families(state)


def catalog_refresh_families(state: ExporterState) -> Iterator[Metric]:
    """Refresh of the ``catalog.sources``; absent when the configuration names no source."""
    status = state.catalog_refresh_status()
    if status is None or status.last_attempt_ok is None:
        return
    yield single(
        "release_catalog_last_refresh_success",
        "1 if the last attempt to read every configured catalog source succeeded; 0 if one "
        "failed or was refused (the last good catalog of that source is kept).",
        1.0 if status.last_attempt_ok else 0.0,
    )
    if status.last_success is not None:
        yield single(
            "release_catalog_last_refresh_timestamp_seconds",
            "When the configured catalog sources were last read successfully (the oldest of "
            "the sources' last successes; 0 if a source never succeeded).",
            status.last_success,
        )


def _release_moment(release: Any) -> datetime:
    day = release.released or release.released_by or release.released_after
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
