"""Citrix's RSS feed of licensing downloads, read as a release catalog.

Citrix publishes ``https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss``.
Community tools (Evergreen's ``Evergreen/Manifests/CitrixFeeds.json`` and others) read it: they
take the items whose title matches ``*License Server for Window*`` and use ``pubDate`` as the
date. Items are titled like ``License Server for Windows - Version 11.17.2.0 Build 56200``.

This module does the same, pure (no network, no clock):

* the XML is parsed with ``defusedxml`` (no DTD, no entities, no external references);
* items whose title does not name the License Server for Windows are ignored, as are License
  Server items whose title holds no version and build, or that have no valid ``pubDate``;
* ``pubDate`` is taken as the **exact release day** (an ASSUMPTION, docs/assumptions.md), as
  the calendar day written in the pubDate (its own UTC offset);
* a build listed twice keeps its earliest day;
* a feed with no usable License Server item, or whose items contradict version order, is
  refused (the caller keeps the last good copy).

The catalog's ``generated`` date is the feed's ``lastBuildDate`` day, else its newest item.
"""

from __future__ import annotations

import re
from datetime import date
from email.utils import parsedate_to_datetime
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .catalog import MAX_DOCUMENT_BYTES, MAX_TEXT, Catalog, CatalogError, Release, _check_order
from .versions import VersionParseError, parse_version

FEED_URL = "https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss"
#: Evergreen's filter, ``*License Server for Window*``, as a case-insensitive search.
LICENSE_SERVER_TITLE = re.compile(r"license\s+server\s+for\s+window", re.IGNORECASE)
#: The version and build inside such a title: ``11.17.2.0 Build 56200``, ``11.17.2.0 (Build
#: 56200)``, ``11.17.2.0, build 56200`` (parse_version reads what this finds).
VERSION_IN_TITLE = re.compile(
    r"\d+(?:\.\d+){1,3}\.?\s*[,(]?\s*build\s*\d+\)?", re.IGNORECASE
)
MAX_ITEMS = 5000


def _text(element: Any, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    value = " ".join(child.text.split())
    return value[:MAX_TEXT] if value else None


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.date()


def _release(item: Any, origin: str) -> Release | None:
    title = _text(item, "title")
    if title is None or not LICENSE_SERVER_TITLE.search(title):
        return None
    found = VERSION_IN_TITLE.search(title)
    if found is None:
        return None
    try:
        version = parse_version(found.group(0))
    except VersionParseError:
        return None
    pub = _text(item, "pubDate")
    day = _day(pub)
    if day is None:
        return None
    link = _text(item, "link")
    where = f" ({link})" if link and link.startswith("https://") else ""
    source = (
        f'Citrix licensing downloads feed {origin}: item "{title}"{where}, pubDate {pub}; '
        "the pubDate is taken as the release day"
    )
    return Release(version=version, released=day, released_after=None, released_by=None,
                   source=source[:MAX_TEXT], origin=origin)


def parse_feed(data: bytes, origin: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> Catalog:
    """The License Server releases of an RSS feed; raises CatalogError saying why not."""
    if len(data) > max_bytes:
        raise CatalogError([("", f"feed is {len(data)} bytes, the limit is {max_bytes}")],
                           origin)
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except ParseError as exc:
        raise CatalogError([("", f"not well-formed XML: {exc}")], origin) from None
    except DefusedXmlException as exc:
        raise CatalogError([("", f"refused XML: {type(exc).__name__}")], origin) from None
    if root.tag != "rss" or root.find("channel") is None:
        raise CatalogError([("", f"not an RSS feed (root element {root.tag[:100]!r})")], origin)
    channel = root.find("channel")
    items = channel.findall("item")
    if len(items) > MAX_ITEMS:
        raise CatalogError([("", f"{len(items)} items, at most {MAX_ITEMS} are read")], origin)
    chosen: dict[int, Release] = {}
    for item in items:
        release = _release(item, origin)
        if release is None:
            continue
        known = chosen.get(release.build)
        if known is None or (release.released or date.max) < (known.released or date.max):
            chosen[release.build] = release
    if not chosen:
        raise CatalogError(
            [("", "no License Server for Windows item with a version, build and pubDate")],
            origin,
        )
    problems: list[tuple[str, str]] = []
    _check_order([(f"item build {r.build}", r) for r in chosen.values()], problems)
    if problems:
        raise CatalogError(problems, origin)
    generated = _day(_text(channel, "lastBuildDate")) or max(
        r.released for r in chosen.values() if r.released is not None
    )
    return Catalog(tuple(chosen.values()), generated)
