"""Following Citrix's RSS feed of licensing downloads (issue 14 item 7).

Evidence (docs/assumptions.md "The Citrix feed"): Citrix publishes
https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss; Evergreen
(aaronparker/evergreen, Evergreen/Manifests/CitrixFeeds.json) picks the items whose title matches
``*License Server for Window*`` and takes ``pubDate`` as the date; titles look like
``License Server for Windows - Version 11.17.2.0 Build 56200``.

A SIMULATED feed (simulator/feed.py) on 127.0.0.1 over real HTTPS, verified against its CA file;
the exporter's refresher reads it as it does in production (same downloader as ``url:``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from citrix_license_exporter.catalog_sources import CatalogRefresher, SourceError, load_source
from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.citrix.policy import PolicyConfig, assess
from citrix_license_exporter.citrix.versions import parse_version
from citrix_license_exporter.config import CatalogConfig, CatalogSource, load_config
from citrix_license_exporter.simulator.feed import FeedItem, SimulatedFeed
from citrix_license_exporter.simulator.https import write_ca

GOOD = (
    FeedItem("License Server for Windows - Version 11.17.2.0 Build 56200", date(2026, 8, 17)),
    FeedItem("License Server for Windows - Version 11.17.2.0 Build 57000", date(2026, 11, 30)),
    # not the License Server: ignored
    FeedItem("Citrix Licensing Manager - Version 11.17.2.0 Build 58000", date(2026, 12, 1)),
    FeedItem("License Server VPX - Version 11.17.2.0 Build 59000", date(2026, 12, 1)),
)
NEWER = (
    *GOOD,
    FeedItem("License Server for Windows - Version 11.17.2.0 Build 57100", date(2027, 1, 5)),
)


@pytest.fixture
def feed() -> Iterator[SimulatedFeed]:
    with SimulatedFeed(GOOD, slow_seconds=0.2, oversized_bytes=20_000) as server:
        yield server


def source_of(feed: SimulatedFeed, tmp_path: Path) -> CatalogSource:
    ca = write_ca(tmp_path)
    return CatalogSource(url=feed.url, ca_file=str(ca), format="citrix_feed")


def refresher(feed: SimulatedFeed, tmp_path: Path) -> CatalogRefresher:
    settings = CatalogConfig(sources=(source_of(feed, tmp_path),), max_bytes=10_000,
                             timeout=0.5)
    return CatalogRefresher(settings)


def builds(r: CatalogRefresher) -> dict[int, date | None]:
    (catalog,) = r.catalogs()
    return {release.build: release.released for release in catalog.releases}


def test_good_feed_is_taken_and_other_items_are_ignored(
    feed: SimulatedFeed, tmp_path: Path
) -> None:
    r = refresher(feed, tmp_path)
    assert r.refresh() is True
    # Only "License Server for Windows" items; pubDate is the exact release day.
    assert builds(r) == {56200: date(2026, 8, 17), 57000: date(2026, 11, 30)}
    (catalog,) = r.catalogs()
    release = next(x for x in catalog.releases if x.build == 57000)
    assert release.origin == feed.url
    assert 'item "License Server for Windows - Version 11.17.2.0 Build 57000"' in release.source
    assert "pubDate is taken as the release day" in release.source
    assert r.status().last_attempt_ok is True
    # The feed's release starts the six-month clock of a server on 56200.
    from citrix_license_exporter.citrix.catalog import merge

    effective = merge(catalog, load_bundled())
    a = assess(parse_version("11.17.2.0 build 56200"), effective, PolicyConfig())
    assert a.deadline is not None and a.deadline.in_words() == "update by 2027-05-30"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("malformed", "invalid Citrix feed: "), ("oversized", "the limit is 10000"),
     ("slow", "0.5s"), ("not_found", "HTTP 404")],
)  # fmt: skip
def test_bad_answers_are_refused_and_the_last_good_feed_is_kept(
    feed: SimulatedFeed, tmp_path: Path, mode: str, reason: str
) -> None:
    r = refresher(feed, tmp_path)
    assert r.refresh() is True
    good = builds(r)
    feed.set(mode, NEWER)
    assert r.refresh() is False
    (state,) = r.source_states()
    assert state.last_attempt_ok is False
    assert state.last_error is not None and reason in state.last_error, state.last_error
    assert builds(r) == good  # 57100 of the refused answer is not taken
    assert r.status().last_attempt_ok is False
    feed.set("good", NEWER)
    assert r.refresh() is True
    assert 57100 in builds(r)


def test_a_refused_first_answer_leaves_the_source_unused(
    feed: SimulatedFeed, tmp_path: Path
) -> None:
    feed.set("not_found")
    r = refresher(feed, tmp_path)
    assert r.refresh() is False
    assert r.catalogs() == ()


def test_three_title_variants_are_read(feed: SimulatedFeed, tmp_path: Path) -> None:
    feed.set("good", [
        FeedItem("License Server for Windows - Version 11.17.2.0 Build 56200", date(2026, 8, 17)),
        FeedItem("Citrix License Server for Windows \N{EN DASH} Version 11.17.2.0 build 53100",
                 date(2026, 3, 10)),
        FeedItem("License Server for Windows Version 11.17.2.0 (Build 52100) LTSR",
                 date(2025, 4, 1)),
        FeedItem("License Server for Windows - 11.17.2 Build 51000", date(2024, 11, 20)),
        FeedItem("License Server for Windows - Release notes", date(2026, 8, 17)),  # no build
    ])  # fmt: skip
    r = refresher(feed, tmp_path)
    assert r.refresh() is True
    assert builds(r) == {
        56200: date(2026, 8, 17), 53100: date(2026, 3, 10), 52100: date(2025, 4, 1),
        51000: date(2024, 11, 20),
    }  # fmt: skip


def test_a_feed_with_no_license_server_item_is_refused(
    feed: SimulatedFeed, tmp_path: Path
) -> None:
    feed.set("good", [GOOD[2], GOOD[3]])
    with pytest.raises(SourceError, match="no License Server for Windows item"):
        load_source(source_of(feed, tmp_path), max_bytes=10_000, timeout=5)


def test_tls_is_verified_without_the_ca_file(feed: SimulatedFeed) -> None:
    with pytest.raises(SourceError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        load_source(CatalogSource(url=feed.url, format="citrix_feed"), max_bytes=10_000,
                    timeout=5)


def test_config_citrix_feed_source(tmp_path: Path) -> None:
    ca = write_ca(tmp_path)
    path = tmp_path / "cfg.yml"
    path.write_text(textwrap.dedent(f"""\
        modules: {{d: {{}}}}
        catalog:
          sources:
            - citrix_feed: https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss
              ca_file: {ca.name}
        """))
    config = load_config(str(path))
    (source,) = config.catalog.sources
    assert source.format == "citrix_feed"
    assert source.url == "https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss"
    assert source.ca_file == str(tmp_path / ca.name)
    assert source.label == source.url


def test_catalog_show_reads_the_feed_once(feed: SimulatedFeed, tmp_path: Path) -> None:
    """`catalog show` reads a citrix_feed source as the exporter does: its items come first,
    with their title and pubDate as the source; a refused feed is reported and left out."""
    import io
    import json

    from citrix_license_exporter.catalog_cli import run_catalog_command
    from citrix_license_exporter.cli import build_parser

    ca = write_ca(tmp_path)
    path = tmp_path / "cfg.yml"
    path.write_text(textwrap.dedent(f"""\
        modules: {{d: {{}}}}
        catalog:
          sources:
            - {{citrix_feed: "{feed.url}", ca_file: {ca.name}}}
        """))

    def show() -> tuple[int, dict[int, dict[str, object]], str]:
        args = build_parser().parse_args(
            ["catalog", "show", "--config.file", str(path), "--output", "json"]
        )
        out, err = io.StringIO(), io.StringIO()
        code = run_catalog_command(args, out=out, err=err)
        return code, {b["build"]: b for b in json.loads(out.getvalue())["builds"]}, err.getvalue()

    code, builds, err = show()
    assert (code, err) == (0, "")
    assert builds[57000]["origin"] == feed.url
    assert builds[57000]["released"] == "2026-11-30"
    assert builds[56200]["origin"] == feed.url  # the feed comes before the bundled entry
    assert builds[53100]["origin"] == "bundled"
    assert builds[56200]["update_by_latest"] == "2027-05-30"  # 57000 + 6 months
    feed.set("malformed")
    code, builds, err = show()
    assert code == 1
    assert "refused: invalid Citrix feed" in err
    assert 57000 not in builds and builds[56200]["origin"] == "bundled"
