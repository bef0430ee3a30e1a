"""The update-deadline policy: by when must a License Server run a newer build?

Rules (CTX477614, CTX695107; reasoning and examples in docs/catalog.md):

* **Six-month rule**: a server must move to each new License Server release within ``months``
  calendar months of that release. The deadline comes from the *first* release newer than the
  running one (it is the oldest, so its deadline is the earliest). Only releases from build
  ``six_month_rule_from_build`` on (default 40000) start the clock: Citrix announced the rule in
  October 2022 for "subsequent" versions after build 40000; older servers were given the fixed
  date below instead.
* **Minimum builds**: a server below ``build`` must be updated by the end of ``deadline``:
  40000 by 2023-03-31 (CTX477614: "by March 31, 2023"); 51000, the first License Activation
  Service build, by 2026-04-14 (CTX695107: complete the transition "before April 15, 2026", so
  14 April is the last day on time); and for a server that reports by hand (``telemetry:
  manual``, an offline server) 53100, the first build with offline LAS activation (LAS docs of
  build 52100), by the same day. A rule with ``telemetry="manual"`` applies to such servers only.

Time zone UTC; a deadline day D is inclusive: the server is overdue from D+1 00:00:00 UTC.

**Ranges.** Where the release that starts a six-month clock is known only within bounds, the
deadline is a range: ``at`` if the release came out on its earliest possible day
(:meth:`Catalog.earliest_release`), ``latest_at`` if on its latest (:meth:`Catalog.latest_release`).
A server is *possibly* late from ``at`` and *certainly* late from ``latest_at``. With several
applicable rules the range runs from the earliest ``at`` to the earliest ``latest_at``; the rule
named is the one whose ``latest_at`` binds (the rule that makes the server certainly late first).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

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
    #: None: every server; "manual": only targets configured ``telemetry: manual``.
    telemetry: Literal["manual"] | None = None


#: The last day on time for the License Activation Service transition: CTX695107 says to
#: complete it "before April 15, 2026".
LAS_TRANSITION_LAST_DAY = date(2026, 4, 14)

DEFAULT_MINIMUM_BUILDS: tuple[MinimumBuild, ...] = (
    MinimumBuild("minimum_build_40000", 40000, date(2023, 3, 31)),
    MinimumBuild("minimum_build_51000", LAS_MIN_BUILD, LAS_TRANSITION_LAST_DAY),
    MinimumBuild(
        "minimum_build_53100_offline", LAS_OFFLINE_MIN_BUILD, LAS_TRANSITION_LAST_DAY, "manual"
    ),
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
    #: tz-aware UTC instant from which the server is overdue if the release that starts the
    #: clock came out on its earliest possible day (possibly late from here).
    at: datetime
    rule: str  # SIX_MONTH_RULE or a MinimumBuild.name
    cause: Release | None  # the release that started the six-month clock
    explanation: str
    #: The instant the server is overdue at the latest, when the release came out on its
    #: latest possible day (certainly late from here; equal to ``at`` for exact dates).
    latest_at: datetime

    @property
    def update_by_earliest(self) -> date:
        """The last day (UTC, inclusive) an update is on time, at the earliest."""
        return (self.at - timedelta(days=1)).date()

    @property
    def update_by_latest(self) -> date:
        """The last day (UTC, inclusive) an update is on time, at the latest."""
        return (self.latest_at - timedelta(days=1)).date()

    @property
    def exact(self) -> bool:
        return self.at == self.latest_at

    def in_words(self) -> str:
        """``update by 2027-02-17``, or ``update between 2024-09-06 and 2024-10-15``."""
        return update_in_words(self.update_by_earliest, self.update_by_latest)


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


def update_in_words(earliest: date, latest: date) -> str:
    if earliest >= latest:
        return f"update by {latest.isoformat()}"
    return f"update between {earliest.isoformat()} and {latest.isoformat()}"


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


def _explain_six_months(
    months: int, release: Release, earliest: DateBound, latest: DateBound
) -> str:
    head = f"{months} months after build {release.build} ({release.describe_date()}"
    if earliest.basis == "fallback":
        return (
            f"{head}; no earlier bound is known, so the upper bound is used "
            "and the deadline may be late)"
        )
    if release.released is not None:
        return f"{head})"
    parts = [f"earliest possible release {earliest.describe()}"]
    if latest.date != earliest.date:
        parts.append(f"latest possible release {latest.describe()}")
    return f"{head}; " + "; ".join(parts) + ")"


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
            explanation=_explain_six_months(policy.months, release, earliest, latest),
            latest_at=end_of_day(add_months(max(latest.date, earliest.date), policy.months)),
        )
    return None


def _minimum_build_deadlines(
    version: LicenseServerVersion, policy: PolicyConfig, telemetry: str
) -> list[Deadline]:
    found = []
    for rule in policy.minimum_builds:
        if rule.telemetry is not None and rule.telemetry != telemetry:
            continue
        if version.build < rule.build:
            at = end_of_day(rule.deadline)
            found.append(
                Deadline(
                    at=at,
                    rule=rule.name,
                    cause=None,
                    explanation=(
                        f"build {version.build} is below {rule.build}, required by "
                        f"{rule.deadline.isoformat()}"
                        + (" for servers that report by hand" if rule.telemetry else "")
                        + f" (rule {rule.name})"
                    ),
                    latest_at=at,
                )
            )
    return found


def combine(candidates: list[Deadline]) -> Deadline | None:
    """One deadline from every applicable rule: possibly late from the earliest ``at``,
    certainly late from the earliest ``latest_at``; the rule named is the one whose
    ``latest_at`` binds (on a tie the earlier ``at``, then the first candidate)."""
    if not candidates:
        return None
    binding = min(candidates, key=lambda d: (d.latest_at, d.at))
    first = min(candidates, key=lambda d: d.at)
    if first.at >= binding.at:
        return binding
    return Deadline(
        at=first.at,
        rule=binding.rule,
        cause=binding.cause,
        explanation=(
            f"{binding.explanation}; possibly late earlier under rule {first.rule} (update by "
            f"{first.update_by_earliest.isoformat()} at the earliest): {first.explanation}"
        ),
        latest_at=binding.latest_at,
    )


def assess(
    version: LicenseServerVersion,
    catalog: Catalog,
    policy: PolicyConfig,
    *,
    telemetry: str = "automatic",
) -> Assessment:
    """Judge one running version against the catalog and the policy.

    ``telemetry`` is the target's ``telemetry`` setting: ``manual`` (an offline server) also
    applies the rules meant for servers that report by hand. Unknown builds (not in the
    catalog) get no release time, but newer known releases still count and still start the
    six-month clock, and the minimum-build rules still apply. A build newer than everything in
    the catalog has no six-month deadline.
    """
    release = catalog.find(version)
    candidates: list[Deadline] = []
    six = _six_month_deadline(version, catalog, policy)
    if six is not None:
        candidates.append(six)
    candidates.extend(_minimum_build_deadlines(version, policy, telemetry))
    deadline = combine(candidates)
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
