"""Domain results to Prometheus metric families: the families every probe answer has (up, the
collectors' outcomes, the version assessment), the exporter's own, and the helpers the
collectors build theirs with (each collector's data families live with the collector:
collectors/registry.py).

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

from .collectors.base import FailureKind
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
    from .collectors import registry

    built: dict[str, list[Metric]] = {}
    for outcome in result.outcomes:
        collector = registry.get(outcome.collector)
        if outcome.success and collector is not None:
            data_families, reason = exposable(
                partial(collector.exposition, outcome.data, result)
            )
            if reason is not None:
                _not_exposed(result, outcome.collector, reason)
                continue
            built[outcome.collector] = data_families
    exposed = {o.collector: o.success and (o.collector in built
                                           or registry.get(o.collector) is None)
               for o in result.outcomes}
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


#: Every failure kind with its label value, in the enum's order (built once, not per probe).
_KINDS = tuple((kind, kind.value) for kind in FailureKind)
_FAILURE_HELP = (
    "Why the collector failed: one series per kind ("
    + ", ".join(value for _, value in _KINDS)
    + "), 1 for the kind of this probe's failure; all 0 when it succeeded. See "
    "docs/runbooks.md for what each kind means."
)


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
    failure = gauge("collector_failure", _FAILURE_HELP, ["collector", "kind"])
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
        for kind, value in _KINDS:
            failure.add_metric([outcome.collector, value], 1.0 if kind is failed_kind else 0.0)
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
