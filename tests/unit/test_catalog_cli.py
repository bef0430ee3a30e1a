"""The catalog section of the configuration, catalog sources read from files, the refresher's
bookkeeping, and the ``catalog check`` / ``catalog show`` commands (no network here; the HTTPS
source is tested end to end in tests/e2e/test_catalog_refresh.py)."""

from __future__ import annotations

import io
import json
import re
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from citrix_license_exporter.app import effective_catalog
from citrix_license_exporter.catalog_cli import run_catalog_command
from citrix_license_exporter.catalog_sources import (
    CatalogRefresher,
    SourceError,
    load_source,
    read_file,
)
from citrix_license_exporter.citrix.catalog import load_bundled, parse_catalog_document
from citrix_license_exporter.citrix.versions import parse_version
from citrix_license_exporter.cli import build_parser, main
from citrix_license_exporter.config import (
    CATALOG_MAX_BYTES,
    CATALOG_REFRESH_INTERVAL,
    CATALOG_TIMEOUT,
    CatalogConfig,
    CatalogSource,
    ConfigError,
    parse_config,
    redact_url,
)

BUNDLED = load_bundled()
assert BUNDLED.generated is not None
G = BUNDLED.generated
BUNDLED_FILE = (
    Path(__file__).resolve().parents[2]
    / "exporter" / "citrix_license_exporter" / "citrix" / "releases.yaml"
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"


def doc(generated: date | None, *releases: tuple[int, str], extra: str = "") -> str:
    lines = ["schema_version: 1"]
    if generated is not None:
        lines.append(f"generated: {generated.isoformat()}")
    lines.append("releases:")
    for build, released in releases:
        lines += [
            '  - version: "11.17.2.0"',
            f"    build: {build}",
            f"    released: {released}",
            "    source: unit test",
        ]
    return "\n".join(lines) + "\n" + extra


def config(text: str, tmp_path: Path) -> object:
    return parse_config(textwrap.dedent(text), "cfg.yml", base_dir=tmp_path, environ={})


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(text, tmp_path)
    return info.value.lines()


# --------------------------------------------------------------------------- configuration


def test_catalog_section_defaults(tmp_path: Path) -> None:
    c = config("modules: {d: {}}\n", tmp_path)
    assert c.catalog == CatalogConfig()  # type: ignore[attr-defined]
    assert (CATALOG_REFRESH_INTERVAL, CATALOG_TIMEOUT, CATALOG_MAX_BYTES) == (
        86400.0, 30.0, 1_000_000,
    )


def test_catalog_section_full(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    c = config(
        """
        modules: {d: {}}
        catalog:
          releases:
            - {version: "11.17.2.0", build: 57000, released: 2026-12-01, source: mine}
          sources:
            - {url: "https://mirror.example/releases.yaml", ca_file: ca.pem}
            - {file: mirror/releases.yaml}
          refresh_interval: 6h
          max_bytes: 200000
          timeout: 10s
        """,
        tmp_path,
    )
    cat = c.catalog  # type: ignore[attr-defined]
    assert [r.build for r in cat.releases] == [57000]
    assert c.catalog_releases == cat.releases  # type: ignore[attr-defined]
    assert cat.sources == (
        CatalogSource(url="https://mirror.example/releases.yaml", ca_file=str(tmp_path / "ca.pem")),
        CatalogSource(file=str((tmp_path / "mirror" / "releases.yaml").resolve())),
    )
    assert (cat.refresh_interval, cat.max_bytes, cat.timeout) == (21600.0, 200000, 10.0)


def test_catalog_section_problems_have_key_paths(tmp_path: Path) -> None:
    lines = problems(
        """
        modules: {d: {}}
        catalog:
          sources:
            - {url: "http://mirror.example/releases.yaml"}
            - {url: "https://a.example/r.yaml", file: r.yaml}
            - {}
            - {file: r.yaml, ca_file: ca.pem}
            - {url: "https://a.example/r.yaml", ca_file: missing.pem}
            - {url: "https://b.example/r.yaml"}
            - {url: "https://b.example/r.yaml"}
            - "https://c.example/r.yaml"
            - {url: "https://d.example/r.yaml", tls: {}}
          refresh_interval: 500ms
          max_bytes: 0
          timeout: soon
          release: []
        """,
        tmp_path,
    )
    expected = [
        "catalog.sources[0].url: expected an https:// URL",
        "catalog.sources[1]: give exactly one of url, citrix_feed or file",
        "catalog.sources[2]: expected a mapping with url or citrix_feed (and optional ca_file) "
        "or file",
        "catalog.sources[3].ca_file: only a url or citrix_feed source takes a ca_file",
        "catalog.sources[4].ca_file: ",
        "catalog.sources[6]: source 'https://b.example/r.yaml' is listed twice "
        "(also catalog.sources[5])",
        "catalog.sources[7]: expected a mapping, got a string",
        "catalog.sources[8].tls: unknown key",
        "catalog.refresh_interval: must be at least 1s",
        "catalog.max_bytes: expected a positive integer",
        "catalog.timeout: 'soon' is not a duration",
        "catalog.release: unknown key",
    ]
    for start in expected:
        assert any(line.startswith("cfg.yml: " + start) for line in lines), (start, lines)


def test_credentials_in_a_bad_url_are_not_echoed(tmp_path: Path) -> None:
    lines = problems(
        'modules: {d: {}}\ncatalog: {sources: [{url: "http://me:hunter2@x.example/r?k=v"}]}\n',
        tmp_path,
    )
    assert lines and not any("hunter2" in line or "k=v" in line for line in lines)


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://mirror.example/releases.yaml", "https://mirror.example/releases.yaml"),
        ("https://u:pw@mirror.example:8443/r.yaml", "https://***@mirror.example:8443/r.yaml"),
        ("https://TOKEN@mirror.example/r.yaml", "https://***@mirror.example/r.yaml"),
        ("https://m.example/r.yaml?token=abc&ref=main#x", "https://m.example/r.yaml?token=***&ref=***"),
        ("https://[::1]:9443/r.yaml?flag", "https://[::1]:9443/r.yaml?flag"),
        ("https://m.example:bad/r", "<invalid URL>"),
    ],
)
def test_redact_url(url: str, label: str) -> None:
    assert redact_url(url) == label
    assert CatalogSource(url=url).label == label


# --------------------------------------------------------------------------- sources


def test_precedence_config_then_sources_then_bundled(tmp_path: Path) -> None:
    c = config(
        """
        modules: {d: {}}
        catalog:
          releases:
            - {version: "11.17.2.0", build: 56200, released: 2026-08-18, source: mine}
        """,
        tmp_path,
    )
    first = parse_catalog_document(
        doc(G, (56200, "2026-08-19"), (57000, "2026-12-01")), "first"
    )
    second = parse_catalog_document(
        doc(G, (57000, "2026-12-02"), (58000, "2026-12-20")), "second"
    )
    effective = effective_catalog(c, [first, second])  # type: ignore[arg-type]
    by_build = {r.build: r for r in effective.releases}
    assert (by_build[56200].origin, by_build[56200].released) == ("config", date(2026, 8, 18))
    assert (by_build[57000].origin, by_build[57000].released) == ("first", date(2026, 12, 1))
    assert by_build[58000].origin == "second"
    assert by_build[53100].origin == "bundled"
    assert effective.counts_by_origin() == {
        "config": 1, "first": 1, "second": 1, "bundled": len(BUNDLED.releases) - 1,
    }
    assert effective_catalog(config("modules: {d: {}}\n", tmp_path)) is BUNDLED  # type: ignore[arg-type]


def file_source(path: Path) -> CatalogSource:
    return CatalogSource(file=str(path))


def test_load_source_from_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(doc(G + timedelta(days=1), (57000, "2026-12-01")))
    catalog = load_source(file_source(path), max_bytes=10_000, timeout=1, not_older_than=G)
    assert [(r.build, r.origin) for r in catalog.releases] == [(57000, str(path))]

    path.write_text(doc(None, (57000, "2026-12-01")))
    with pytest.raises(SourceError, match="no generated date"):
        load_source(file_source(path), max_bytes=10_000, timeout=1)
    path.write_text(doc(G - timedelta(days=1), (57000, "2026-12-01")))
    with pytest.raises(SourceError, match=r"older than the catalog in use \(\S+, bundled\)"):
        load_source(file_source(path), max_bytes=10_000, timeout=1, not_older_than=G,
                    current_from="bundled")
    path.write_text(doc(G, (57000, "2026-12-01")) + "# " + "x" * 10_000 + "\n")
    with pytest.raises(SourceError, match="larger than 10000 bytes"):
        load_source(file_source(path), max_bytes=10_000, timeout=1)
    path.write_text(doc(G, (57000, "2026-02-30")))
    with pytest.raises(SourceError, match="invalid catalog"):
        load_source(file_source(path), max_bytes=10_000, timeout=1)
    path.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(SourceError, match="invalid YAML"):
        load_source(file_source(path), max_bytes=10_000, timeout=1)
    with pytest.raises(SourceError, match="cannot read"):
        read_file(str(tmp_path / "missing.yaml"), max_bytes=10)


def test_refresher_keeps_the_last_good_catalog(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(doc(G, (57000, "2026-12-01")))
    two.write_text(doc(G, (58000, "2026-12-20")))
    changes: list[int] = []
    clock = iter(range(1000, 2000))
    settings = CatalogConfig(sources=(file_source(one), file_source(two)))
    refresher = CatalogRefresher(settings, on_change=lambda: changes.append(1),
                                 clock=lambda: float(next(clock)))
    assert refresher.status().last_attempt_ok is None
    assert refresher.refresh() is True and changes == [1]
    assert [c.releases[0].build for c in refresher.catalogs()] == [57000, 58000]
    status = refresher.status()
    assert (status.sources, status.last_attempt_ok, status.last_success) == (2, True, 1000.0)

    one.write_text("schema_version: 2\n")  # refused: the last good copy stays
    two.write_text(doc(G + timedelta(days=1), (58000, "2026-12-21")))
    assert refresher.refresh() is True  # two changed
    assert [c.releases[0].released for c in refresher.catalogs()] == [
        date(2026, 12, 1), date(2026, 12, 21),
    ]
    status = refresher.status()
    assert (status.last_attempt_ok, status.last_success) == (False, 1000.0)
    assert refresher.source_states()[0].last_error is not None
    assert "unsupported schema_version 2" in str(refresher.source_states()[0].last_error)

    two.write_text(doc(G, (58000, "2026-12-22")))  # older than the copy in use: refused
    assert refresher.refresh() is False
    assert refresher.catalogs()[1].releases[0].released == date(2026, 12, 21)
    assert "older than the catalog in use" in str(refresher.source_states()[1].last_error)

    # Reload: `two` stays with its state, `one` goes, `three` is new and never read yet.
    three = tmp_path / "three.yaml"
    three.write_text(doc(G, (59000, "2027-01-05")))
    refresher.update(CatalogConfig(sources=(file_source(two), file_source(three))))
    assert [c.releases[0].build for c in refresher.catalogs()] == [58000, 59000]
    refresher.update(CatalogConfig())
    assert refresher.catalogs() == ()
    assert refresher.status().sources == 0


# --------------------------------------------------------------------------- catalog check


def run(*argv: str, now: datetime | None = None) -> tuple[int, str, str]:
    args = build_parser().parse_args(["catalog", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_catalog_command(args, out=out, err=err, now=now)
    return code, out.getvalue(), err.getvalue()


def test_check_the_bundled_catalog() -> None:
    code, out, err = run("check", str(BUNDLED_FILE))
    assert (code, err) == (0, "")
    assert out == (
        f"{BUNDLED_FILE}: OK ({len(BUNDLED.releases)} release(s), generated {G.isoformat()}; "
        "newest: build 56200, released 2026-08-17)\n"
    )


def test_check_lists_every_problem_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "schema_version: 1\nreleases:\n"
        '  - {version: 11.17, build: 1, released: 2020-01-01, source: s}\n'
        '  - {version: "11.17.2.0", build: 2, released_after: 2021-01-02, '
        "released_by: 2021-01-01, source: s}\n"
        '  - {version: "11.17.2.0", build: 3, released: 2021-05-01, source: ""}\n'
    )
    code, out, err = run("check", str(path))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{path}: releases[0].version: expected a quoted string like \"11.17.2.0\"",
        f"{path}: releases[1].released_after: 2021-01-02 is later than released_by 2021-01-01",
        f"{path}: releases[2].source: required: a non-empty text of at most 2000 characters",
        f"{path}: generated: required: the exporter refuses a catalog source without the date "
        "it was generated",
        f"{path}: INVALID (4 problem(s))",
    ]


def test_check_notes_a_file_older_than_the_bundled_catalog(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(doc(G - timedelta(days=30), (57000, "2026-12-01")))
    code, out, err = run("check", str(path))
    assert code == 0 and "OK (1 release(s)" in out
    assert "is older than this exporter's bundled catalog" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"\xff\xfe", "not UTF-8"),
        (b"a: [", "invalid YAML"),
        (b"x" * 1_000_001, "larger than 1000000 bytes"),
    ],
)
def test_check_unreadable_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run("check", str(path))
    assert code == 1 and message in err


def test_check_through_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "check", str(BUNDLED_FILE)]) == 0
    assert "OK (23 release(s)" in capsys.readouterr().out
    path = tmp_path / "c.yaml"
    path.write_text("schema_version: 1\n")
    assert main(["catalog", "check", str(path)]) == 1
    assert "releases: required" in capsys.readouterr().err


def test_check_lists_every_problem_around_a_bad_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 item 5: an impossible date (unquoted, so YAML reads it as a date) is named by
    its key path, and the other problems of the file are still listed."""
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        schema_version: 1
        generated: 2026-11-28
        releases:
          - {version: "11.17.2.0", build: 53100, released_by: 2026-02-30, source: LAS docs}
          - {version: "11.17.2.0", build: 0, released: 2026-08-17, source: downloads}
          - {version: 11.17, build: 56300, released: 2026-09-01, source: downloads}
          - {version: "11.17.2.0", build: 56400, released: 2026-09-31, source: ""}
          - {version: "11.17.2.0", build: 56500, released: 2026-10-01, sources: x}
        """))
    assert main(["catalog", "check", str(path)]) == 1
    err = capsys.readouterr().err
    for line in (
        "releases[0].released_by: expected a date YYYY-MM-DD",
        "releases[1].build: expected a positive whole number",
        "releases[2].version: expected a quoted string",
        "releases[3].released: expected a date YYYY-MM-DD",
        "releases[3].source: required",
        "releases[4].sources: unknown key",
        "INVALID (7 problem(s))",
    ):
        assert line in err, (line, err)


# --------------------------------------------------------------------------- catalog show

#: Worked out by hand (see the comment table in tests/unit/test_policy.py and docs/catalog.md):
#: build -> (rule, last day on time at the earliest, at the latest). 30000/39000: the fixed
#: 2023-03-31 deadline (CTX477614) wins over 40000's six months. 40000 onwards: six months after
#: the first newer release, whose bounds come from public pages (docs/assumptions.md "Release
#: dates"): 41000 after 2022-10-19 (40000's release day), by 2023-03-09 (42000 was installed
#: then); 43000 after 2023-03-20, by 2024-03-06; 47000 after 2024-03-06, by 2024-04-15; 51000
#: after 2024-08-20, by 2024-12-03; 52100 after 2024-12-03, by 2025-04-29; 53100 by 2026-03-16
#: (lower bound from 52100); 56200 on 2026-08-17 exactly.
HAND_COMPUTED = {
    30000: ("minimum_build_40000", "2023-03-31", "2023-03-31"),
    39000: ("minimum_build_40000", "2023-03-31", "2023-03-31"),
    40000: ("six_months_after_release", "2023-04-19", "2023-09-09"),
    42000: ("six_months_after_release", "2023-09-20", "2024-09-06"),
    46000: ("six_months_after_release", "2024-09-06", "2024-10-15"),
    47000: ("six_months_after_release", "2024-10-15", "2025-02-20"),
    49000: ("six_months_after_release", "2025-02-20", "2025-06-03"),
    51000: ("six_months_after_release", "2025-06-03", "2025-10-29"),
    52100: ("six_months_after_release", "2025-06-03", "2026-09-16"),
    53100: ("six_months_after_release", "2027-02-17", "2027-02-17"),
    56200: ("-", "no deadline", "-"),
}
ROW = re.compile(
    r"^(?P<build>\d+)\s+(?P<version>[\d.]+)\s+(?P<released>.+?)\s{2,}(?P<rule>\S+)\s+"
    r"(?P<update>no deadline|by \d{4}-\d\d-\d\d|between \d{4}-\d\d-\d\d and \d{4}-\d\d-\d\d)"
    r"\s+(?P<origin>\S+)$"
)


def _range(update: str) -> tuple[str, str]:
    """The UPDATE cell as (earliest, latest) last days on time."""
    if update == "no deadline":
        return "no deadline", "-"
    days = re.findall(r"\d{4}-\d\d-\d\d", update)
    return days[0], days[-1]


def table(out: str) -> dict[int, dict[str, str]]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            row = m.groupdict()
            row["at"], row["latest"] = _range(row["update"])
            rows[int(m["build"])] = row
    return rows


def no_config(tmp_path: Path) -> str:
    path = tmp_path / "cfg.yml"
    path.write_text("modules: {d: {}}\n")
    return str(path)


def test_show_bundled_matches_the_hand_computed_deadlines(tmp_path: Path) -> None:
    code, out, err = run("show", "--config.file", no_config(tmp_path))
    assert (code, err) == (0, "")
    rows = table(out)
    assert sorted(rows) == sorted(r.build for r in BUNDLED.releases)
    for build, (rule, at, latest) in HAND_COMPUTED.items():
        assert (rows[build]["rule"], rows[build]["at"], rows[build]["latest"]) == (
            rule, at, latest,
        ), build
        assert rows[build]["origin"] == "bundled"
    assert rows[35000]["released"] == "after 2021-03-17, by 2021-06-16"
    assert rows[56200]["released"] == "2026-08-17"
    # The range in words (issue 14 item 8), e.g. for 46000 "between 2024-09-06 and 2024-10-15".
    assert rows[46000]["update"] == "between 2024-09-06 and 2024-10-15"
    assert rows[53100]["update"] == "by 2027-02-17"
    lines = out.splitlines()
    why = lines[lines.index(next(line for line in lines if line.startswith("52100 "))) + 1]
    assert why.strip() == (
        "why: 6 months after build 53100 (released by 2026-03-16; earliest possible release "
        "2024-12-03, as build 52100 was released after 2024-12-03, by 2025-04-29; latest "
        "possible release 2026-03-16)"
    )
    assert f"Effective release catalog: 23 release(s), generated {G.isoformat()}" in out
    assert "Sources, first wins per build (releases used): bundled (23)" in out


def test_docs_table_agrees_with_the_hand_computed_deadlines() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Worked deadlines for the bundled catalog"):]
    found = {}
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rule, _cause, at, latest = ("-" if c == "\N{EN DASH}" else c for c in cells[1:])
            found[int(cells[0])] = (rule, at, latest)
    assert found == HAND_COMPUTED


def test_show_one_build_in_detail(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    code, out, _ = run("show", "--config.file", no_config(tmp_path), "--build", "52100",
                       "--build", "11.17.2.0 build 53100", now=now)
    assert code == 0
    assert "BUILD  VERSION" not in out  # no full table with --build
    assert textwrap.dedent("""\
        Build 52100 (11.17.2.0 build 52100)
          In the catalog:     yes, released after 2024-12-03, by 2025-04-29 (origin bundled)
          Newer releases:     2 (53100, 56200)
          Rule:               six_months_after_release, clock started by build 53100 (released by 2026-03-16, origin bundled)
          Update:             update between 2025-06-03 and 2026-09-16 (last day on time, end of day UTC)
          Overdue from:       2025-06-04 00:00 UTC at the earliest, 2026-09-17 00:00 UTC at the latest
          Explanation:        6 months after build 53100 (released by 2026-03-16; earliest possible release 2024-12-03, as build 52100 was released after 2024-12-03, by 2025-04-29; latest possible release 2026-03-16)
        """) in out  # noqa: E501
    assert "  On 2026-12-01:      overdue since 2026-09-17 at the latest (2025-06-04 at the earliest)" in out  # noqa: E501
    assert "Build 53100 (11.17.2.0 build 53100)" in out
    assert "  Update:             update by 2027-02-17 (last day on time, end of day UTC)\n" in out
    assert "  Overdue from:       2027-02-18 00:00 UTC\n" in out
    assert "in time: 78 day(s) left until the earliest possible deadline" in out


def test_show_one_build_possibly_overdue(tmp_path: Path) -> None:
    """Inside the range: late if the release came out early, on time if it came out late."""
    now = datetime(2024, 10, 1, tzinfo=UTC)
    code, out, _ = run("show", "--config.file", no_config(tmp_path), "--build", "46000", now=now)
    assert code == 0
    assert "  Update:             update between 2024-09-06 and 2024-10-15" in out
    assert (
        "  On 2024-10-01:      possibly overdue: late since 2024-09-07 if the release came out "
        "on its earliest possible day; certainly overdue from 2024-10-16"
    ) in out


def test_show_telemetry_manual_holds_a_server_to_53100(tmp_path: Path) -> None:
    """CTX695107 ("before April 15, 2026") and the LAS docs of build 52100 (offline
    activation needs 53100): an offline server on 52100 is late after 2026-04-14."""
    code, out, _ = run("show", "--config.file", no_config(tmp_path), "--telemetry", "manual")
    assert code == 0
    rows = table(out)
    assert rows[52100]["rule"] == "minimum_build_53100_offline"
    assert (rows[52100]["at"], rows[52100]["latest"]) == ("2025-06-03", "2026-04-14")
    assert rows[53100]["rule"] == "six_months_after_release"
    code, out, _ = run("show", "--config.file", no_config(tmp_path))
    assert table(out)[52100]["rule"] == "six_months_after_release"


def test_show_unknown_and_invalid_builds(tmp_path: Path) -> None:
    code, out, err = run("show", "--config.file", no_config(tmp_path), "--build", "50000",
                         "--build", "56200", "--build", "nonsense")
    assert code == 1
    assert (
        "build 50000 is not in the catalog; version 11.17.2.0 assumed (that of build 49000)"
    ) in out
    assert "In the catalog:     no (unknown build: no release date)" in out
    assert "clock started by build 51000" in out
    assert "Rule:           none applies" in out  # 56200
    assert "--build 'nonsense': not a License Server version" in err


def test_show_with_config_releases_and_file_sources(tmp_path: Path) -> None:
    good = tmp_path / "mirror.yaml"
    good.write_text(doc(G + timedelta(days=1), (56200, "2026-08-17"), (57000, "2026-08-31")))
    stale = tmp_path / "stale.yaml"
    stale.write_text(doc(G - timedelta(days=1), (58000, "2026-12-20")))
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(textwrap.dedent(f"""\
        modules: {{d: {{}}}}
        policy: {{minimum_builds: []}}
        catalog:
          releases:
            - {{version: "11.17.2.0", build: 57500, released: 2026-09-30, source: mine}}
          sources:
            - {{file: {good}}}
            - {{file: {stale}}}
        """))
    code, out, err = run("show", "--config.file", str(cfg))
    assert code == 1  # a source was refused: the output lacks it
    assert f"warning: catalog source {stale} refused: generated" in err
    assert (
        f"Sources, first wins per build (releases used): config (1), {good} (2), "
        f"{stale} (refused: not used), bundled (22)"
    ) in out
    assert "Policy: 6 months after each newer release from build 40000\n" in out
    rows = table(out)
    assert rows[57000]["origin"] == str(good) and rows[57500]["origin"] == "config"
    # 57000 released 2026-08-31: six months end on 2027-02-28 (clipped), overdue from 03-01.
    assert (rows[56200]["at"], rows[56200]["latest"]) == ("2027-02-28", "2027-02-28")
    # Without minimum builds, 39000 now waits for 40000's six months: 2022-10-19 + 6 = 04-19.
    assert rows[39000]["at"] == "2023-04-19"
    assert rows[57500]["rule"] == "-" and rows[57500]["at"] == "no deadline"


def test_show_without_a_config_file_and_with_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CITRIX_LICENSE_EXPORTER_CONFIG_FILE", raising=False)
    assert main(["catalog", "show", "--build", "53100"]) == 0
    captured = capsys.readouterr()
    assert "no configuration file citrix-license-exporter.yml" in captured.err
    assert "Overdue from:       2027-02-18 00:00 UTC" in captured.out
    assert main(["catalog", "show", "--config.file", "missing.yml"]) == 1
    assert "missing.yml: (top level): cannot read file" in capsys.readouterr().err
    (tmp_path / "bad.yml").write_text("modules: {d: {}}\ncatalog: {sources: [{file: a, url: b}]}\n")
    assert main(["--config.file", "bad.yml", "catalog", "show"]) == 1
    assert "catalog.sources[0]" in capsys.readouterr().err


# --------------------------------------------------------------------------- --output json

JSON_KEYS = [
    "build", "version", "in_catalog", "released", "released_after", "released_by", "origin",
    "source", "rule", "update_by_earliest", "update_by_latest",
]  # fmt: skip


def test_show_json_agrees_with_the_text_for_every_bundled_build(tmp_path: Path) -> None:
    """Issue 14 item 9: the same facts as the text table, build by build."""
    code, out, err = run("show", "--config.file", no_config(tmp_path), "--output", "json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == ["builds"]
    records = {r["build"]: r for r in document["builds"]}
    assert [r["build"] for r in document["builds"]] == [r.build for r in BUNDLED.releases]
    _, text, _ = run("show", "--config.file", no_config(tmp_path))
    rows = table(text)
    assert sorted(rows) == sorted(records)
    for build, row in rows.items():
        record = records[build]
        assert list(record) == JSON_KEYS
        release = BUNDLED.find(parse_version(f"11.17.2.0 build {build}"))
        assert release is not None
        assert record["version"] == row["version"] == str(release.version.version)
        assert record["in_catalog"] is True
        assert record["origin"] == row["origin"] == "bundled"
        assert record["source"] == release.source
        assert (record["rule"] or "-") == row["rule"]
        if row["at"] == "no deadline":
            assert (record["update_by_earliest"], record["update_by_latest"]) == (None, None)
        else:
            assert (record["update_by_earliest"], record["update_by_latest"]) == (
                row["at"], row["latest"],
            ), build
        described = release.describe_date().removeprefix("released ")
        assert described == row["released"]
        dates = [record["released"], record["released_after"], record["released_by"]]
        assert dates == [
            d.isoformat() if d else None
            for d in (release.released, release.released_after, release.released_by)
        ]
    assert records[46000]["update_by_earliest"] == "2024-09-06"
    assert records[46000]["update_by_latest"] == "2024-10-15"
    assert records[56200]["rule"] is None


def test_show_json_with_builds_includes_unknown_ones(tmp_path: Path) -> None:
    code, out, err = run("show", "--config.file", no_config(tmp_path), "--output", "json",
                         "--build", "52100", "--build", "50000", "--build", "nonsense")
    assert code == 1
    assert "--build 'nonsense': not a License Server version" in err
    assert "build 50000 is not in the catalog" in err
    records = json.loads(out)["builds"]
    assert [r["build"] for r in records] == [52100, 50000]
    unknown = records[1]
    assert unknown == {
        "build": 50000, "version": "11.17.2.0", "in_catalog": False, "released": None,
        "released_after": None, "released_by": None, "origin": None, "source": None,
        "rule": "six_months_after_release", "update_by_earliest": "2025-02-20",
        "update_by_latest": "2025-06-03",
    }  # fmt: skip
    assert records[0]["released_after"] == "2024-12-03"
    assert records[0]["released_by"] == "2025-04-29"
