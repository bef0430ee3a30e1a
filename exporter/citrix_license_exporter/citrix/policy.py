"""The update-deadline policy: by when must a License Server run a newer build?

Rules (CTX477614, CTX695107; reasoning and examples in docs/catalog.md):

* **Six-month rule**: a server must move to each new License Server release within ``months``
  calendar months of that release. The deadline comes from the *first* release newer than the
  running one (it is the oldest, so its deadline is the earliest). Only releases from build
  ``six_month_rule_from_build`` on (default 40000) start the clock: Citrix announced the rule in
  October 2022 for "subsequent" versions after build 40000; older servers were given the fixed
  date below instead.
* **Minimum builds**: a server below ``build`` must be updated by the end of ``deadline``
  (40000 by 2023-03-31; 51000, the first License Activation Service build, by 2026-04-15 when
  file-based licensing ended).

A server's deadline is the earliest applicable one. Time zone UTC; a deadline day D is
inclusive: the server is overdue from D+1 00:00:00 UTC. Bounded release dates use the earliest
possible release day (:meth:`Catalog.earliest_release`) so that deadlines come early, never late.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from .catalog import Catalog, DateBound, Release
from .versions import LicenseServerVersion

SIX_MONTH_RULE = "six_months_after_release"
LAS_MIN_BUILD = 51000
LAS_OFFLINE_MIN_BUILD = 53100
SIX_MONTH_RULE_FROM_BUILD = 40000


@dataclass(frozen=True)
class MinimumBuild:
    """A fixed date by which every server must run at least ``build``."""

    name: str  # rule name used as a metric label value, e.g. "minimum_build_40000"
    build: int
    deadline: date  # must run >= build by the end of this day (UTC)


DEFAULT_MINIMUM_BUILDS: tuple[MinimumBuild, ...] = (
    MinimumBuild("minimum_build_40000", 40000, date(2023, 3, 31)),
    MinimumBuild("minimum_build_51000", LAS_MIN_BUILD, date(2026, 4, 15)),
)


@dataclass(frozen=True)
class PolicyConfig:
    six_month_rule: bool = True
    months: int = 6
    minimum_builds: tuple[MinimumBuild, ...] = DEFAULT_MINIMUM_BUILDS
    #: Releases below this build do not start a six-month clock (0: every release does).
    six_month_rule_from_build: int = SIX_MONTH_RULE_FROM_BUILD

    def __post_init__(self) -> None:
        if self.months < 0:
            raise ValueError("months must not be negative")


@dataclass(frozen=True)
class Deadline:
    at: datetime  # tz-aware UTC instant from which the server is overdue
    rule: str  # SIX_MONTH_RULE or a MinimumBuild.name
    cause: Release | None  # the release that started the six-month clock
    explanation: str
    #: The instant the server is overdue at the latest, when the release came out on its
    #: latest possible day (equal to ``at`` for exact dates and fixed rules).
    latest_at: datetime | None = None


@dataclass(frozen=True)
class Assessment:
    version: LicenseServerVersion
    known: bool  # the build is in the catalog
    release: Release | None
    release_time: datetime | None  # see release_time(); None when the build is unknown
    newer_releases: int  # catalog releases newer than the running build
    deadline: Deadline | None  # earliest applicable rule; None when none applies
    las_supported: bool  # build >= 51000
    las_offline_supported: bool  # build >= 53100


def add_months(d: date, months: int) -> date:
    """``d`` plus calendar months, clipped to the month's end (2022-08-31 + 6 = 2023-02-28)."""
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ValueError(f"{d} + {months} months is out of range")
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def start_of_day(d: date) -> datetime:
    """00:00:00 UTC of ``d``."""
    return datetime.combine(d, time.min, tzinfo=UTC)


def end_of_day(d: date) -> datetime:
    """The instant a deadline day ends: 00:00:00 UTC of the next day."""
    return start_of_day(d + timedelta(days=1))


def release_time(catalog: Catalog, release: Release) -> datetime:
    """Start of the release day in UTC, for ``citrix_license_server_release_timestamp_seconds``.

    Exact date, else the *latest* possible release day (own ``released_by``, or one derived
    from later releases, see :meth:`Catalog.latest_release`): a day on which the build is known
    to have been available. It understates the build's age rather than inventing one; the
    deadline logic, which must be early, uses the earliest possible day instead.
    """
    return start_of_day(catalog.latest_release(release).date)


def _explain_six_months(months: int, release: Release, earliest: DateBound) -> str:
    head = f"{months} months after build {release.build} ({release.describe_date()}"
    if earliest.basis == "fallback":
        return (
            f"{head}; no earlier bound is known, so the upper bound is used "
            "and the deadline may be late)"
        )
    if release.released is not None:
        return f"{head})"
    return f"{head}; earliest possible release {earliest.describe()})"


def _six_month_deadline(
    version: LicenseServerVersion, catalog: Catalog, policy: PolicyConfig
) -> Deadline | None:
    if not policy.six_month_rule:
        return None
    for release in catalog.newer_than(version):
        if release.build < policy.six_month_rule_from_build:
            continue
        earliest = catalog.earliest_release(release)
        latest = catalog.latest_release(release)
        return Deadline(
            at=end_of_day(add_months(earliest.date, policy.months)),
            rule=SIX_MONTH_RULE,
            cause=release,
            explanation=_explain_six_months(policy.months, release, earliest),
            latest_at=end_of_day(add_months(max(latest.date, earliest.date), policy.months)),
        )
    return None


def _minimum_build_deadlines(version: LicenseServerVersion, policy: PolicyConfig) -> list[Deadline]:
    found = []
    for rule in policy.minimum_builds:
        if version.build < rule.build:
            at = end_of_day(rule.deadline)
            found.append(
                Deadline(
                    at=at,
                    rule=rule.name,
                    cause=None,
                    explanation=(
                        f"build {version.build} is below {rule.build}, required by "
                        f"{rule.deadline.isoformat()} (rule {rule.name})"
                    ),
                    latest_at=at,
                )
            )
    return found


def assess(version: LicenseServerVersion, catalog: Catalog, policy: PolicyConfig) -> Assessment:
    """Judge one running version against the catalog and the policy.

    Unknown builds (not in the catalog) get no release time, but newer known releases still
    count and still start the six-month clock, and the minimum-build rules still apply. A build
    newer than everything in the catalog has no six-month deadline.
    """
    release = catalog.find(version)
    candidates: list[Deadline] = []
    six = _six_month_deadline(version, catalog, policy)
    if six is not None:
        candidates.append(six)
    candidates.extend(_minimum_build_deadlines(version, policy))
    # Earliest wins; on a tie the first candidate (six-month rule, then rules in order) stays.
    deadline = min(candidates, key=lambda d: d.at) if candidates else None
    return Assessment(
        version=version,
        known=release is not None,
        release=release,
        release_time=release_time(catalog, release) if release is not None else None,
        newer_releases=len(catalog.newer_than(version)),
        deadline=deadline,
        las_supported=version.build >= LAS_MIN_BUILD,
        las_offline_supported=version.build >= LAS_OFFLINE_MIN_BUILD,
    )
