"""A SIMULATED Citrix licensing downloads RSS feed on 127.0.0.1, over HTTPS.

Citrix publishes ``https://www.citrix.com/content/citrix/en_us/downloads/licensing.rss``; its
items are titled like ``License Server for Windows - Version 11.17.2.0 Build 56200`` and carry
an RSS ``pubDate`` (the form community tools such as Evergreen read). This server answers the
same path with an RSS 2.0 document built from :class:`FeedItem` entries, with the simulators'
certificate (simulator/https.py, so the exporter verifies TLS against ``write_ca``), and can
misbehave on purpose:

- ``good``: the feed;
- ``malformed``: 200 with XML that is cut off;
- ``oversized``: 200 with a valid feed padded past ``oversized_bytes``;
- ``slow``: the headers, then the body a byte at a time, one per ``slow_seconds``;
- ``not_found``: 404.

By default it lists the newest License Server of the bundled catalog plus an item that is not
the License Server (which a reader must ignore). None of it is Citrix's real feed.
"""

from __future__ import annotations

import contextlib
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .https import TLSThreadingServer, certificate, write_ca
from .network import HOST

FEED_PATH = "/content/citrix/en_us/downloads/licensing.rss"
MODES = ("good", "malformed", "oversized", "slow", "not_found")


@dataclass(frozen=True)
class FeedItem:
    title: str
    published: date
    link: str = "https://www.citrix.com/downloads/licensing/"


DEFAULT_ITEMS: tuple[FeedItem, ...] = (
    FeedItem("License Server for Windows - Version 11.17.2.0 Build 56200", date(2026, 8, 17)),
    FeedItem("SIMULATED Citrix Licensing download that is not the License Server",
             date(2026, 9, 1)),
)


def render(items: Sequence[FeedItem], last_build: date | None = None) -> bytes:
    """An RSS 2.0 document with one ``<item>`` per entry (pubDate at 00:00 UTC)."""

    def stamp(day: date) -> str:
        return format_datetime(datetime.combine(day, time.min, tzinfo=UTC), usegmt=True)

    newest = last_build or max((i.published for i in items), default=date(2026, 1, 1))
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0"><channel>',
        "<title>SIMULATED Citrix Licensing downloads</title>",
        "<link>https://www.citrix.com/downloads/licensing/</link>",
        "<description>SIMULATED feed for tests and the demo</description>",
        f"<lastBuildDate>{stamp(newest)}</lastBuildDate>",
    ]
    for item in items:
        parts.append(
            f"<item><title>{escape(item.title)}</title><link>{escape(item.link)}</link>"
            f"<pubDate>{stamp(item.published)}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


class _Server(TLSThreadingServer):
    feed: SimulatedFeed


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        feed = self.server.feed
        feed.count_request()
        mode, body = feed.answer(self.path.split("?", 1)[0])
        status = 404 if mode == "not_found" else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            if mode != "slow":
                self.wfile.write(body)
                return
            for i in range(len(body)):
                if feed.stopped.wait(feed.slow_seconds):
                    return
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()


class SimulatedFeed:
    """The feed server; ``set(mode, items)`` changes what it answers from the next request."""

    def __init__(self, items: Sequence[FeedItem] = DEFAULT_ITEMS, *,
                 slow_seconds: float = 1.0, oversized_bytes: int = 2_000_000) -> None:
        self.stopped = threading.Event()
        self.slow_seconds = slow_seconds
        self.oversized_bytes = oversized_bytes
        self._lock = threading.Lock()
        self._items: tuple[FeedItem, ...] = tuple(items)
        self._mode = "good"
        self.requests = 0
        cert_pem, key_pem = certificate()
        with tempfile.TemporaryDirectory(prefix="cle-feed-sim-") as tmp:
            Path(tmp, "cert.pem").write_bytes(cert_pem)
            Path(tmp, "key.pem").write_bytes(key_pem)
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(Path(tmp, "cert.pem")), str(Path(tmp, "key.pem")))
        self.httpd = _Server((HOST, 0), _Handler)
        self.httpd.feed = self
        self.httpd.tls = self.tls
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name="sim-citrix-feed",
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}{FEED_PATH}"

    def set(self, mode: str = "good", items: Sequence[FeedItem] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown feed mode {mode!r} (known: {', '.join(MODES)})")
        with self._lock:
            self._mode = mode
            if items is not None:
                self._items = tuple(items)

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def answer(self, path: str) -> tuple[str, bytes]:
        with self._lock:
            mode, items = self._mode, self._items
        if path != FEED_PATH:
            return "not_found", b"not found (SIMULATED)"
        body = render(items)
        if mode == "malformed":
            return mode, body[: len(body) // 2]
        if mode == "oversized":
            padding = b"<!-- " + b"x" * self.oversized_bytes + b" -->"
            return mode, body.replace(b"<channel>", b"<channel>" + padding, 1)
        if mode == "not_found":
            return mode, b"not found (SIMULATED)"
        return mode, body

    def catalog_source(self, directory: Path, refresh_interval: str = "1m") -> dict[str, Any]:
        """The exporter's ``catalog:`` section following this feed (CA file written here)."""
        ca = write_ca(directory, "simulated-feed-ca.pem")
        return {
            "sources": [{"citrix_feed": self.url, "ca_file": str(ca)}],
            "refresh_interval": refresh_interval,
        }

    def close(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatedFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
