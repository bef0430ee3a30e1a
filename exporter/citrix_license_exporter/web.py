"""The exporter's HTTP server: ``/``, ``/metrics``, ``/probe``, ``/-/healthy``, ``/-/ready``,
``/-/reload``, on one asyncio event loop.

HTTP/1.1 is aiohttp's (its low-level server: the C parser, no router or middleware). Its limits,
with ``connections.py`` for what aiohttp does not bound:

- at most ``MAX_HEADERS`` header lines of at most ``MAX_FIELD_SIZE`` bytes, and
  ``connections.MAX_HEADER_BYTES`` in all, which must arrive within ``HEADER_TIMEOUT`` of the
  request's first byte: a client without credentials holds a few KiB for a few seconds;
- every body is refused (no route takes one) with 413 and the connection closed, so bytes
  after the headers can never be read as another request;
- at most ``--web.max-connections`` connections (lowered below the open-file limit); past it
  the longest idle one is closed;
- at most ``--web.max-concurrent-probes`` probes at once: past it a probe is refused at once
  with 503 rather than queued without limit.

Route handling lives in ``Routes``: one method per path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from .app import ExporterState
from .collectors.base import Deadline
from .compression import exposition_response
from .config import ModuleConfig, TargetConfig, redact
from .connections import (
    LISTEN_BACKLOG,
    ConnectionLimits,
    TLSSettings,
    default_max_connections,
    guarded_factory,
)
from .exposition import EOF_MARK, ProbeRenderer, encode
from .metrics import exporter_families
from .probelog import capture
from .reload import Reloader
from .status import render_status, snapshot

if TYPE_CHECKING:
    from .webconfig import WebConfigGuard

log = logging.getLogger(__name__)

#: Subtracted from Prometheus' scrape timeout so the answer arrives before Prometheus gives up
#: (blackbox_exporter uses the same 0.5 s).
SCRAPE_TIMEOUT_OFFSET = 0.5
MIN_DEADLINE = 0.1
#: Header limits handed to aiohttp's parser (its defaults are 128 lines of 8 KiB).
MAX_HEADERS = 64
MAX_FIELD_SIZE = 8190
HEADER_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
#: An answer must be taken by the client within this long, or the connection is dropped.
WRITE_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 1024
#: bcrypt checks that missed the cache run in this many threads, off the event loop.
BCRYPT_THREADS = 2
SERVER_HEADER = "citrix-license-exporter"


class ProbeCounters:
    """Counters of probes by outcome, exposed on /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_result: dict[tuple[str, str], int] = {}
        self.rejected = 0
        self.in_flight = 0

    def reject(self) -> None:
        with self._lock:
            self.rejected += 1

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def count(self, module: str, result: str) -> None:
        with self._lock:
            key = (module, result)
            self.by_result[key] = self.by_result.get(key, 0) + 1

    def families(self) -> Iterable[Metric]:
        with self._lock:
            probes = CounterMetricFamily(
                "citrix_license_exporter_probes",
                "Probes answered, by module and result (success: the target's primary "
                "collector succeeded).",
                labels=["module", "result"],
            )
            for (module, result), value in sorted(self.by_result.items()):
                probes.add_metric([module, result], value)
            rejected = CounterMetricFamily(
                "citrix_license_exporter_probes_rejected",
                "Probes refused with 503 because too many were running at once.",
            )
            rejected.add_metric([], self.rejected)
            in_flight = GaugeMetricFamily(
                "citrix_license_exporter_probes_in_flight", "Probes running now."
            )
            in_flight.add_metric([], self.in_flight)
        return [probes, rejected, in_flight]


class _FamiliesCollector:
    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterable[Metric]:
        return self._produce()


def text(status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> web.Response:
    # Scrubbed of credentials, even one a hostile server echoed into a value or an error.
    return web.Response(status=status, body=redact(body).encode("utf-8"),
                        headers={"Content-Type": content_type})


def valid_host_name(name: str) -> bool:
    """A name a resolver can be given: DNS length limits, IDNA-encodable, no URL syntax."""
    if len(name) > 253 or any(c.isspace() or c in "/?#@\\" for c in name):
        return False
    try:
        encoded = name.encode("idna")
    except UnicodeError:
        return False
    return len(encoded) <= 253 and all(0 < len(label) <= 63 for label in
                                       encoded.rstrip(b".").split(b"."))


def resolve_target(
    state: ExporterState, query: Any
) -> tuple[TargetConfig, ModuleConfig] | str:
    config = state.config
    names = query.getall("target", [])
    if len(names) != 1 or not names[0].strip():
        return "exactly one 'target' parameter is required"
    name = names[0].strip()
    module_names = query.getall("module", [])
    if len(module_names) > 1:
        return "at most one 'module' parameter is allowed"
    module_name = module_names[0] if module_names else None
    if config.find_target(name) is None and not valid_host_name(name):
        return f"target {name[:100]!r} is not a host name or address"
    # Which module's credentials may go to which target is the config's rule.
    return config.resolve(name, module_name)


def probe_seconds(module: ModuleConfig, headers: CIMultiDictProxy[str]) -> float:
    return probe_deadline(module, headers)[0]


def probe_deadline(module: ModuleConfig, headers: CIMultiDictProxy[str]) -> tuple[float, str]:
    """The probe's deadline in seconds, and where it comes from (for the probe's log)."""
    seconds = module.timeout
    reason = f"module {module.name} timeout {module.timeout:g}s"
    header = headers.get("X-Prometheus-Scrape-Timeout-Seconds")
    if header:
        try:
            scrape_timeout = float(header)
        except ValueError:
            scrape_timeout = 0.0
        if scrape_timeout > 0 and scrape_timeout - SCRAPE_TIMEOUT_OFFSET < seconds:
            seconds = scrape_timeout - SCRAPE_TIMEOUT_OFFSET
            reason = (f"X-Prometheus-Scrape-Timeout-Seconds {scrape_timeout:g} minus "
                      f"{SCRAPE_TIMEOUT_OFFSET:g}s (below the {reason})")
    if seconds < MIN_DEADLINE:
        return MIN_DEADLINE, f"the minimum {MIN_DEADLINE:g}s ({reason} is less)"
    return seconds, reason


class Routes:
    """One method per path. ``server`` gives the state, the counters and the registry."""

    def __init__(self, server: ExporterServer) -> None:
        self.server = server

    def table(self) -> dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]]:
        return {
            "/": self.landing,
            "/logs": self.probe_log,
            "/metrics": self.metrics,
            "/probe": self.probe,
            "/-/healthy": self.healthy,
            "/-/ready": self.ready,
        }

    async def healthy(self, request: web.BaseRequest) -> web.StreamResponse:
        return text(200, "Healthy\n")

    async def ready(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.server.ready.is_set():
            return text(200, "Ready\n")
        return text(503, "Not ready\n")

    async def reload(self, request: web.BaseRequest) -> web.StreamResponse:
        ok, message = await self.server.reloader.reload()
        return text(200 if ok else 500, message + "\n")

    async def metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Scrubbed in its label values (exposition.scrub), not as a whole text: a fragment of
        # a password would otherwise cut metric names such as process_cpu_seconds_total.
        body = encode(self.server.registry.collect(), encoder, content_type)
        if content_type.startswith("application/openmetrics-text"):
            body += EOF_MARK
        return exposition_response(request, body, content_type)

    async def landing(self, request: web.BaseRequest) -> web.StreamResponse:
        page = render_status(snapshot(self.server.state, time.time()))
        return text(200, page.decode("utf-8"), "text/html; charset=utf-8")

    async def probe_log(self, request: web.BaseRequest) -> web.StreamResponse:
        history = self.server.state.history
        ids = request.query.getall("id", [])
        record = None
        if len(ids) == 1 and ids[0].isascii() and ids[0].isdigit():
            record = history.get(int(ids[0]))
        if record is None:
            return text(404, "no such probe in the recent probes (the last "
                             f"{history.max_probes} are kept)\n")
        return text(200, record.debug_text())

    async def probe(self, request: web.BaseRequest) -> web.StreamResponse:
        server = self.server
        state = server.state
        resolved = resolve_target(state, request.query)
        if isinstance(resolved, str):
            return text(400, resolved + "\n")
        target, module = resolved
        counters = server.counters
        if counters.in_flight >= server.max_concurrent_probes:
            counters.reject()
            return text(503, f"too many probes in flight (limit {server.max_concurrent_probes})\n")
        counters.enter()
        try:
            start = time.monotonic()
            seconds, deadline_from = probe_deadline(module, request.headers)
            deadline = Deadline.after(seconds)
            # The probe's log lines (its tasks and worker threads inherit the context).
            with capture() as probe_log:
                log.debug("probe started", extra={"fields": {
                    "target": target.name, "module": module.name,
                    "deadline_seconds": round(seconds, 3), "deadline_from": deadline_from}})
                result = await state.prober.probe(
                    target, module, deadline, state.catalog, state.config.policy
                )
                duration = time.monotonic() - start
                accept = request.headers.get("Accept", "")
                body, content_type, result, plain = server.renderer.render_with_text(
                    result, duration, accept)
                log.debug("probe done", extra={"fields": {
                    "target": target.name, "up": int(result.up),
                    "duration_seconds": round(duration, 3)}})
        finally:
            counters.leave()
        counters.count(module.name, "success" if result.up else "failure")
        # ``plain``: the text exposition for the recent probes and debug=true (the answer's own
        # bytes where the formats agree; the renderer caches each fetch's bytes).
        record = state.history.record(
            result, lines=probe_log.lines, metrics=plain.decode("utf-8"), duration=duration,
            deadline=seconds, deadline_reason=deadline_from,
            configured=state.config.find_target(target.name) is target,
        )
        if request.query.get("debug", "").lower() == "true":
            return text(200, record.debug_text())
        return exposition_response(request, body, content_type)


class ExporterServer:
    """The listening socket (bound at construction, so a busy port fails at start) and the
    server on it. ``serve()`` runs it on the current event loop; ``serve_forever()`` runs it
    on a new loop in the calling thread (tests start it in a thread)."""

    def __init__(
        self,
        address: tuple[str, int],
        state: ExporterState,
        max_concurrent_probes: int = 256,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        self.state = state
        self.counters = ProbeCounters()
        self.max_concurrent_probes = max_concurrent_probes
        self.limits = ConnectionLimits(
            default_max_connections(max_connections),
            header_timeout=HEADER_TIMEOUT,
            idle_timeout=IDLE_TIMEOUT,
        )
        self.ready = threading.Event()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(_FamiliesCollector(lambda: exporter_families(self.state)))
        self.registry.register(_FamiliesCollector(self.counters.families))
        self.renderer = ProbeRenderer(state.prober)
        self.reloader = Reloader(state.reload)
        self.routes = Routes(self)
        self.web_config: WebConfigGuard | None = None
        self._bcrypt = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stopped = threading.Event()

    def use_web_config(self, guard: WebConfigGuard) -> None:
        """Serve with the exporter-toolkit web config ``guard`` (TLS, basic auth, headers)."""
        self.web_config = guard

    # -- running -------------------------------------------------------------------------------

    async def serve(self, started: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        loop.set_exception_handler(_log_loop_error)
        aio = web.Server(
            self._handle,
            handler_cancellation=True,
            max_headers=MAX_HEADERS,
            max_field_size=MAX_FIELD_SIZE,
            max_line_size=MAX_FIELD_SIZE,
            keepalive_timeout=IDLE_TIMEOUT,
            lingering_time=0,
            access_log=None,
        )
        server = await loop.create_server(
            guarded_factory(self.limits, aio, self._tls_settings()), sock=self.socket,
            backlog=LISTEN_BACKLOG,
        )
        try:
            if started is not None:
                started()
            await self._stopping.wait()
        finally:
            server.close()
            await aio.shutdown(1.0)
            self.state.prober.close()
            self._bcrypt.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()

    def _tls_settings(self) -> TLSSettings | None:
        guard = self.web_config
        if guard is None or guard.loaded.context is None:
            return None
        from . import webconfig

        def context() -> Any:
            # The web config in force when the client connects (re-read if a file changed).
            return guard.current().context or guard.loaded.context

        def allowed_sans() -> tuple[str, ...]:
            tls = guard.current().config.tls
            return tls.client_allowed_sans if tls is not None else ()

        return TLSSettings(context, lambda: webconfig.HANDSHAKE_TIMEOUT, allowed_sans)

    def stop(self) -> None:
        """Ask the server to stop (from the loop's thread or any other)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        asyncio.run(self.serve())

    def shutdown(self) -> None:
        self.stop()
        if self._loop is not None:
            self._stopped.wait(10)

    def server_close(self) -> None:
        self.socket.close()

    # -- one request ---------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = self.limits.connection(request.transport)
        if conn is not None:
            conn.request_started()
        try:
            response = await self._respond(request)
            response.headers["Server"] = SERVER_HEADER
            try:
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await response.prepare(request)
                    await response.write_eof()
            except TimeoutError:
                self.limits.note("answer not taken in time", request.remote)
                if request.transport is not None:
                    request.transport.abort()
            return response
        finally:
            if conn is not None:
                conn.request_finished()

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        if len(request.raw_headers) > MAX_HEADERS:
            # aiohttp 3.14's parser enforces max_headers itself; 3.10 and 3.12 do not.
            refused = text(431, "too many header lines\n")
            refused.force_close()
            return refused
        extra: dict[str, str] = {}
        guard = self.web_config
        if guard is not None:
            config = guard.current().config
            extra = dict(config.headers)
            if config.users and not await self._authorized(request, guard, config.users):
                refused = text(401, "Unauthorized\n")
                refused.headers["WWW-Authenticate"] = 'Basic realm="citrix-license-exporter"'
                refused.force_close()  # the request body (if any) is left unread
                refused.headers.update(extra)
                return refused
        response = await self._route(request)
        response.headers.update(extra)
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.body_exists:
            # No route takes a body: refusing it, and closing, means no byte after the headers
            # is ever read as a request of its own.
            refused = text(413, "request bodies are not accepted\n")
            refused.force_close()
            return refused
        path = request.path
        if request.method in ("GET", "HEAD"):
            handler = self.routes.table().get(path)
            if handler is not None:
                return await handler(request)
            if path == "/-/reload":
                return text(405, "use POST to reload the configuration\n")
            return text(404, "not found\n")
        if request.method == "POST":
            if path == "/-/reload":
                return await self.routes.reload(request)
            return text(405 if path in ("/", "/metrics", "/probe") else 404, "not found\n")
        return text(501, f"unsupported method {request.method[:20]!r}\n")

    async def _authorized(
        self, request: web.BaseRequest, guard: WebConfigGuard, users: Any
    ) -> bool:
        from .webconfig import _basic_credentials

        client = request.remote or "?"
        credentials = _basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            log.debug("basic authentication missing", extra={"fields": {"client": client}})
            return False
        user, password = credentials
        ok = guard.lookup(user, password)  # a cached answer costs no bcrypt
        if ok is None:
            # bcrypt costs milliseconds to seconds: off the loop, in a small pool.
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._bcrypt, guard.check, user, password)
        if not ok:
            log.debug(
                "basic authentication failed",
                extra={"fields": {"client": client,
                                  "reason": "wrong password" if user in users
                                  else "unknown user"}},
            )
        return bool(ok)


_LOOP_ERRORS_LOGGED: dict[str, float] = {}


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own errors (e.g. accept() out of descriptors: asyncio then pauses accepting
    for a second instead of spinning) as one log line at most once a second per message; the
    traceback only at debug level."""
    message = str(context.get("message", "event loop error"))
    now = time.monotonic()
    if now - _LOOP_ERRORS_LOGGED.get(message, -1.0) < 1.0:
        return
    _LOOP_ERRORS_LOGGED[message] = now
    exc = context.get("exception")
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else ""
    log.error(message, extra={"fields": {"reason": reason}})
    if exc is not None:
        log.debug("event loop error details", exc_info=exc)
