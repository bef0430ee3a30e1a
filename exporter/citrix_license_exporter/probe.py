"""One probe of one target: runs the module's collectors concurrently under one deadline.

Each collector runs in its own thread, so a target that hangs costs a waiting thread, never a
blocked probe of another target. Collectors declared ``cached`` (WinRM: Citrix asks not to poll
WMI more often than every 15 minutes) keep their last result per target; a fetch that outlives
the scrape still finishes and fills the cache for the next scrape. Concurrent probes of the same
target share one fetch.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from .citrix.catalog import Catalog
from .citrix.policy import Assessment, PolicyConfig, assess
from .citrix.versions import LicenseServerVersion, VersionParseError, parse_version
from .collectors.base import Collector, CollectorError, Deadline, FailureKind
from .collectors.failures import classify
from .config import ModuleConfig, TargetConfig

log = logging.getLogger(__name__)

#: A failed fetch of a cached collector is retried after this long (or the cache interval, if
#: shorter) rather than on every scrape, so a broken server is not hammered.
FAILURE_RETRY_SECONDS = 60.0
MAX_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Outcome:
    """What one collector produced for one probe."""

    collector: str
    success: bool
    duration: float
    data: Any = None
    error: str | None = None
    fetched_at: float | None = None  # wall-clock time the data (or the failure) was fetched
    last_success: float | None = None  # wall-clock time of the target's last successful fetch
    from_cache: bool = False
    kind: FailureKind | None = None  # why it failed (None on success)


@dataclass(frozen=True)
class ProbeResult:
    target: TargetConfig
    module: ModuleConfig
    outcomes: tuple[Outcome, ...]
    version: LicenseServerVersion | None = None
    version_text: str | None = None
    assessment: Assessment | None = None

    @property
    def up(self) -> bool:
        return any(o.success for o in self.outcomes if o.collector == self.module.primary)

    def outcome(self, collector: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.collector == collector), None)


class _CacheEntry:
    __slots__ = ("future", "last", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.future: Future[Outcome] | None = None
        self.last: Outcome | None = None


def _done(outcome: Outcome) -> Future[Outcome]:
    future: Future[Outcome] = Future()
    future.set_result(outcome)
    return future


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CollectorError):
        return str(exc)
    # Unexpected exceptions are logged by type and message only; collectors must not put
    # secrets in messages, and the traceback goes to debug level.
    return f"{type(exc).__name__}: {exc}"


class Prober:
    def __init__(self, collectors: Mapping[str, Collector]) -> None:
        self.collectors = dict(collectors)
        self._cache: OrderedDict[tuple[str, ...], _CacheEntry] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Last successful fetch per (target, address, module, collector), for every collector.
        self._last_ok: dict[tuple[str, ...], float] = {}

    def clear_cache(self) -> None:
        """Forget cached data, e.g. after a reload changed credentials or addresses."""
        with self._cache_lock:
            self._cache.clear()
            self._last_ok.clear()

    # -- running one collector -----------------------------------------------------------------

    def _run(
        self, collector: Collector, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> Outcome:
        start = time.monotonic()
        log.debug("collector started", extra={"fields": {
            "target": target.name, "collector": collector.name,
            "deadline_seconds": round(deadline.remaining(), 3)}})
        try:
            data = collector.collect(target, module, deadline)
        except Exception as exc:  # a collector must never take the probe down with it
            duration = time.monotonic() - start
            reason = _describe(exc)
            kind = classify(exc)
            already_logged = isinstance(exc, CollectorError) and exc.logged
            log.log(
                logging.DEBUG if already_logged else logging.WARNING,
                "collector failed",
                extra={"fields": {"target": target.name, "collector": collector.name,
                                  "kind": kind.value, "reason": reason,
                                  "duration_seconds": round(duration, 3)}},
            )
            if not isinstance(exc, CollectorError):  # an expected failure needs no traceback
                log.debug("collector failure details", exc_info=True)
            return Outcome(collector.name, False, duration, error=reason, kind=kind)
        duration = time.monotonic() - start
        log.debug("collector succeeded", extra={"fields": {
            "target": target.name, "collector": collector.name,
            "duration_seconds": round(duration, 3)}})
        return Outcome(collector.name, True, duration, data=data, fetched_at=time.time())

    def _start(
        self, collector: Collector, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> Future[Outcome]:
        future: Future[Outcome] = Future()

        def work() -> None:
            future.set_result(self._run(collector, target, module, deadline))

        # A raw thread starts with an empty context: copy the probe's, so the collector's log
        # lines reach this probe's log (probelog.py).
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(work,),
            name=f"collect-{collector.name}-{target.name}", daemon=True,
        )
        thread.start()
        return future

    def _cached(
        self, collector: Collector, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> tuple[Future[Outcome], Outcome | None]:
        """The cached outcome, or a fetch; with a fetch, the last good outcome to fall back on
        if the fetch outlives this probe's deadline (stale while revalidating, so a slow
        refetch does not turn a healthy server's ``up`` to 0)."""
        key = (target.name, target.address, module.name, collector.name)
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = _CacheEntry()
                while len(self._cache) > MAX_CACHE_ENTRIES:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        interval = module.cache_interval(collector.name)
        with entry.lock:
            last = entry.last
            stale = replace(last, from_cache=True) if last is not None and last.success else None
            if last is not None and last.fetched_at is not None and entry.future is None:
                age = time.time() - last.fetched_at
                keep = interval if last.success else min(interval, FAILURE_RETRY_SECONDS)
                if age < keep:
                    log.debug("served from cache", extra={"fields": {
                        "target": target.name, "collector": collector.name,
                        "age_seconds": round(age, 1), "cache_interval_seconds": keep,
                        "success": last.success}})
                    return _done(replace(last, from_cache=True)), None
            if entry.future is not None:
                # Another probe is refetching: serve the last good data at once if there is any.
                log.debug("another probe is fetching", extra={"fields": {
                    "target": target.name, "collector": collector.name,
                    "serving": "last good data" if stale is not None else "waiting for it"}})
                return (_done(stale), None) if stale is not None else (entry.future, None)
            log.debug("cache miss, fetching", extra={"fields": {
                "target": target.name, "collector": collector.name,
                "cache_interval_seconds": interval,
                "fallback": "last good data" if stale is not None else "none"}})
            # The fetch gets the module's whole timeout even when this scrape's deadline is
            # shorter: its result then serves the next scrape instead of being thrown away.
            fetch_deadline = Deadline(max(deadline.at, time.monotonic() + module.timeout))
            inner = self._start(collector, target, module, fetch_deadline)
            entry.future = inner

        def store(done: Future[Outcome]) -> None:
            outcome = done.result()
            with entry.lock:
                if not outcome.success:
                    outcome = replace(outcome, fetched_at=time.time())
                entry.last = outcome
                entry.future = None

        inner.add_done_callback(store)
        return inner, stale

    # -- the probe -----------------------------------------------------------------------------

    def probe(
        self,
        target: TargetConfig,
        module: ModuleConfig,
        deadline: Deadline,
        catalog: Catalog,
        policy: PolicyConfig,
    ) -> ProbeResult:
        start = time.monotonic()
        futures: list[tuple[str, Future[Outcome], Outcome | None]] = []
        for name in module.collectors:
            collector = self.collectors.get(name)
            if collector is None:
                failed = Outcome(name, False, 0.0, error="collector not available",
                                 kind=FailureKind.INTERNAL)
                futures.append((name, _done(failed), None))
            elif collector.cached and module.cache_interval(name) > 0:
                futures.append((name, *self._cached(collector, target, module, deadline)))
            else:
                futures.append((name, self._start(collector, target, module, deadline), None))
        outcomes: list[Outcome] = []
        for name, future, stale in futures:
            try:
                outcome = future.result(timeout=deadline.remaining())
            except FutureTimeout:
                if stale is not None:
                    outcome = stale  # the refetch goes on and fills the cache for next time
                    log.debug("fetch outlives the deadline, serving the last good data",
                              extra={"fields": {"target": target.name, "collector": name}})
                else:
                    outcome = Outcome(name, False, time.monotonic() - start,
                                      error="probe deadline exceeded", kind=FailureKind.TIMEOUT)
                    log.warning(
                        "collector timed out",
                        extra={"fields": {"target": target.name, "collector": name}},
                    )
            outcomes.append(self._with_last_success(target, module, outcome))
        return self._assess(target, module, tuple(outcomes), catalog, policy)

    def _with_last_success(
        self, target: TargetConfig, module: ModuleConfig, outcome: Outcome
    ) -> Outcome:
        key = (target.name, target.address, module.name, outcome.collector)
        with self._cache_lock:
            if outcome.success and outcome.fetched_at is not None:
                previous = self._last_ok.get(key, 0.0)
                self._last_ok[key] = max(previous, outcome.fetched_at)
            elif len(self._last_ok) > MAX_CACHE_ENTRIES:
                self._last_ok.clear()
            last = self._last_ok.get(key)
        return replace(outcome, last_success=last)

    @staticmethod
    def _assess(
        target: TargetConfig,
        module: ModuleConfig,
        outcomes: tuple[Outcome, ...],
        catalog: Catalog,
        policy: PolicyConfig,
    ) -> ProbeResult:
        text = next(
            (
                v
                for o in outcomes
                if o.success and (v := getattr(o.data, "license_server_version", None))
            ),
            None,
        )
        if text is None:
            return ProbeResult(target, module, outcomes)
        try:
            version = parse_version(text)
        except VersionParseError as exc:
            log.warning(
                "cannot parse License Server version",
                extra={"fields": {"target": target.name, "reason": str(exc)}},
            )
            return ProbeResult(target, module, outcomes, version_text=text)
        return ProbeResult(
            target, module, outcomes, version, text,
            assess(version, catalog, policy, telemetry=target.telemetry),
        )
