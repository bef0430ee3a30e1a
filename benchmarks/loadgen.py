"""A light HTTP load generator: many scrapes at once, sent the way Prometheus 2.42 sends them
(its Accept, Accept-Encoding and scrape-timeout headers), one connection per scrape.

asyncio with raw sockets rather than an HTTP library: the generator shares the machine with
what it measures, so it should cost as little CPU as possible.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

PROMETHEUS_HEADERS = (
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
    "Accept-Encoding: gzip\r\n"
    "User-Agent: Prometheus/2.42.0\r\n"
)


@dataclass(frozen=True)
class Scrape:
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer
    body_bytes: int
    seconds: float
    body: bytes = b""
    error: str | None = None


@dataclass(frozen=True)
class Round:
    wall: float
    replies: tuple[Reply, ...]

    @property
    def ok(self) -> int:
        return sum(1 for r in self.replies if r.status == 200)


async def _fetch(scrape: Scrape, scrape_timeout: float, keep_body: bool) -> Reply:
    start = time.monotonic()
    request = (
        f"GET {scrape.path} HTTP/1.0\r\nHost: {scrape.host}:{scrape.port}\r\n"
        f"{PROMETHEUS_HEADERS}X-Prometheus-Scrape-Timeout-Seconds: {scrape_timeout:g}\r\n\r\n"
    ).encode("ascii")
    try:
        async with asyncio.timeout(scrape_timeout + 5):
            reader, writer = await asyncio.open_connection(scrape.host, scrape.port)
            try:
                writer.write(request)
                data = await reader.read(-1)
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        return Reply(0, 0, time.monotonic() - start, error=f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return Reply(0, len(body), seconds, error="not an HTTP answer")
    return Reply(status, len(body), seconds, body if keep_body else b"")


async def _round(scrapes: Sequence[Scrape], scrape_timeout: float, keep_body: bool) -> Round:
    start = time.monotonic()
    replies = await asyncio.gather(*(_fetch(s, scrape_timeout, keep_body) for s in scrapes))
    return Round(time.monotonic() - start, tuple(replies))


def run_round(
    scrapes: Sequence[Scrape], scrape_timeout: float = 10.0, keep_body: bool = False
) -> Round:
    """Send every scrape at once; the round's wall time runs from the first request to the
    last answer."""
    return asyncio.run(_round(scrapes, scrape_timeout, keep_body))
