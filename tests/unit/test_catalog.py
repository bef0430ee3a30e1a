"""The release catalog: validation, the bundled file, lookups, derived bounds and merging."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
import yaml

from citrix_license_exporter.citrix.catalog import (
    MAX_RELEASES,
    Catalog,
    CatalogError,
    Release,
    load_bundled,
    merge,
    parse_catalog_document,
    parse_releases,
)
from citrix_license_exporter.citrix.versions import LicenseServerVersion, parse_version

D = date.fromisoformat


def rel(
    build: int,
    *,
    version: str = "11.17.2.0",
    released: str | None = None,
    after: str | None = None,
    by: str | None = None,
    origin: str = "test",
    source: str = "a test",
) -> Release:
    return Release(
        version=LicenseServerVersion.of(version, build),
        released=D(released) if released else None,
        released_after=D(after) if after else None,
        released_by=D(by) if by else None,
        source=source,
        notes="",
        origin=origin,
    )


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "11.17.2.0",
        "build": 56200,
        "released": date(2026, 8, 17),
        "source": "Citrix downloads",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def problems_of(raw: object) -> list[tuple[str, str]]:
    return parse_releases(raw, origin="config", path="catalog.releases")[1]


def keys_of(raw: object) -> list[str]:
    return [key for key, _ in problems_of(raw)]


# --------------------------------------------------------------------------- bundled file


def test_bundled_catalog_loads_and_every_entry_has_a_source() -> None:
    catalog = load_bundled()
    assert catalog.generated == date(2026, 12, 1)
    assert len(catalog.releases) == 23
    assert catalog.counts_by_origin() == {"bundled": 23}
    for r in catalog.releases:
        assert r.source.strip(), r
        assert r.origin == "bundled"
        assert r.released or r.released_after or r.released_by
    builds = [r.build for r in catalog.releases]
    assert builds == sorted(builds)
    assert len(set(builds)) == len(builds)
    assert [r.version for r in catalog.releases] == sorted(r.version for r in catalog.releases)


def test_bundled_sources_cite_public_pages_not_internal_notes() -> None:
    """Issue 14 item 6: every source names a public page and says what it states; no
    internal wording ("Project domain brief") reaches `catalog show --build`."""
    for r in load_bundled().releases:
        assert "brief" not in r.source.lower(), r.build
        assert "project" not in r.source.lower(), r.build
        # a URL, except the one blog post whose URL was not recorded (title and date given)
        assert "https://" in r.source or "URL was not recorded" in r.source, r.build


#: Issue 14 item 6 and the reference's "Evidence of 2026-12": the tightened and derived bounds.
TIGHTENED = {
    # build: (released_after, released_by)
    41000: ("2022-10-19", "2023-03-09"),  # by: 42000 installed by 2023-03-09
    42000: (None, "2023-03-09"),  # jinna-i upload log, t=1678364711 (2023-03-09T12:25:11Z)
    43000: ("2023-03-20", "2024-03-06"),  # after: jinna-i (2023-03-20) names 42000 as current
    46000: (None, "2024-03-06"),  # Stalhood 2203 LTSR page of 2024-03-06 names 46000
    47000: ("2024-03-06", "2024-04-15"),  # Stalhood 2402 changelog 2024-04-15
    48000: ("2024-04-15", "2024-08-20"),  # after: 47000 current on 2024-04-15
    49000: (None, "2024-08-20"),  # "2024 Aug 20 - updated for CU1"
    51000: ("2024-08-20", "2024-12-03"),  # Stalhood page dated 2024-12-03 names 51000
    52100: ("2024-12-03", "2025-04-29"),  # after: 51000 current on 2024-12-03
}


def test_bundled_bounds_follow_the_evidence() -> None:
    catalog = load_bundled()
    for build, (after, by) in TIGHTENED.items():
        r = catalog.find(parse_version(f"11.17.2.0 build {build}"))
        assert r is not None
        assert (r.released_after, r.released_by) == (
            D(after) if after else None, D(by) if by else None,
        ), build


def test_bundled_catalog_has_every_build_of_the_brief() -> None:
    builds = {r.build for r in load_bundled().releases}
    assert builds == {
        30000, 31000, 32000, 33000, 34000, 35000, 36000, 37000, 39000, 40000, 41000,
        42000, 43000, 44000, 45000, 46000, 47000, 48000, 49000, 51000, 52100, 53100, 56200,
    }  # fmt: skip


def test_bundled_exact_dates_and_versions() -> None:
    catalog = load_bundled()
    exact = {r.build: r.released for r in catalog.releases if r.date_kind == "exact"}
    assert exact == {39000: D("2022-05-11"), 40000: D("2022-10-19"), 56200: D("2026-08-17")}
    assert catalog.find(parse_version("11.16.3.0 build 30000")) is not None
    assert catalog.find(parse_version("11.16.6.0. build 34000")) is not None
    latest = catalog.latest()
    assert latest is not None and latest.build == 56200


def test_bundled_is_cached() -> None:
    assert load_bundled() is load_bundled()


# --------------------------------------------------------------------------- parse_releases


def test_valid_entries_parse_with_origin() -> None:
    raw = [
        entry(),
        entry(build=53100, released=_DROP, released_by=date(2026, 3, 16), notes="  LAS  "),
        entry(
            build=31000,
            version="11.16.6.0",
            released=_DROP,
            released_after="2020-03-26",  # ISO text is accepted (JSON has no dates)
            released_by="2020-06-17",
        ),
    ]
    releases, problems = parse_releases(raw, origin="config", path="catalog.releases")
    assert problems == []
    assert [r.build for r in releases] == [56200, 53100, 31000]
    assert all(r.origin == "config" for r in releases)
    assert releases[1].notes == "LAS"
    assert releases[2].released_after == D("2020-03-26")
    assert releases[2].version == LicenseServerVersion.of("11.16.6.0", 31000)


def test_version_may_have_two_to_four_parts() -> None:
    releases, problems = parse_releases([entry(version="11.17.2")], "config", "r")
    assert problems == []
    assert str(releases[0].version) == "11.17.2.0 build 56200"


def test_not_a_list() -> None:
    assert problems_of({"version": "11.17.2.0"}) == [
        ("catalog.releases", "expected a list of releases")
    ]
    assert keys_of(None) == ["catalog.releases"]


def test_too_many_entries() -> None:
    problems = problems_of([entry(build=i + 1) for i in range(MAX_RELEASES + 1)])
    assert len(problems) == 1
    assert problems[0][0] == "catalog.releases"
    assert "at most" in problems[0][1]


def test_entry_not_a_mapping() -> None:
    assert keys_of(["11.17.2.0 build 1"]) == ["catalog.releases[0]"]


def test_unknown_key() -> None:
    assert keys_of([entry(relased=date(2026, 1, 1))]) == ["catalog.releases[0].relased"]


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        (_DROP, "required"),
        (11.17, "quoted string"),
        (1117, "quoted string"),
        ("11.17.2.0 build 56200", "dotted version"),
        ("eleven", "dotted version"),
        ("11", "dotted version"),
        ("11.17.2.0.0", "dotted version"),
    ],
)
def test_bad_version(value: object, reason_part: str) -> None:
    problems = problems_of([entry(version=value)])
    assert [k for k, _ in problems] == ["catalog.releases[0].version"]
    assert reason_part in problems[0][1]


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        (_DROP, "required"),
        (0, "positive"),
        (-1, "positive"),
        (True, "positive"),
        ("56200", "positive"),
        (56200.0, "positive"),
        (10**9, "positive"),
    ],
)
def test_bad_build(value: object, reason_part: str) -> None:
    problems = problems_of([entry(build=value)])
    assert [k for k, _ in problems] == ["catalog.releases[0].build"]
    assert reason_part in problems[0][1]


@pytest.mark.parametrize("key", ["released", "released_after", "released_by"])
@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-02-30",
        "2026-8-17",
        20260817,
        datetime(2026, 8, 17, 12, 0),  # a timestamp, not a day
        None,  # key present but empty
        date(1989, 12, 31),
        date(3000, 1, 1),
    ],
)
def test_bad_date(key: str, value: object) -> None:
    item = entry(released=_DROP)
    item[key] = value
    problems = problems_of([item])
    assert f"catalog.releases[0].{key}" in [k for k, _ in problems]


def test_exact_date_and_bounds_are_exclusive() -> None:
    problems = problems_of([entry(released_by=date(2026, 9, 1))])
    assert problems == [
        (
            "catalog.releases[0]",
            "give either released (exact date) or released_after/released_by (bounds)",
        )
    ]


def test_a_date_is_required() -> None:
    problems = problems_of([entry(released=_DROP)])
    assert problems == [
        ("catalog.releases[0]", "one of released, released_after or released_by is required")
    ]


def test_after_must_not_pass_by() -> None:
    problems = problems_of(
        [entry(released=_DROP, released_after=date(2026, 5, 2), released_by=date(2026, 5, 1))]
    )
    assert [k for k, _ in problems] == ["catalog.releases[0].released_after"]
    # equal bounds are fine (released that day, but recorded as bounds)
    assert (
        problems_of(
            [entry(released=_DROP, released_after=date(2026, 5, 1), released_by=date(2026, 5, 1))]
        )
        == []
    )


@pytest.mark.parametrize("value", [_DROP, "", "   ", 42, "x" * 2001, None])
def test_bad_source(value: object) -> None:
    assert keys_of([entry(source=value)]) == ["catalog.releases[0].source"]


@pytest.mark.parametrize("value", [42, ["a"], "x" * 2001])
def test_bad_notes(value: object) -> None:
    assert keys_of([entry(notes=value)]) == ["catalog.releases[0].notes"]


def test_duplicate_build_rejected_even_across_versions() -> None:
    raw = [entry(), entry(source="again"), entry(version="11.18.0.0")]
    releases, problems = parse_releases(raw, "config", "catalog.releases")
    assert [r.source for r in releases] == ["Citrix downloads"]
    assert problems == [
        ("catalog.releases[1].build", "duplicate build 56200 (also at catalog.releases[0])"),
        ("catalog.releases[2].build", "duplicate build 56200 (also at catalog.releases[0])"),
    ]


def test_releases_out_of_version_order_are_reported() -> None:
    raw = [
        entry(build=40000, released=date(2022, 10, 19)),
        entry(build=39000, released=_DROP, released_by=date(2022, 5, 1), released_after=None),
        entry(build=38000, released=_DROP, released_after=date(2023, 1, 1)),
    ]
    problems = problems_of([{k: v for k, v in e.items() if v is not None} for e in raw])
    # 38000 came out after 2023-01-01, so 39000 (by 2022-05-01) and 40000 cannot be newer.
    assert [k for k, _ in problems] == ["catalog.releases[1]", "catalog.releases[0]"]
    assert "version order" in problems[0][1]


def test_problems_of_several_entries_are_all_listed_and_valid_ones_kept() -> None:
    raw = [entry(build=1), {"build": "x"}, entry(build=2, source=""), entry(build=3)]
    releases, problems = parse_releases(raw, "config", "catalog.releases")
    assert [r.build for r in releases] == [1, 3]
    assert sorted({k for k, _ in problems}) == [
        "catalog.releases[1]",
        "catalog.releases[1].build",
        "catalog.releases[1].source",
        "catalog.releases[1].version",
        "catalog.releases[2].source",
    ]


# --------------------------------------------------------------------------- whole documents

GOOD = """\
schema_version: 1
generated: 2026-11-28
releases:
  - version: "11.17.2.0"
    build: 53100
    released_by: 2026-03-16
    source: LAS docs
  - version: "11.17.2.0"
    build: 56200
    released: 2026-08-17
    source: Citrix downloads
    notes: newest
"""


def test_parse_document() -> None:
    catalog = parse_catalog_document(GOOD, "https://example.org/releases.yaml")
    assert catalog.generated == date(2026, 11, 28)
    assert [r.build for r in catalog.releases] == [53100, 56200]
    assert catalog.counts_by_origin() == {"https://example.org/releases.yaml": 2}
    # bytes, with a UTF-8 byte order mark, give the same
    assert parse_catalog_document(b"\xef\xbb\xbf" + GOOD.encode(), "x").releases == tuple(
        Release(**{**r.__dict__, "origin": "x"}) for r in catalog.releases
    )


def test_generated_is_optional() -> None:
    doc = GOOD.replace("generated: 2026-11-28\n", "")
    assert parse_catalog_document(doc, "x").generated is None


def _problems(data: bytes | str, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(CatalogError) as info:
        parse_catalog_document(data, "file.yaml", **kw)
    assert isinstance(info.value, ValueError)
    assert all(line.startswith("file.yaml: ") for line in info.value.lines())
    return info.value.problems


def test_document_too_large() -> None:
    (problem,) = _problems(GOOD, max_bytes=100)
    assert "limit is 100" in problem[1]
    (problem,) = _problems(GOOD.encode(), max_bytes=100)
    assert "limit is 100" in problem[1]
    # the limit counts bytes, not characters
    (problem,) = _problems("é" * 60, max_bytes=100)
    assert "120 bytes" in problem[1]


def test_document_not_utf8() -> None:
    (problem,) = _problems(b"schema_version: 1\nreleases: []\n# \xff\xfe\n")
    assert "UTF-8" in problem[1]


def test_document_invalid_yaml_names_the_line() -> None:
    (problem,) = _problems("schema_version: 1\nreleases: [\n  - {a: 1\n")
    assert problem[0].startswith("line ")
    assert problem[1].startswith("invalid YAML")


def test_document_impossible_yaml_date() -> None:
    # Issue 17 item 5: reported at its key like any bad date (it used to fail the whole load
    # as "invalid YAML value", hiding every other problem).
    (problem,) = _problems(GOOD.replace("2026-03-16", "2026-02-30"))
    assert problem == ("releases[0].released_by",
                       "expected a date YYYY-MM-DD between 1990-01-01 and 2999-12-31")


def test_document_key_given_twice_is_refused() -> None:
    (problem,) = _problems(GOOD.replace("    source: LAS docs\n",
                                        "    source: LAS docs\n    build: 53200\n"))
    assert problem == ("releases[0].build",
                       "key given twice, on lines 5 and 8; keep one of them")


def test_document_python_tags_are_refused() -> None:
    (problem,) = _problems("schema_version: 1\nreleases: !!python/object/apply:os.getcwd []\n")
    assert "invalid YAML" in problem[1]


@pytest.mark.parametrize("doc", ["", "[]", "42", "just text"])
def test_document_must_be_a_mapping(doc: str) -> None:
    (problem,) = _problems(doc)
    assert problem[0] == ""


def test_document_unknown_top_level_key() -> None:
    assert ("release", "unknown key") in _problems(GOOD + "release: []\n")


@pytest.mark.parametrize(
    ("line", "reason_part"),
    [
        ("", "required"),
        ("schema_version: '1'\n", "whole number"),
        ("schema_version: true\n", "whole number"),
        ("schema_version: 2\n", "unsupported schema_version 2"),
    ],
)
def test_document_schema_version(line: str, reason_part: str) -> None:
    problems = _problems(GOOD.replace("schema_version: 1\n", line))
    assert [k for k, _ in problems] == ["schema_version"]
    assert reason_part in problems[0][1]


@pytest.mark.parametrize("value", ["soon", "2026-11-28T10:00:00", "20261128"])
def test_document_generated_must_be_a_date(value: str) -> None:
    problems = _problems(GOOD.replace("generated: 2026-11-28", f"generated: {value}"))
    assert [k for k, _ in problems] == ["generated"]


def test_document_releases_required() -> None:
    assert _problems("schema_version: 1\n") == [("releases", "required")]


def test_document_lists_every_problem_with_key_paths() -> None:
    doc = GOOD.replace("released_by: 2026-03-16", "released_by: 2026-13-01").replace(
        "schema_version: 1", "schema_version: 3\nextra: 1"
    )
    doc = doc.replace("released_by: 2026-13-01", "released_by: '2026-13-01'")
    problems = _problems(doc)
    assert sorted(k for k, _ in problems) == ["extra", "releases[0].released_by", "schema_version"]


def test_published_file_round_trips_through_yaml() -> None:
    from importlib import resources

    text = resources.files("citrix_license_exporter.citrix").joinpath("releases.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["schema_version"] == 1
    assert parse_catalog_document(yaml.safe_dump(doc, allow_unicode=True), "x").releases == tuple(
        Release(**{**r.__dict__, "origin": "x"}) for r in load_bundled().releases
    )


# --------------------------------------------------------------------------- Catalog


def test_catalog_sorts_and_rejects_duplicate_builds() -> None:
    catalog = Catalog((rel(3, released="2022-01-03"), rel(1, released="2022-01-01")))
    assert [r.build for r in catalog.releases] == [1, 3]
    with pytest.raises(ValueError, match="duplicate build 1"):
        Catalog((rel(1, released="2022-01-01"), rel(1, version="11.18.0.0", released="2023-01-01")))


def test_find_matches_by_build() -> None:
    catalog = Catalog((rel(56200, released="2026-08-17"),))
    found = catalog.find(parse_version("v11.17.2.0 build 56200 i86_n3"))
    assert found is not None and found.build == 56200
    assert catalog.find(parse_version("11.17.2 build 56200")) is found
    # builds are unique; a disagreeing version text does not hide the entry
    assert catalog.find(parse_version("11.16.6.0. build 56200")) is found
    assert catalog.find(parse_version("11.17.2.0 build 56201")) is None


def test_newer_than_a_known_build_follows_the_catalog_entry() -> None:
    catalog = Catalog((rel(35000, released="2021-06-01"), rel(36000, released="2021-09-01")))
    # telemetry spelling 11.16.6.0 for the catalog's 11.17.2.0 build 35000
    newer = catalog.newer_than(parse_version("11.16.6.0. build 35000"))
    assert [r.build for r in newer] == [36000]


def test_newer_than_and_latest() -> None:
    catalog = Catalog(
        (
            rel(30000, version="11.16.3.0", by="2020-03-26"),
            rel(40000, released="2022-10-19"),
            rel(56200, released="2026-08-17"),
        )
    )
    assert [r.build for r in catalog.newer_than(parse_version("11.16.3.0 build 30000"))] == [
        40000,
        56200,
    ]
    # an unknown build in between
    assert [r.build for r in catalog.newer_than(parse_version("11.17.2.0 build 45000"))] == [56200]
    assert catalog.newer_than(parse_version("11.17.2.0 build 56200")) == ()
    assert catalog.newer_than(parse_version("11.17.2.0 build 99999")) == ()
    # version before build: 11.17.2.0 build 35000 is newer than 11.16.6.0 build 39999
    assert len(catalog.newer_than(parse_version("11.16.6.0 build 39999"))) == 2
    latest = catalog.latest()
    assert latest is not None and latest.build == 56200
    assert Catalog().latest() is None
    assert Catalog().counts_by_origin() == {}


def test_release_helpers() -> None:
    exact = rel(1, released="2022-10-19")
    assert exact.date_kind == "exact"
    assert exact.earliest_release == exact.latest_release == D("2022-10-19")
    assert exact.describe_date() == "released 2022-10-19"
    both = rel(2, after="2022-10-19", by="2023-03-20")
    assert both.date_kind == "bounded"
    assert (both.earliest_release, both.latest_release) == (D("2022-10-19"), D("2023-03-20"))
    assert both.describe_date() == "released after 2022-10-19, by 2023-03-20"
    by_only = rel(3, by="2024-12-03")
    assert (by_only.earliest_release, by_only.latest_release) == (None, D("2024-12-03"))
    assert by_only.describe_date() == "released by 2024-12-03"
    after_only = rel(4, after="2020-03-26")
    assert (after_only.earliest_release, after_only.latest_release) == (D("2020-03-26"), None)
    assert after_only.build == 4


class TestDerivedBounds:
    """Releases come out in version order, so neighbours bound each other."""

    catalog = Catalog(
        (
            rel(30000, version="11.16.3.0", by="2020-03-26"),  # nothing below: fallback
            rel(31000, version="11.16.6.0", after="2020-03-26", by="2020-06-17"),
            rel(40000, released="2022-10-19"),
            rel(41000, after="2022-10-19", by="2023-03-20"),
            rel(51000, by="2024-12-03"),
            rel(52100, by="2025-04-29"),
            rel(55000, after="2025-01-01"),  # after-only: upper bound from 56200
            rel(56200, released="2026-08-17"),
        )
    )

    def bound(self, build: int, side: str) -> tuple[date, str, int]:
        release = next(r for r in self.catalog.releases if r.build == build)
        b = getattr(self.catalog, side)(release)
        return b.date, b.basis, b.from_release.build

    def test_exact(self) -> None:
        assert self.bound(40000, "earliest_release") == (D("2022-10-19"), "own", 40000)
        assert self.bound(40000, "latest_release") == (D("2022-10-19"), "own", 40000)

    def test_own_after(self) -> None:
        assert self.bound(31000, "earliest_release") == (D("2020-03-26"), "own", 31000)

    def test_by_only_takes_the_closest_lower_bound_below(self) -> None:
        # 41000's after equals 40000's exact date: the closer release (41000) is named
        assert self.bound(51000, "earliest_release") == (D("2022-10-19"), "neighbour", 41000)
        assert self.bound(52100, "earliest_release") == (D("2022-10-19"), "neighbour", 41000)

    def test_nothing_below_falls_back_to_released_by(self) -> None:
        assert self.bound(30000, "earliest_release") == (D("2020-03-26"), "fallback", 30000)

    def test_latest_uses_later_upper_bounds(self) -> None:
        assert self.bound(55000, "latest_release") == (D("2026-08-17"), "neighbour", 56200)
        assert self.bound(51000, "latest_release") == (D("2024-12-03"), "own", 51000)
        assert self.bound(30000, "latest_release") == (D("2020-03-26"), "own", 30000)

    def test_latest_fallback_to_after(self) -> None:
        catalog = Catalog((rel(1, after="2020-01-01"),))
        b = catalog.latest_release(catalog.releases[0])
        assert (b.date, b.basis) == (D("2020-01-01"), "fallback")

    def test_describe(self) -> None:
        release = next(r for r in self.catalog.releases if r.build == 52100)
        assert self.catalog.earliest_release(release).describe() == (
            "2022-10-19, as build 41000 was released after 2022-10-19, by 2023-03-20"
        )
        release = next(r for r in self.catalog.releases if r.build == 31000)
        assert self.catalog.earliest_release(release).describe() == "2020-03-26"

    def test_contradicting_neighbours_keep_the_earlier_date(self) -> None:
        catalog = Catalog((rel(1, after="2024-01-01"), rel(2, by="2023-01-01")))
        b = catalog.earliest_release(catalog.releases[1])
        assert (b.date, b.basis) == (D("2023-01-01"), "own")
        catalog = Catalog((rel(1, by="2024-01-01"), rel(2, after="2025-01-01")))
        b = catalog.latest_release(catalog.releases[0])
        assert (b.date, b.basis) == (D("2024-01-01"), "own")
        catalog = Catalog((rel(1, after="2025-01-01"), rel(2, by="2024-01-01")))
        b = catalog.latest_release(catalog.releases[0])
        assert (b.date, b.basis) == (D("2025-01-01"), "own")

    def test_release_not_in_catalog(self) -> None:
        with pytest.raises(ValueError, match="not this catalog's entry"):
            self.catalog.earliest_release(rel(12345, released="2020-01-01"))
        with pytest.raises(ValueError, match="not this catalog's entry"):
            self.catalog.latest_release(rel(40000, released="2020-01-01"))


# --------------------------------------------------------------------------- merge


def test_merge_first_catalog_wins_per_build() -> None:
    config = Catalog((rel(56200, released="2026-08-18", origin="config"),))
    remote = Catalog(
        (
            rel(56200, released="2026-08-17", origin="https://x/releases.yaml"),
            rel(57000, by="2026-11-01", origin="https://x/releases.yaml"),
        ),
        generated=D("2026-11-20"),
    )
    bundled = Catalog(
        (rel(40000, released="2022-10-19", origin="bundled"),),
        generated=D("2026-11-28"),
    )
    merged = merge(config, remote, bundled)
    assert [(r.build, r.origin) for r in merged.releases] == [
        (40000, "bundled"),
        (56200, "config"),
        (57000, "https://x/releases.yaml"),
    ]
    found = merged.find(parse_version("11.17.2.0 build 56200"))
    assert found is not None and found.released == D("2026-08-18")
    assert merged.generated == D("2026-11-28")
    assert merged.counts_by_origin() == {"bundled": 1, "config": 1, "https://x/releases.yaml": 1}
    # reversed precedence
    found = merge(remote, config).find(parse_version("11.17.2.0 build 56200"))
    assert found is not None and found.origin == "https://x/releases.yaml"


def test_merge_with_nothing() -> None:
    assert merge() == Catalog()
    assert merge(Catalog()).generated is None
    bundled = load_bundled()
    assert merge(Catalog(), bundled).releases == bundled.releases
