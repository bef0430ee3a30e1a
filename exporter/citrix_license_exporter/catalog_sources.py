"""Following release catalogs: read the configured URL, Citrix feed and file sources, keep the
last good one.

The pure side (schema, merge, deadlines) lives in ``citrix/``; this module does the I/O:

* a **URL** source is fetched through the exporter's one HTTP transport (transport.py, the
  controller and Cloud collectors' too): TLS verification on (optionally against the source's
  ``ca_file``), a body that stops at ``max_bytes``, one ``timeout`` for the headers and the
  body as a whole; redirects are followed only to HTTPS URLs (at most ``MAX_REDIRECTS``) and
  compressed responses are refused (the size cap counts the bytes that are parsed);
* a **file** source is read up to ``max_bytes``;
* either is parsed with :func:`parse_catalog_document` (``yaml.safe_load`` only) and must carry
  a ``generated`` date that is not older than the catalog it would replace (the source's last
  good document, and the bundled catalog);
* a **Citrix feed** source (``citrix_feed``: Citrix's RSS feed of licensing downloads) is
  fetched exactly like a URL source (same TLS, redirect, size and time rules) and parsed with
  :func:`citrix.feed.parse_feed` (defusedxml). Its date (``lastBuildDate``) must not be older
  than its own last good copy; the bundled catalog's date does not apply, as a feed lists
  releases rather than being a copy of the bundled file.

A source that fails or is refused keeps its last good catalog. :class:`CatalogRefresher` runs
the refresh in one background thread (every ``refresh_interval``, file sources also right away
on start and on reload) and never blocks a probe. docs/catalog.md describes the behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from .citrix.catalog import Catalog, CatalogError, load_bundled, parse_catalog_document
from .citrix.feed import parse_feed
from .collectors.base import CollectorError, Deadline, FailureKind
from .config import CatalogConfig, CatalogSource
from .transport import Limits, TransportError, fetch, new_client

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
#: Longest reason kept for a log line.
MAX_REASON = 2000

Kind = Literal["url", "file"]


class SourceError(Exception):
    """A source could not be read, or its document was refused. The text is safe to log.
    ``kind``: the failure kind when the fetch failed (None: the document was refused)."""

    def __init__(self, message: str, kind: FailureKind | None = None) -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# Reading one source


def _safe(text: str, source: CatalogSource) -> str:
    """``text`` with the source's raw URL (which may hold credentials) replaced by its label."""
    if source.url:
        text = text.replace(source.url, source.label)
    return text


async def fetch_source(source: CatalogSource, *, max_bytes: int, timeout: float) -> bytes:
    """GET the source's URL through the exporter's one HTTP transport; return the body, or
    raise SourceError. ``timeout`` bounds the whole fetch, headers and body alike."""
    assert source.url is not None
    limits = Limits(Deadline.after(timeout), max_bytes, size_setting="catalog max_bytes",
                    deadline_name=f"{timeout:g}s", redirects=MAX_REDIRECTS)
    try:
        async with new_client(source.ca_file) as client:
            answer = await fetch(client, "GET", source.url, limits)
    except TransportError as exc:
        # The log line names the source already: the reason alone, as the refresher logs it.
        raise SourceError(_safe(exc.detail, source), exc.kind) from None
    except CollectorError as exc:  # the CA file
        raise SourceError(_safe(str(exc), source), exc.kind) from None
    return answer.body


def fetch_url(source: CatalogSource, *, max_bytes: int, timeout: float) -> bytes:
    """:func:`fetch_source` for callers outside an event loop (the refresher's thread, the
    ``catalog`` command)."""
    return asyncio.run(fetch_source(source, max_bytes=max_bytes, timeout=timeout))


def read_file(path: str, *, max_bytes: int) -> bytes:
    """The file's bytes, or SourceError when it cannot be read or exceeds ``max_bytes``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise SourceError(f"file is larger than {max_bytes} bytes")
    return data


def read_source(source: CatalogSource, *, max_bytes: int, timeout: float) -> bytes:
    if source.url is not None:
        return fetch_url(source, max_bytes=max_bytes, timeout=timeout)
    assert source.file is not None
    return read_file(source.file, max_bytes=max_bytes)


def load_source(
    source: CatalogSource,
    *,
    max_bytes: int,
    timeout: float,
    not_older_than: date | None = None,
    current_from: str = "",
) -> Catalog:
    """Read, validate and date-check one source; raise SourceError saying why it was refused.

    ``not_older_than`` is the ``generated`` date of the catalog in use (``current_from`` names
    it): a document generated earlier is a stale copy and is refused.
    """
    data = read_source(source, max_bytes=max_bytes, timeout=timeout)
    feed = source.format == "citrix_feed"
    try:
        if feed:
            catalog = parse_feed(data, source.label, max_bytes=max_bytes)
        else:
            catalog = parse_catalog_document(data, source.label, max_bytes=max_bytes)
    except CatalogError as exc:
        lines = exc.lines()
        more = f" (and {len(lines) - 5} more)" if len(lines) > 5 else ""
        what = "invalid Citrix feed: " if feed else "invalid catalog: "
        raise SourceError(what + "; ".join(lines[:5]) + more) from None
    if catalog.generated is None:
        raise SourceError(
            "the document has no generated date; a source must have one so that an older "
            "copy can be recognised"
        )
    if not_older_than is not None and catalog.generated < not_older_than:
        raise SourceError(
            f"generated {catalog.generated.isoformat()} is older than the catalog in use "
            f"({not_older_than.isoformat()}{', ' + current_from if current_from else ''})"
        )
    return catalog


def bundled_floor() -> tuple[date | None, str]:
    """The date no source may be older than when nothing newer is in use."""
    return load_bundled().generated, "bundled"


def source_floor(source: CatalogSource, previous: Catalog | None) -> tuple[date | None, str]:
    """The date the source's next document may not be older than: its last good copy's, and
    for catalog documents at least the bundled catalog's (a feed is no copy of that file)."""
    floor, floor_from = (None, "") if source.format == "citrix_feed" else bundled_floor()
    if previous is not None and previous.generated is not None and (
        floor is None or previous.generated >= floor
    ):
        floor, floor_from = previous.generated, f"last good copy of {source.label}"
    return floor, floor_from


# ---------------------------------------------------------------------------------------------
# Following sources over time


@dataclass
class SourceState:
    """What the refresher knows about one source. Guarded by the refresher's lock."""

    source: CatalogSource
    catalog: Catalog | None = None  # the last good document
    last_attempt: float | None = None  # time.monotonic() of the last attempt
    last_attempt_ok: bool | None = None
    last_success: float | None = None  # time.time() of the last success
    last_error: str | None = None
    io_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def kind(self) -> Kind:
        return "url" if self.source.url is not None else "file"


@dataclass(frozen=True)
class RefreshStatus:
    """The sources taken together, for the ``citrix_license_release_catalog_*`` metrics."""

    sources: int
    #: True when the last attempt of every source that was tried succeeded; None before any.
    last_attempt_ok: bool | None
    #: The oldest of the sources' last successes (0.0: a tried source never succeeded);
    #: None when no source was tried yet.
    last_success: float | None


class CatalogRefresher:
    """Reads the configured sources in a background thread and keeps the last good catalogs.

    ``on_change`` is called (from whichever thread refreshed) whenever the catalogs returned by
    :meth:`catalogs` change.
    """

    def __init__(
        self,
        settings: CatalogConfig,
        on_change: Callable[[], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._states = [SourceState(s) for s in settings.sources]
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle

    def start(self) -> None:
        """Read the file sources now, then start the thread (which fetches the URLs at once)."""
        self.refresh(kinds=("file",))
        self._thread = threading.Thread(target=self._run, name="catalog-refresh", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self._settings.timeout + 5)

    def update(self, settings: CatalogConfig) -> None:
        """Take a reloaded ``catalog:`` section: keep the state of sources that stay, start new
        ones empty, re-read the file sources now and let the thread fetch new URLs at once."""
        with self._lock:
            old = {s.source: s for s in self._states}
            self._states = [old.get(src) or SourceState(src) for src in settings.sources]
            self._settings = settings
        self.refresh(kinds=("file",))
        self._wake.set()

    # -- results

    def catalogs(self) -> tuple[Catalog, ...]:
        """The last good catalog of each source, in precedence order (sources never read
        successfully are left out)."""
        with self._lock:
            return tuple(s.catalog for s in self._states if s.catalog is not None)

    def status(self) -> RefreshStatus:
        with self._lock:
            tried = [s for s in self._states if s.last_attempt_ok is not None]
            if not tried:
                return RefreshStatus(len(self._states), None, None)
            return RefreshStatus(
                sources=len(self._states),
                last_attempt_ok=all(s.last_attempt_ok for s in tried),
                last_success=min(s.last_success or 0.0 for s in tried),
            )

    def source_states(self) -> list[SourceState]:
        with self._lock:
            return list(self._states)

    # -- refreshing

    def refresh(self, *, kinds: Iterable[Kind] = ("url", "file"), only_due: bool = False) -> bool:
        """Read the sources of the given kinds (only those due with ``only_due``); return True
        when a catalog changed (``on_change`` has then been called)."""
        wanted = set(kinds)
        with self._lock:
            settings = self._settings
            states = [s for s in self._states if s.kind in wanted]
        now = time.monotonic()
        changed = False
        for state in states:
            if self._stopping.is_set():
                break
            if only_due and state.last_attempt is not None and (
                now < state.last_attempt + settings.refresh_interval
            ):
                continue
            changed |= self._attempt(state, settings)
        if changed and self._on_change is not None:
            self._on_change()
        return changed

    def _attempt(self, state: SourceState, settings: CatalogConfig) -> bool:
        label = state.source.label
        with state.io_lock:
            with self._lock:
                previous = state.catalog
            floor, floor_from = source_floor(state.source, previous)
            started = time.monotonic()
            try:
                catalog = load_source(
                    state.source,
                    max_bytes=settings.max_bytes,
                    timeout=settings.timeout,
                    not_older_than=floor,
                    current_from=floor_from,
                )
            except Exception as exc:  # a source must never stop the others or the thread
                if isinstance(exc, SourceError):
                    reason = str(exc)[:MAX_REASON]
                else:
                    log.debug("unexpected error reading a catalog source", exc_info=True)
                    reason = f"unexpected error: {type(exc).__name__}"
                with self._lock:
                    state.last_attempt = started
                    state.last_attempt_ok = False
                    state.last_error = reason
                kept = previous.generated.isoformat() if previous and previous.generated else None
                log.error(
                    "catalog source refused, keeping the last good catalog",
                    extra={"fields": {
                        "source": label,
                        "reason": reason,
                        "kept": f"generated {kept}" if kept else "none (source not in use)",
                    }},
                )
                return False
            with self._lock:
                state.last_attempt = started
                state.last_attempt_ok = True
                state.last_success = self._clock()
                state.last_error = None
                state.catalog = catalog
            changed = previous is None or previous != catalog
            log.info(
                "catalog source refreshed",
                extra={"fields": {
                    "source": label,
                    "generated": catalog.generated.isoformat() if catalog.generated else "",
                    "releases": len(catalog.releases),
                    "changed": str(changed).lower(),
                }},
            )
            return changed

    def _seconds_to_next_due(self) -> float | None:
        with self._lock:
            if not self._states:
                return None
            interval = self._settings.refresh_interval
            now = time.monotonic()
            waits = [
                0.0 if s.last_attempt is None else s.last_attempt + interval - now
                for s in self._states
            ]
        return max(0.0, min(waits))

    def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.refresh(only_due=True)
                wait = self._seconds_to_next_due()
            except Exception:  # never let the thread die: try again a little later
                log.exception("catalog refresh failed unexpectedly")
                wait = self._settings.refresh_interval
            if self._stopping.is_set():
                return
            self._wake.wait(wait)
