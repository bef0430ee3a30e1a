"""The Citrix licensing downloads RSS feed parser (citrix/feed.py): pure, no network.

Evidence: the reference's "Evidence of 2026-12" (Release dates): Citrix's feed
https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss, read by Evergreen
(``*License Server for Window*`` titles, ``pubDate`` as the date).
"""

from __future__ import annotations

from datetime import date

import pytest

from citrix_license_exporter.citrix.catalog import CatalogError
from citrix_license_exporter.citrix.feed import parse_feed

ORIGIN = "https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss"


def rss(*items: tuple[str, str], last_build: str | None = None) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>https://www.citrix.com/downloads/x.html</link>"
        f"<pubDate>{pub}</pubDate></item>"
        for title, pub in items
    )
    last = f"<lastBuildDate>{last_build}</lastBuildDate>" if last_build else ""
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{last}{body}</channel></rss>'.encode()


def test_items_titles_and_pubdates() -> None:
    catalog = parse_feed(rss(
        ("License Server for Windows - Version 11.17.2.0 Build 56200",
         "Mon, 17 Aug 2026 00:00:00 GMT"),
        ("StoreFront 2402 LTSR", "Tue, 18 Aug 2026 00:00:00 GMT"),
        # written in its own offset: the day as written (20:00 on the 10th, -0700)
        ("License Server for Windows - Version 11.17.2.0 Build 53100",
         "Tue, 10 Mar 2026 20:00:00 -0700"),
    ), ORIGIN)  # fmt: skip
    assert {r.build: r.released for r in catalog.releases} == {
        56200: date(2026, 8, 17), 53100: date(2026, 3, 10),
    }  # fmt: skip
    assert all(r.date_kind == "exact" and r.origin == ORIGIN for r in catalog.releases)
    assert catalog.generated == date(2026, 8, 17)  # no lastBuildDate: the newest item
    assert "(https://www.citrix.com/downloads/x.html)" in catalog.releases[-1].source


def test_last_build_date_is_the_generated_date_and_duplicates_keep_the_earliest_day() -> None:
    catalog = parse_feed(rss(
        ("License Server for Windows - Version 11.17.2.0 Build 56200",
         "Thu, 20 Aug 2026 00:00:00 GMT"),
        ("License Server for Windows - Version 11.17.2.0 Build 56200",
         "Mon, 17 Aug 2026 00:00:00 GMT"),
        last_build="Tue, 01 Dec 2026 08:00:00 GMT",
    ), ORIGIN)  # fmt: skip
    assert [(r.build, r.released) for r in catalog.releases] == [(56200, date(2026, 8, 17))]
    assert catalog.generated == date(2026, 12, 1)


def test_items_without_a_build_or_a_valid_pubdate_are_ignored() -> None:
    catalog = parse_feed(rss(
        ("License Server for Windows - Version 11.17.2.0 Build 56200", "yesterday"),
        ("License Server for Windows - documentation", "Mon, 17 Aug 2026 00:00:00 GMT"),
        ("License Server for Windows - Version 11.17.2.0 Build 53100",
         "Mon, 16 Mar 2026 00:00:00 GMT"),
    ), ORIGIN)  # fmt: skip
    assert [r.build for r in catalog.releases] == [53100]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<rss><channel><item><title>", "not well-formed XML"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "not an RSS feed"),
        (rss(("StoreFront", "Mon, 17 Aug 2026 00:00:00 GMT")), "no License Server"),
        # a billion-laughs style entity expansion and an external entity: refused unexpanded
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
         b"<rss><channel><item><title>&b;</title></item></channel></rss>", "refused XML"),
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         b"<rss><channel><item><title>&x;</title></item></channel></rss>", "refused XML"),
        # releases come out in version order: a newer build dated before an older one
        (rss(("License Server for Windows - Version 11.17.2.0 Build 56200",
              "Mon, 17 Aug 2026 00:00:00 GMT"),
             ("License Server for Windows - Version 11.17.2.0 Build 57000",
              "Mon, 17 Aug 2025 00:00:00 GMT")), "version order"),
    ],
)  # fmt: skip
def test_bad_feeds_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(CatalogError, match=reason):
        parse_feed(data, ORIGIN)


def test_size_limit() -> None:
    data = rss(("License Server for Windows - Version 11.17.2.0 Build 56200",
                "Mon, 17 Aug 2026 00:00:00 GMT"))
    with pytest.raises(CatalogError, match="the limit is 100"):
        parse_feed(data, ORIGIN, max_bytes=100)
