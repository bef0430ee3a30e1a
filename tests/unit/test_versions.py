"""Parsing and ordering of License Server version strings."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from citrix_license_exporter.citrix.versions import (
    MAX_VERSION_TEXT,
    LicenseServerVersion,
    VersionParseError,
    parse_version,
)


def v(version: str, build: int) -> LicenseServerVersion:
    return LicenseServerVersion(Version(version), build)


@pytest.mark.parametrize(
    ("text", "version", "build"),
    [
        # Windows Uninstall DisplayVersion
        ("11.17.2.0 build 44000", "11.17.2.0", 44000),
        # SLVersion from the licensing SDK, with platform suffix
        ("v11.17.2.0 build 56200 i86_n3", "11.17.2.0", 56200),
        # telemetry ProductVersion with the stray dot
        ("11.16.6.0. build 35000", "11.16.6.0", 35000),
        # case, spacing, tabs, non-breaking space, surrounding blanks
        ("11.17.2.0 Build 44000", "11.17.2.0", 44000),
        ("11.17.2.0 BUILD 44000", "11.17.2.0", 44000),
        ("  11.17.2.0   build\t44000  ", "11.17.2.0", 44000),
        ("11.17.2.0\u00a0build 44000", "11.17.2.0", 44000),
        ("V11.17.2.0 BUILD 56200 I86_N3", "11.17.2.0", 56200),
        ("v 11.17.2.0 build 56200", "11.17.2.0", 56200),
        # documentation and download page spellings
        ("11.17.2 Build 53100", "11.17.2.0", 53100),
        ("11.17.2.0 (Build 56200)", "11.17.2.0", 56200),
        ("11.17.2.0, build 56200", "11.17.2.0", 56200),
        ("11.17.2.0 build: 56200", "11.17.2.0", 56200),
        ("11.17.2.0 b56200", "11.17.2.0", 56200),
        ("11.17.2.0build56200", "11.17.2.0", 56200),
        ("11.14.0.1 Build 21103", "11.14.0.1", 21103),
        # assumed registry forms: build embedded as the last dotted part
        ("11.17.2.56200", "11.17.2.0", 56200),
        ("11.17.2.0.56200", "11.17.2.0", 56200),
        ("v11.17.2.0.56200", "11.17.2.0", 56200),
    ],
)
def test_accepts_formats_seen_in_the_wild(text: str, version: str, build: int) -> None:
    parsed = parse_version(text)
    assert parsed == v(version, build)
    assert parsed.build == build
    assert str(parsed.version) == version


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "build 44000",
        "11.17.2.0",  # no build
        "11.17.2.1",  # four parts, last one too small to be a build
        "11.17.2.0.5",
        "11",
        "11 build 44000",
        "11.17.2.0.1 build 44000",  # five parts plus a build
        "11.17.2.0 build",
        "11.17.2.0 build 0",
        "11.17.2.0 build -5",
        "11.17.2.0 build 44000 12345",  # trailing number is not a platform
        "11.17.2.0 build 1234567890",  # more than nine digits
        "11.17.2.0 build 4400O",  # letter O
        "11.17.2.0 build \uff14\uff14\uff10\uff10\uff10",  # full-width digits
        "\u0661\u0661.\u0661\u0667.\u0662.\u0660 build 44000",  # Arabic-Indic digits
        "11.17.2.0 build 44000; rm -rf /",
        "11.17.2.0\x00 build 44000",
        "11..17.2.0 build 44000",
        "1234567.1 build 1",  # version part longer than six digits
        "11.17.2.0 build 44000 a b c d",  # more than three suffix words
        "x" * (MAX_VERSION_TEXT + 1),
        "11.17.2.0 build 44000" + " " * MAX_VERSION_TEXT,
    ],
)
def test_rejects_garbage(text: str) -> None:
    with pytest.raises(VersionParseError):
        parse_version(text)


def test_rejects_non_text() -> None:
    with pytest.raises(VersionParseError):
        parse_version(44000)  # type: ignore[arg-type]


def test_version_parse_error_is_a_value_error() -> None:
    assert issubclass(VersionParseError, ValueError)


def test_str_is_canonical() -> None:
    assert str(parse_version("v11.17.2.0 build 56200 i86_n3")) == "11.17.2.0 build 56200"
    assert str(parse_version("11.17.2 build 53100")) == "11.17.2.0 build 53100"


def test_of_builds_and_validates() -> None:
    assert LicenseServerVersion.of("11.17.2", 53100) == v("11.17.2.0", 53100)
    for version, build in [("11.17.2.0.0", 1), ("11", 1), ("a.b", 1), ("11.17.2.0", 0)]:
        with pytest.raises(VersionParseError):
            LicenseServerVersion.of(version, build)


def test_ordering_by_version_then_build() -> None:
    texts = [
        "11.17.2.0 build 56200",
        "11.16.6.0 build 34000",
        "11.17.2.0 build 40000",
        "11.16.3.0 build 30000",
        "11.17.2.0 build 52100",
        "11.17.2.0 build 9",  # a low build on a newer version is still newer
    ]
    ordered = [str(x) for x in sorted(parse_version(t) for t in texts)]
    assert ordered == [
        "11.16.3.0 build 30000",
        "11.16.6.0 build 34000",
        "11.17.2.0 build 9",
        "11.17.2.0 build 40000",
        "11.17.2.0 build 52100",
        "11.17.2.0 build 56200",
    ]
    # numeric, not textual, comparison of parts
    assert parse_version("11.9.0.0 build 1") < parse_version("11.10.0.0 build 1")
    assert parse_version("11.17.2.0 build 9000") < parse_version("11.17.2.0 build 10000")


def test_equal_versions_hash_equal() -> None:
    a = parse_version("11.17.2 build 53100")
    b = parse_version("11.17.2.0 build 53100")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


# --------------------------------------------------------------------------- properties

parts = st.lists(st.integers(min_value=0, max_value=999_999), min_size=2, max_size=4)
builds = st.integers(min_value=1, max_value=999_999_999)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_version_parse_error(text: str) -> None:
    try:
        result = parse_version(text)
    except VersionParseError:
        return
    assert isinstance(result, LicenseServerVersion)
    assert result.build > 0


@given(st.text(alphabet="0123456789.vVbBuildUILD ()_,:i86n", max_size=60))
def test_version_like_text_parses_or_raises_version_parse_error(text: str) -> None:
    with contextlib.suppress(VersionParseError):
        parse_version(text)


@given(parts, builds, st.sampled_from(["{v} build {b}", "v{v} build {b} i86_n3", "{v}. build {b}"]))
def test_round_trip(numbers: list[int], build: int, template: str) -> None:
    dotted = ".".join(str(n) for n in numbers)
    parsed = parse_version(template.format(v=dotted, b=build))
    assert parsed.build == build
    padded = numbers + [0] * (4 - len(numbers))
    assert parsed.version.release == tuple(padded)
    assert parse_version(str(parsed)) == parsed


@given(st.lists(st.tuples(parts, builds), min_size=1, max_size=20))
def test_ordering_matches_numeric_tuples(items: list[tuple[list[int], int]]) -> None:
    def key(item: tuple[list[int], int]) -> tuple[tuple[int, ...], int]:
        numbers, build = item
        release = tuple(numbers + [0] * (4 - len(numbers)))
        return release, build

    parsed = [
        parse_version(f"{'.'.join(str(n) for n in numbers)} build {build}")
        for numbers, build in items
    ]
    expected = sorted(items, key=key)
    assert [(x.version.release, x.build) for x in sorted(parsed)] == [key(i) for i in expected]
    for a, b in itertools.pairwise(parsed):
        ka = (a.version.release, a.build)
        kb = (b.version.release, b.build)
        assert (a < b) == (ka < kb)
        assert (a == b) == (ka == kb)
