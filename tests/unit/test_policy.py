"""The deadline policy: calendar arithmetic, the six-month rule, fixed minimum builds, bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citrix_license_exporter.citrix.catalog import Catalog, Release, load_bundled
from citrix_license_exporter.citrix.policy import (
    DEFAULT_MINIMUM_BUILDS,
    SIX_MONTH_RULE,
    Assessment,
    MinimumBuild,
    PolicyConfig,
    add_months,
    assess,
    end_of_day,
    release_time,
)
from citrix_license_exporter.citrix.versions import LicenseServerVersion, parse_version

D = date.fromisoformat
NO_FIXED = PolicyConfig(minimum_builds=())


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rel(
    build: int,
    *,
    version: str = "11.17.2.0",
    released: str | None = None,
    after: str | None = None,
    by: str | None = None,
) -> Release:
    return Release(
        version=LicenseServerVersion.of(version, build),
        released=D(released) if released else None,
        released_after=D(after) if after else None,
        released_by=D(by) if by else None,
        source="test",
        notes="",
        origin="test",
    )


def run(text: str, catalog: Catalog, policy: PolicyConfig | None = None) -> Assessment:
    return assess(parse_version(text), catalog, policy or PolicyConfig())


# --------------------------------------------------------------------------- add_months


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2022-08-31", 6, "2023-02-28"),  # clipped to the end of February
        ("2023-08-31", 6, "2024-02-29"),  # leap year
        ("2024-02-29", 12, "2025-02-28"),  # from a leap day
        ("2024-02-29", 48, "2028-02-29"),
        ("2023-12-15", 6, "2024-06-15"),  # December to June, across the year
        ("2023-12-31", 6, "2024-06-30"),
        ("2022-10-19", 6, "2023-04-19"),
        ("2026-08-17", 6, "2027-02-17"),
        ("2024-01-31", 1, "2024-02-29"),
        ("2023-01-31", 1, "2023-02-28"),
        ("2024-03-31", 1, "2024-04-30"),
        ("2024-05-15", 0, "2024-05-15"),
        ("2024-05-31", -3, "2024-02-29"),
        ("2024-01-15", -1, "2023-12-15"),
        ("2024-07-01", 18, "2026-01-01"),
    ],
)
def test_add_months(start: str, months: int, expected: str) -> None:
    assert add_months(D(start), months) == D(expected)


def test_add_months_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        add_months(date(9999, 12, 1), 1)
    with pytest.raises(ValueError, match="out of range"):
        add_months(date(1, 1, 1), -1)


@given(st.dates(min_value=date(1990, 1, 1), max_value=date(2999, 12, 31)), st.integers(0, 120))
def test_add_months_properties(d: date, months: int) -> None:
    result = add_months(d, months)
    assert (result.year * 12 + result.month) - (d.year * 12 + d.month) == months
    assert result.day <= d.day
    if result.day < d.day:  # clipped: the result is the last day of its month
        assert (result + timedelta(days=1)).day == 1
    assert add_months(d, months) >= d


def test_end_of_day_is_next_midnight_utc() -> None:
    at = end_of_day(date(2023, 3, 31))
    assert at == datetime(2023, 4, 1, tzinfo=UTC)
    assert at.tzinfo is UTC


# --------------------------------------------------------------------------- six-month rule

EXACT = Catalog(
    (
        rel(40000, released="2022-10-19"),
        rel(41000, released="2022-08-31"),  # dates need not be realistic here
        rel(42000, released="2023-08-31"),
        rel(43000, released="2023-12-31"),
    )
)


@pytest.mark.parametrize(
    ("running", "cause", "overdue_from"),
    [
        ("11.17.2.0 build 40000", 41000, "2023-03-01T00:00:00"),  # 2022-08-31 + 6 = 2023-02-28
        ("11.17.2.0 build 41000", 42000, "2024-03-01T00:00:00"),  # leap day 2024-02-29
        ("11.17.2.0 build 42000", 43000, "2024-07-01T00:00:00"),  # 2024-06-30
        ("11.17.2.0 build 40500", 41000, "2023-03-01T00:00:00"),  # unknown build: next newer
    ],
)
def test_six_month_rule_exact_dates(running: str, cause: int, overdue_from: str) -> None:
    a = run(running, EXACT, NO_FIXED)
    assert a.deadline is not None
    assert a.deadline.rule == SIX_MONTH_RULE
    assert a.deadline.cause is not None and a.deadline.cause.build == cause
    assert a.deadline.at == utc(overdue_from)
    assert a.deadline.at.tzinfo is UTC
    assert a.deadline.latest_at == a.deadline.at


def test_six_month_explanation_exact() -> None:
    a = run("11.17.2.0 build 40000", EXACT, NO_FIXED)
    assert a.deadline is not None
    assert a.deadline.explanation == "6 months after build 41000 (released 2022-08-31)"


def test_deadline_day_is_inclusive() -> None:
    # 2022-10-19 + 6 months = 2023-04-19: still in time all that day, overdue from 04-20 00:00
    catalog = Catalog((rel(39000, released="2022-05-11"), rel(40000, released="2022-10-19")))
    a = run("11.17.2.0 build 39000", catalog, NO_FIXED)
    assert a.deadline is not None
    assert a.deadline.at == utc("2023-04-20T00:00:00")
    assert a.deadline.at - timedelta(microseconds=1) < utc("2023-04-20T00:00:00")


def test_other_month_counts() -> None:
    a = run("11.17.2.0 build 40000", EXACT, PolicyConfig(months=3, minimum_builds=()))
    assert a.deadline is not None
    assert a.deadline.at == utc("2022-12-01T00:00:00")  # 2022-08-31 + 3 = 2022-11-30
    assert a.deadline.explanation.startswith("3 months after build 41000")


def test_six_month_rule_can_be_switched_off() -> None:
    a = run("11.17.2.0 build 40000", EXACT, PolicyConfig(six_month_rule=False, minimum_builds=()))
    assert a.deadline is None
    assert a.newer_releases == 3


def test_negative_months_rejected() -> None:
    with pytest.raises(ValueError, match="months"):
        PolicyConfig(months=-1)


def test_releases_before_the_rule_start_no_clock() -> None:
    catalog = Catalog(
        (
            rel(37000, after="2021-09-27", by="2021-12-13"),
            rel(39000, released="2022-05-11"),
            rel(40000, released="2022-10-19"),
        )
    )
    # default: 39000 predates the rule (announced for versions after 40000)
    a = run("11.17.2.0 build 37000", catalog, NO_FIXED)
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 40000
    assert a.deadline.at == utc("2023-04-20T00:00:00")
    # literal reading: every newer release starts a clock
    literal = PolicyConfig(minimum_builds=(), six_month_rule_from_build=0)
    a = run("11.17.2.0 build 37000", catalog, literal)
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 39000
    assert a.deadline.at == utc("2022-11-12T00:00:00")


# --------------------------------------------------------------------------- bounded dates

BOUNDED = Catalog(
    (
        rel(30000, version="11.16.3.0", by="2020-03-26"),
        rel(31000, version="11.16.6.0", after="2020-03-26", by="2020-06-17"),
        rel(40000, released="2022-10-19"),
        rel(41000, after="2022-10-19", by="2023-03-20"),
        rel(42000, by="2023-03-20"),
        rel(45000, after="2023-06-01"),
    )
)
LITERAL = PolicyConfig(minimum_builds=(), six_month_rule_from_build=0)


def test_bound_after_only() -> None:
    a = run("11.17.2.0 build 42000", BOUNDED, NO_FIXED)
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 45000
    assert a.deadline.at == utc("2023-12-02T00:00:00")  # 2023-06-01 + 6 months, end of day
    # no upper bound anywhere above: the latest possible deadline is the same lower bound
    assert a.deadline.latest_at == a.deadline.at
    assert a.deadline.explanation == (
        "6 months after build 45000 (released after 2023-06-01; "
        "earliest possible release 2023-06-01)"
    )


def test_bound_both() -> None:
    a = run("11.17.2.0 build 40000", BOUNDED, NO_FIXED)
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 41000
    assert a.deadline.at == utc("2023-04-20T00:00:00")  # from the lower bound 2022-10-19
    assert a.deadline.latest_at == utc("2023-09-21T00:00:00")  # from the upper bound 2023-03-20
    assert a.deadline.explanation == (
        "6 months after build 41000 (released after 2022-10-19, by 2023-03-20; "
        "earliest possible release 2022-10-19; latest possible release 2023-03-20)"
    )


def test_bound_by_only_uses_lower_bound_of_an_earlier_release() -> None:
    a = run("11.17.2.0 build 41000", BOUNDED, NO_FIXED)
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 42000
    # 42000 cannot predate 41000, released after 2022-10-19: earliest deadline 2023-04-19
    assert a.deadline.at == utc("2023-04-20T00:00:00")
    assert a.deadline.latest_at == utc("2023-09-21T00:00:00")
    assert a.deadline.explanation == (
        "6 months after build 42000 (released by 2023-03-20; earliest possible release "
        "2022-10-19, as build 41000 was released after 2022-10-19, by 2023-03-20; latest "
        "possible release 2023-03-20)"
    )


def test_bound_by_only_with_nothing_below_uses_the_upper_bound_and_says_so() -> None:
    a = run("11.16.0.0 build 29000", BOUNDED, LITERAL)
    assert a.known is False
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 30000
    assert a.deadline.at == utc("2020-09-27T00:00:00")  # 2020-03-26 + 6 months
    assert "no earlier bound is known" in a.deadline.explanation
    assert "may be late" in a.deadline.explanation


def test_bounded_deadline_is_never_later_than_with_the_true_date() -> None:
    """Whatever the true release day within the bounds, our deadline is not later."""
    for true_day in (D("2022-10-19"), D("2023-01-01"), D("2023-03-20")):
        truth = Catalog((rel(40000, released="2022-10-19"), rel(41000, released=str(true_day))))
        ours = run("11.17.2.0 build 40000", BOUNDED, NO_FIXED).deadline
        real = run("11.17.2.0 build 40000", truth, NO_FIXED).deadline
        assert ours is not None and real is not None
        assert ours.at <= real.at
        assert ours.latest_at is not None and real.at <= ours.latest_at


# --------------------------------------------------------------------------- fixed dates


def test_fixed_minimum_builds() -> None:
    a = run("11.17.2.0 build 39000", Catalog(), PolicyConfig())
    assert a.deadline is not None
    assert a.deadline.rule == "minimum_build_40000"
    assert a.deadline.cause is None
    assert a.deadline.at == utc("2023-04-01T00:00:00")
    assert a.deadline.latest_at == a.deadline.at
    assert a.deadline.explanation == (
        "build 39000 is below 40000, required by 2023-03-31 (rule minimum_build_40000)"
    )
    a = run("11.17.2.0 build 49000", Catalog(), PolicyConfig())
    assert a.deadline is not None
    assert a.deadline.rule == "minimum_build_51000"
    # CTX695107: complete the LAS transition "before April 15, 2026": 14 April is the last day
    # on time, so the server is overdue from 15 April 00:00 UTC.
    assert a.deadline.at == utc("2026-04-15T00:00:00")
    assert a.deadline.update_by_earliest == date(2026, 4, 14)
    assert a.deadline.in_words() == "update by 2026-04-14"
    # at or above every minimum build: no fixed rule applies
    assert run("11.17.2.0 build 51000", Catalog(), PolicyConfig()).deadline is None


def test_default_minimum_builds() -> None:
    assert PolicyConfig().minimum_builds == DEFAULT_MINIMUM_BUILDS
    assert [(m.name, m.build, m.deadline) for m in DEFAULT_MINIMUM_BUILDS] == [
        ("minimum_build_40000", 40000, date(2023, 3, 31)),
        ("minimum_build_51000", 51000, date(2026, 4, 14)),
        ("minimum_build_53100_offline", 53100, date(2026, 4, 14)),
    ]
    assert [m.telemetry for m in DEFAULT_MINIMUM_BUILDS] == [None, None, "manual"]


@pytest.mark.parametrize(
    ("build", "telemetry", "rule"),
    [(52100, "manual", "minimum_build_53100_offline"), (52100, "automatic", None),
     (51000, "manual", "minimum_build_53100_offline"), (53100, "manual", None),
     (49000, "manual", "minimum_build_51000")],
)  # fmt: skip
def test_offline_servers_are_held_to_53100(build: int, telemetry: str, rule: str | None) -> None:
    """The LAS docs of build 52100 name 53100 for offline activation (and PVS, XenServer,
    WEM, ...); a server that reports by hand (telemetry: manual) is such an offline server.
    51000 or later alone (las_supported) does not prove the server was onboarded to LAS."""
    a = assess(LicenseServerVersion.of("11.17.2.0", build), Catalog(), PolicyConfig(),
               telemetry=telemetry)
    assert (a.deadline.rule if a.deadline else None) == rule
    if a.deadline is not None:
        assert a.deadline.update_by_latest == date(2026, 4, 14)


def test_several_rules_give_one_range() -> None:
    """Possibly late from the earliest rule's first day, certainly late from the earliest
    latest day; the rule named is the one that makes the server certainly late first."""
    catalog = Catalog((rel(52100, released="2025-01-01"), rel(53100, after="2025-01-01",
                                                            by="2026-03-16")))
    a = assess(LicenseServerVersion.of("11.17.2.0", 52100), catalog, PolicyConfig(),
               telemetry="manual")
    assert a.deadline is not None
    assert a.deadline.rule == "minimum_build_53100_offline"
    assert a.deadline.update_by_earliest == date(2025, 7, 1)  # 2025-01-01 + 6 months
    assert a.deadline.update_by_latest == date(2026, 4, 14)
    assert a.deadline.in_words() == "update between 2025-07-01 and 2026-04-14"
    assert "possibly late earlier under rule six_months_after_release" in a.deadline.explanation


def test_custom_minimum_build_rule() -> None:
    rule = MinimumBuild(name="site_standard", build=56200, deadline=date(2026, 12, 31))
    a = run("11.17.2.0 build 53100", Catalog(), PolicyConfig(minimum_builds=(rule,)))
    assert a.deadline is not None
    assert (a.deadline.rule, a.deadline.at) == ("site_standard", utc("2027-01-01T00:00:00"))


# --------------------------------------------------------------------------- earliest of several


def test_earliest_of_several_rules() -> None:
    catalog = Catalog((rel(39000, released="2022-05-11"), rel(40000, released="2022-10-19")))
    # six-month: 2023-04-19 end; fixed 40000: 2023-03-31 end -> the fixed rule is earlier
    a = run("11.17.2.0 build 39000", catalog)
    assert a.deadline is not None and a.deadline.rule == "minimum_build_40000"
    # a later fixed date loses to the six-month rule
    late = MinimumBuild("late", 40000, date(2024, 1, 1))
    a = run("11.17.2.0 build 39000", catalog, PolicyConfig(minimum_builds=(late,)))
    assert a.deadline is not None and a.deadline.rule == SIX_MONTH_RULE
    # two fixed rules: the earlier one wins whatever the order
    early = MinimumBuild("early", 45000, date(2022, 1, 1))
    a = run("11.17.2.0 build 39000", Catalog(), PolicyConfig(minimum_builds=(late, early)))
    assert a.deadline is not None and a.deadline.rule == "early"


def test_tie_keeps_the_six_month_rule_first() -> None:
    catalog = Catalog((rel(40000, released="2022-10-19"), rel(41000, released="2022-10-01")))
    same_day = MinimumBuild("same_day", 41000, date(2023, 4, 1))
    a = run("11.17.2.0 build 40000", catalog, PolicyConfig(minimum_builds=(same_day,)))
    assert a.deadline is not None and a.deadline.rule == SIX_MONTH_RULE
    other = MinimumBuild("other", 41000, date(2023, 4, 1))
    a = run("11.17.2.0 build 40000", Catalog(), PolicyConfig(minimum_builds=(same_day, other)))
    assert a.deadline is not None and a.deadline.rule == "same_day"


# --------------------------------------------------------------------------- assessment fields


def test_known_build() -> None:
    a = run("11.17.2.0 build 41000", BOUNDED)
    assert a.known is True
    assert a.release is not None and a.release.build == 41000
    assert a.version == parse_version("11.17.2.0 build 41000")
    # bounded: the latest possible release day (released_by)
    assert a.release_time == utc("2023-03-20T00:00:00")
    assert a.newer_releases == 2


def test_release_time_exact_and_derived() -> None:
    assert run("11.17.2.0 build 40000", BOUNDED).release_time == utc("2022-10-19T00:00:00")
    # after-only with nothing later: its own lower bound is all there is
    assert run("11.17.2.0 build 45000", BOUNDED).release_time == utc("2023-06-01T00:00:00")
    release = BOUNDED.releases[-1]
    assert release_time(BOUNDED, release).tzinfo is UTC


def test_unknown_build() -> None:
    a = run("11.17.2.0 build 40500", BOUNDED)
    assert a.known is False
    assert a.release is None
    assert a.release_time is None
    assert a.newer_releases == 3  # 41000, 42000, 45000
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 41000
    # minimum-build rules still apply to unknown builds
    a = run("11.17.2.0 build 38000", Catalog())
    assert a.known is False and a.deadline is not None
    assert a.deadline.rule == "minimum_build_40000"


def test_same_build_other_version_text_is_known_by_its_build() -> None:
    a = run("11.17.3.0 build 41000", BOUNDED)
    assert a.known is True
    assert a.release is not None and str(a.release.version) == "11.17.2.0 build 41000"
    assert a.version == parse_version("11.17.3.0 build 41000")  # as reported
    assert a.newer_releases == 2


def test_build_newer_than_the_catalog() -> None:
    a = run("11.17.2.0 build 99000", BOUNDED)
    assert (a.known, a.newer_releases, a.deadline, a.release_time) == (False, 0, None, None)
    assert a.las_supported and a.las_offline_supported


def test_empty_catalog() -> None:
    a = run("11.17.2.0 build 56200", Catalog())
    assert (a.known, a.newer_releases, a.deadline) == (False, 0, None)


@pytest.mark.parametrize(
    ("build", "las", "offline"),
    [(49000, False, False), (50999, False, False), (51000, True, False), (53099, True, False),
     (53100, True, True), (56200, True, True)],
)  # fmt: skip
def test_las_flags(build: int, las: bool, offline: bool) -> None:
    a = run(f"11.17.2.0 build {build}", Catalog())
    assert (a.las_supported, a.las_offline_supported) == (las, offline)


# --------------------------------------------------------------------------- bundled catalog
# Hand-computed with the default policy (6 months, rule from build 40000, minimum builds
# 40000 by 2023-03-31 and 51000 by 2026-04-14; servers with automatic telemetry). The CLI
# `catalog show` must print the same. Bounds and their sources: docs/assumptions.md "Release
# dates" (issue 14 item 6).
#
# build  first newer >= 40000: earliest .. latest possible release     overdue from (range)
# 30000  (fixed rule 2023-03-31 wins over 40000 + 6 months)            2023-04-01
# 40000  41000: after 2022-10-19 (40000) .. by 2023-03-09 (42000 log)  2023-04-20 .. 2023-09-10
# 42000  43000: after 2023-03-20 (jinna-i) .. by 2024-03-06 (46000)    2023-09-21 .. 2024-09-07
# 46000  47000: after 2024-03-06 .. by 2024-04-15 (Stalhood)           2024-09-07 .. 2024-10-16
# 49000  51000: after 2024-08-20 .. by 2024-12-03 (Stalhood)           2025-02-21 .. 2025-06-04
# 51000  52100: after 2024-12-03 .. by 2025-04-29                      2025-06-04 .. 2025-10-30
# 52100  53100: after 2024-12-03 (from 52100) .. by 2026-03-16         2025-06-04 .. 2026-09-17
# 53100  56200 released 2026-08-17                                     2027-02-18
# 56200  none

BUNDLED_EXPECTED = [
    # running build, rule, cause, overdue from (UTC), latest possible overdue from
    (30000, "minimum_build_40000", None, "2023-04-01", "2023-04-01"),
    (39000, "minimum_build_40000", None, "2023-04-01", "2023-04-01"),
    (40000, SIX_MONTH_RULE, 41000, "2023-04-20", "2023-09-10"),
    (42000, SIX_MONTH_RULE, 43000, "2023-09-21", "2024-09-07"),
    (46000, SIX_MONTH_RULE, 47000, "2024-09-07", "2024-10-16"),
    (49000, SIX_MONTH_RULE, 51000, "2025-02-21", "2025-06-04"),
    (51000, SIX_MONTH_RULE, 52100, "2025-06-04", "2025-10-30"),
    (52100, SIX_MONTH_RULE, 53100, "2025-06-04", "2026-09-17"),
    (53100, SIX_MONTH_RULE, 56200, "2027-02-18", "2027-02-18"),
]


def test_no_bundled_deadline_predates_the_release_of_the_running_build() -> None:
    """Issue 14 item 8: a deadline the catalog shows impossible is never stated. A server on
    build N cannot be late before N+1 can have come out plus six months, and the range is
    never inverted."""
    catalog = load_bundled()
    for release in catalog.releases:
        for telemetry in ("automatic", "manual"):
            d = assess(release.version, catalog, PolicyConfig(), telemetry=telemetry).deadline
            if d is None:
                continue
            assert d.at <= d.latest_at
            if d.cause is not None:
                assert d.update_by_earliest >= catalog.earliest_release(release).date


@pytest.mark.parametrize(("build", "rule", "cause", "at", "latest_at"), BUNDLED_EXPECTED)
def test_bundled_deadlines_hand_computed(
    build: int, rule: str, cause: int | None, at: str, latest_at: str
) -> None:
    catalog = load_bundled()
    release = next(r for r in catalog.releases if r.build == build)
    a = assess(release.version, catalog, PolicyConfig())
    assert a.known
    assert a.deadline is not None
    assert a.deadline.rule == rule
    assert (a.deadline.cause.build if a.deadline.cause else None) == cause
    assert a.deadline.at == utc(f"{at}T00:00:00")
    assert a.deadline.latest_at == utc(f"{latest_at}T00:00:00")


def test_bundled_explanations() -> None:
    catalog = load_bundled()
    a = run("11.17.2.0 build 52100", catalog)
    assert a.deadline is not None
    assert a.deadline.explanation == (
        "6 months after build 53100 (released by 2026-03-16; earliest possible release "
        "2024-12-03, as build 52100 was released after 2024-12-03, by 2025-04-29; latest "
        "possible release 2026-03-16)"
    )
    a = run("11.17.2.0 build 53100", catalog)
    assert a.deadline is not None
    assert a.deadline.explanation == "6 months after build 56200 (released 2026-08-17)"


def test_bundled_newest_and_other_facts() -> None:
    catalog = load_bundled()
    a = run("v11.17.2.0 build 56200 i86_n3", catalog)
    assert (a.known, a.newer_releases, a.deadline) == (True, 0, None)
    assert a.release_time == utc("2026-08-17T00:00:00")
    a = run("11.16.6.0. build 35000", catalog)  # telemetry ProductVersion as seen in the wild
    assert a.known is True  # the catalog lists build 35000 as 11.17.2.0: the build decides
    assert a.newer_releases == 17
    assert a.release_time == utc("2021-06-16T00:00:00")
    a = run("11.17.2.0 build 44000", catalog)
    assert a.known and a.newer_releases == 9
    assert a.release_time == utc("2024-03-06T00:00:00")
    assert not a.las_supported
    a = run("11.17.2.0 build 50000", catalog)  # never released: unknown, between 49000 and 51000
    assert (a.known, a.newer_releases) == (False, 4)
    assert a.deadline is not None and a.deadline.cause is not None
    assert a.deadline.cause.build == 51000
