"""One probe of one target: runs the module's collectors concurrently under one deadline, on
the exporter's event loop.

The deadline is enforced by cancellation: when it passes, the probe stops waiting and answers,
whatever the peer does. A collector is either a coroutine (``collect_async``), which the
cancellation stops, or blocking code (``collect``), which runs in a bounded thread pool and
must keep its socket timeouts within the deadline so that its worker ends soon after.

Collectors declared ``cached`` (WinRM: Citrix asks not to poll WMI more often than every 15
minutes) keep their last result; a fetch that outlives the scrape still finishes and fills the
cache for the next scrape, and concurrent probes share one fetch (single flight). While a
refetch runs, probes get the last good data (stale while revalidating). The cache is keyed by
what the fetch depends on (the collector's effective settings and the target's address), not
by the configuration object, so a reload that leaves a server's settings alone keeps its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

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
#: Blocking collectors run in this many threads at most; more wait for a free one (within their
#: deadline).
DEFAULT_WORKERS = 64
DEADLINE_EXCEEDED = "probe deadline exceeded"


def is_cached(collector: Collector, module: ModuleConfig) -> bool:
    """Whether probes of ``module`` keep ``collector``'s data for its ``cache_interval`` (so a
    later scrape can be served the same data again)."""
    return collector.cached and module.cache_interval(collector.name) > 0

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What one collector produced for one probe."""

    collector: str
    success: bool
    duration: float
    #: What the collector's fetch returned (its ``data_type``; None when it failed).
    data: object = None
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


def describe(exc: BaseException) -> str:
    if isinstance(exc, CollectorError):
        return str(exc)
    # Unexpected exceptions are reported by type and message only (collectors must not put
    # secrets in messages; log lines and answers are scrubbed anyway). The traceback goes to
    # debug level, never as raw lines in the log.
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def settings_key(value: object) -> Hashable:
    """A hashable image of a settings object (dataclass, pydantic model, mapping, sequence),
    equal for equal settings. Secrets compare by value, so a changed password changes it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,
                tuple((f.name, settings_key(getattr(value, f.name)))
                      for f in dataclasses.fields(value)))
    model_fields = getattr(type(value), "model_fields", None)
    if isinstance(model_fields, dict):
        return (type(value).__name__,
                tuple((name, settings_key(getattr(value, name))) for name in model_fields))
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), settings_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        items = [settings_key(v) for v in value]
        return tuple(sorted(items, key=repr) if isinstance(value, set | frozenset) else items)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def fetch_key(collector: str, target: TargetConfig, module: ModuleConfig) -> Hashable:
    """What a collector's fetch depends on: its section of the module and the target's
    connection settings (not the target's name, labels or the module's timeout)."""
    target_part = tuple(
        (f.name, settings_key(getattr(target, f.name)))
        for f in dataclasses.fields(target) if f.name not in ("name", "module")
    ) if dataclasses.is_dataclass(target) else settings_key(target)
    return (collector, target_part, settings_key(module.section(collector)))


class _Pending:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future: asyncio.Future[Any] | None = future


class _CacheEntry:
    __slots__ = ("last", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Outcome] | None = None
        self.last: Outcome | None = None


class Prober:
    def __init__(self, collectors: Mapping[str, Collector], workers: int = DEFAULT_WORKERS) -> None:
        self.collectors = dict(collectors)
        self._cache: OrderedDict[Hashable, _CacheEntry] = OrderedDict()
        # Last successful fetch per (target, address, module, collector), for every collector.
        self._last_ok: dict[tuple[str, ...], float] = {}
        #: Blocking collectors run one thread each, at most ``workers`` at once; a thread
        #: ends with its fetch, so an idle exporter holds no worker threads.
        self._slots = asyncio.Semaphore(workers)
        #: Background fetches (cached collectors) still running: kept so they are not
        #: garbage-collected, and so that shutdown can cancel them.
        self._background: set[asyncio.Task[Outcome]] = set()

    def clear_cache(self) -> None:
        """Forget every cached fetch (a reload does not need this: see ``fetch_key``)."""
        self._cache.clear()
        self._last_ok.clear()

    def fetching(self, target: TargetConfig, module: ModuleConfig, collector: str) -> bool:
        """True while a fetch of this collector for this target is running."""
        entry = self._cache.get(fetch_key(collector, target, module))
        return entry is not None and entry.task is not None

    def close(self) -> None:
        for task in list(self._background):
            task.cancel()

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn`` in a worker thread, with the caller's context variables.

        The slot is given back when the thread ends, not when the caller stops waiting, so
        abandoned fetches still count against the bound until their sockets time out."""
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future())
        context = contextvars.copy_context()

        def work() -> None:
            result: tuple[Any, BaseException | None]
            try:
                result = (context.run(fn, *args), None)
            except BaseException as exc:
                result = (None, exc)
            try:
                with contextlib.suppress(RuntimeError):  # the loop closed (shutdown)
                    loop.call_soon_threadsafe(self._settle, pending, *result)
            finally:
                del result

        try:
            threading.Thread(target=work, name=f"collect-{getattr(fn, '__qualname__', 'fn')}",
                             daemon=True).start()
        except BaseException:
            self._slots.release()
            raise
        try:
            assert pending.future is not None
            return await pending.future  # type: ignore[no-any-return]
        finally:
            # A raised exception's traceback holds this frame: without this, the cycle
            # exception -> traceback -> frame -> future -> exception would keep the failed
            # fetch's objects (its sockets) alive until a garbage collection.
            pending.future = None

    def _settle(self, pending: _Pending, value: Any, error: BaseException | None) -> None:
        self._slots.release()
        future = pending.future
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    # -- running one collector -----------------------------------------------------------------

    async def _collect(
        self, collector: Collector, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> object:
        collect_async = getattr(collector, "collect_async", None)
        if collect_async is not None:
            return await collect_async(target, module, deadline)
        # A collector in a worker thread (WinRM) ends itself at its deadline with the reason of
        # what it was waiting for (its socket timeouts and watchdog). Given the probe's own
        # deadline, it raced the loop's cancellation at the same instant and its reason was
        # lost half the time; the inner one lets it report first (base.REPORT_MARGIN).
        return await self.in_thread(collector.collect, target, module, deadline.inner())

    async def _run(
        self, collector: Collector, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> Outcome:
        start = time.monotonic()
        log.debug("collector started", extra={"fields": {
            "target": target.name, "collector": collector.name,
            "deadline_seconds": round(deadline.remaining(), 3)}})
        try:
            # In this task (asyncio.timeout), not in one more (wait_for): the same cancellation
            # at the deadline, without a task per collector and probe.
            async with asyncio.timeout(deadline.remaining()):
                data = await self._collect(collector, target, module, deadline)
        except TimeoutError:
            duration = time.monotonic() - start
            log.warning(
                "collector timed out",
                extra={"fields": {"target": target.name, "collector": collector.name,
                                  "reason": DEADLINE_EXCEEDED,
                                  "duration_seconds": round(duration, 3)}},
            )
            return Outcome(collector.name, False, duration, error=DEADLINE_EXCEEDED,
                           kind=FailureKind.TIMEOUT)
        except Exception as exc:  # a collector must never take the probe down with it
            duration = time.monotonic() - start
            reason = describe(exc)
            kind = classify(exc)
            already_logged = isinstance(exc, CollectorError) and exc.logged
            log.log(
                logging.DEBUG if already_logged else logging.WARNING,
                "collector failed",
                extra={"fields": {"target": target.name, "collector": collector.name,
                                  "reason": reason, "kind": str(kind),
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

    async def _cached(
        self, collector: Collector, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> Outcome:
        """The cached outcome, or a fetch shared by every probe that needs it; while a refetch
        runs, the last good outcome (so a slow refetch does not turn ``up`` to 0)."""
        key = fetch_key(collector.name, target, module)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = _CacheEntry()
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        interval = module.cache_interval(collector.name)
        last = entry.last
        stale = replace(last, from_cache=True) if last is not None and last.success else None
        task = entry.task
        if task is None:
            if last is not None and last.fetched_at is not None:
                age = time.time() - last.fetched_at
                keep = interval if last.success else min(interval, FAILURE_RETRY_SECONDS)
                if age < keep:
                    log.debug("served from cache", extra={"fields": {
                        "target": target.name, "collector": collector.name,
                        "age_seconds": round(age, 1), "cache_interval_seconds": keep,
                        "success": last.success}})
                    return replace(last, from_cache=True)
            log.debug("cache miss, fetching", extra={"fields": {
                "target": target.name, "collector": collector.name,
                "cache_interval_seconds": interval,
                "fallback": "last good data" if stale is not None else "none"}})
            # The fetch gets the module's whole timeout even when this scrape's deadline is
            # shorter: its result then serves the next scrape instead of being thrown away.
            fetch_deadline = Deadline(max(deadline.at, time.monotonic() + module.timeout))
            task = asyncio.get_running_loop().create_task(
                self._run(collector, target, module, fetch_deadline)
            )
            entry.task = task
            self._background.add(task)
            task.add_done_callback(functools.partial(self._store, entry))
        elif stale is not None:
            log.debug("another probe is fetching, serving the last good data",
                      extra={"fields": {"target": target.name, "collector": collector.name}})
            return stale  # another probe is refetching: serve the last good data at once
        else:
            log.debug("another probe is fetching, waiting for it",
                      extra={"fields": {"target": target.name, "collector": collector.name}})
        try:
            return await asyncio.wait_for(asyncio.shield(task), deadline.remaining())
        except TimeoutError:
            if stale is not None:
                log.debug("fetch outlives the deadline, serving the last good data",
                          extra={"fields": {"target": target.name,
                                            "collector": collector.name}})
                return stale  # the refetch goes on and fills the cache for next time
            log.warning("collector timed out",
                        extra={"fields": {"target": target.name, "collector": collector.name,
                                          "reason": DEADLINE_EXCEEDED}})
            return Outcome(collector.name, False, deadline.remaining(), error=DEADLINE_EXCEEDED,
                           kind=FailureKind.TIMEOUT)

    def _store(self, entry: _CacheEntry, task: asyncio.Task[Outcome]) -> None:
        self._background.discard(task)
        if entry.task is task:
            entry.task = None
        if task.cancelled():
            return
        outcome = task.result()
        if not outcome.success:
            outcome = replace(outcome, fetched_at=time.time())
        entry.last = outcome

    def reject(
        self, target: TargetConfig, module: ModuleConfig, outcome: Outcome, reason: str
    ) -> Outcome:
        """``outcome``'s data could not be turned into metrics: the failed outcome to report,
        and the cache no longer serves that data as a success (it is refetched after
        FAILURE_RETRY_SECONDS, like any failure)."""
        failed = replace(outcome, success=False, data=None, error=reason,
                         kind=FailureKind.PARSE)
        entry = self._cache.get(fetch_key(outcome.collector, target, module))
        if entry is not None and entry.last is not None and entry.last.data is outcome.data:
            entry.last = replace(failed, fetched_at=time.time(), from_cache=False)
        return failed

    # -- the probe -----------------------------------------------------------------------------

    async def probe(
        self,
        target: TargetConfig,
        module: ModuleConfig,
        deadline: Deadline,
        catalog: Catalog,
        policy: PolicyConfig,
    ) -> ProbeResult:
        runs: list[asyncio.Task[Outcome]] = []
        loop = asyncio.get_running_loop()
        for name in module.collectors:
            collector = self.collectors.get(name)
            if collector is None:
                failed = Outcome(name, False, 0.0, error="collector not available",
                                 kind=FailureKind.INTERNAL)
                runs.append(loop.create_task(_value(failed)))
            elif is_cached(collector, module):
                runs.append(loop.create_task(self._cached(collector, target, module, deadline)))
            else:
                runs.append(loop.create_task(self._run(collector, target, module, deadline)))
        try:
            outcomes = await asyncio.gather(*runs)
        finally:
            for run in runs:  # when the probe itself is cancelled (the client went away)
                run.cancel()
        completed = tuple(self._with_last_success(target, module, o) for o in outcomes)
        return self._assess(target, module, completed, catalog, policy)

    def _with_last_success(
        self, target: TargetConfig, module: ModuleConfig, outcome: Outcome
    ) -> Outcome:
        key = (target.name, target.address, module.name, outcome.collector)
        if outcome.success and outcome.fetched_at is not None:
            previous = self._last_ok.get(key, 0.0)
            self._last_ok[key] = max(previous, outcome.fetched_at)
        elif len(self._last_ok) > MAX_CACHE_ENTRIES:
            self._last_ok.clear()
        return replace(outcome, last_success=self._last_ok.get(key))

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
        try:
            assessment = assess(version, catalog, policy, telemetry=target.telemetry)
        except Exception as exc:  # a policy the dates cannot carry must not end the probe
            log.warning(
                "cannot judge the License Server version against the policy",
                extra={"fields": {"target": target.name, "reason": describe(exc)}},
            )
            return ProbeResult(target, module, outcomes)
        return ProbeResult(target, module, outcomes, version, text, assessment)


async def _value(outcome: Outcome) -> Outcome:
    return outcome
