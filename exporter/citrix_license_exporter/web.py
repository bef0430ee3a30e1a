"""HTTP routes: ``/``, ``/metrics``, ``/probe``, ``/-/healthy``, ``/-/ready``, ``/-/reload``.

The stdlib threading server gives each request its own thread; probes block only their own
thread and are bounded by their deadline. A semaphore bounds how many probes run at once: past
it a probe is refused at once with 503 rather than queued without limit.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, generate_latest

from .app import ExporterState
from .collectors.base import Deadline
from .config import ModuleConfig, TargetConfig, redact
from .metrics import exporter_families, probe_families
from .probelog import capture
from .status import render_status, snapshot

log = logging.getLogger(__name__)

#: Subtracted from Prometheus' scrape timeout so the answer arrives before Prometheus gives up
#: (blackbox_exporter uses the same 0.5 s).
SCRAPE_TIMEOUT_OFFSET = 0.5
MIN_DEADLINE = 0.1


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


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many Prometheus servers (or a reload storm) may connect at once.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        state: ExporterState,
        max_concurrent_probes: int = 256,
        bind_and_activate: bool = True,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ExporterHandler, bind_and_activate)
        self.state = state
        self.counters = ProbeCounters()
        self.probe_slots = threading.BoundedSemaphore(max_concurrent_probes)
        self.max_concurrent_probes = max_concurrent_probes
        self.ready = threading.Event()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(_FamiliesCollector(lambda: exporter_families(self.state)))
        self.registry.register(_FamiliesCollector(self.counters.families))
        #: Hook for --web.config.file: (handler) -> True when the request may go on.
        self.authorize: Callable[[ExporterHandler], bool] = lambda handler: True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Instead of the stdlib's traceback on stderr: a client that went away (Prometheus
        gave up at its scrape timeout) is logged at debug level, anything else as one line."""
        exc = sys.exc_info()[1]
        client = client_address[0] if client_address else "?"
        if isinstance(exc, ConnectionError | TimeoutError | ssl.SSLError):
            log.debug("client connection lost",
                      extra={"fields": {"client": client, "reason": type(exc).__name__}})
            return
        log.error("request failed",
                  extra={"fields": {"client": client, "reason": f"{type(exc).__name__}: {exc}"}})
        log.debug("request failure details", exc_info=True)


class ExporterHandler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"
    server_version = "citrix-license-exporter"
    # Bounds a client that opens a connection and sends nothing.
    timeout = 30
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add about 40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True

    # -- plumbing ------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"fields": {"client": self.client_address[0],
                                                    "request": format % args}})

    def _send(
        self, status: int, body: bytes | str, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        # Scrubbed of credentials, even one a hostile server echoed into a value or an error.
        data = redact(body if isinstance(body, str) else body.decode("utf-8", "replace")).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _route(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        return parts.path, parse_qs(parts.query, keep_blank_values=True)

    def do_GET(self) -> None:
        if not self.server.authorize(self):
            return
        path, query = self._route()
        routes: dict[str, Callable[[dict[str, list[str]]], None]] = {
            "/": self._landing,
            "/logs": self._probe_log,
            "/metrics": self._metrics,
            "/probe": self._probe,
            "/-/healthy": lambda q: self._send(200, "Healthy\n"),
            "/-/ready": self._ready,
        }
        handler = routes.get(path)
        if handler is None:
            if path == "/-/reload":
                self._send(405, "use POST to reload the configuration\n")
            else:
                self._send(404, "not found\n")
            return
        handler(query)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not self.server.authorize(self):
            return
        path, _ = self._route()
        if path != "/-/reload":
            self._send(405 if path in ("/", "/metrics", "/probe") else 404, "not found\n")
            return
        ok, message = self.server.state.reload()
        self._send(200 if ok else 500, message + "\n")

    # -- routes --------------------------------------------------------------------------------

    def _ready(self, query: dict[str, list[str]]) -> None:
        if self.server.ready.is_set():
            self._send(200, "Ready\n")
        else:
            self._send(503, "Not ready\n")

    def _metrics(self, query: dict[str, list[str]]) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(200, encoder(self.server.registry), content_type)

    def _landing(self, query: dict[str, list[str]]) -> None:
        status = snapshot(self.server.state, time.time())
        self._send(200, render_status(status), "text/html; charset=utf-8")

    def _resolve(
        self, query: dict[str, list[str]]
    ) -> tuple[TargetConfig, ModuleConfig] | str:
        config = self.server.state.config
        names = query.get("target", [])
        if len(names) != 1 or not names[0].strip():
            return "exactly one 'target' parameter is required"
        name = names[0].strip()
        module_names = query.get("module", [])
        if len(module_names) > 1:
            return "at most one 'module' parameter is allowed"
        module_name = module_names[0] if module_names else None
        # Which module's credentials may go to which target is the config's rule.
        return config.resolve(name, module_name)

    def _deadline(self, module: ModuleConfig) -> float:
        return self._deadline_and_reason(module)[0]

    def _deadline_and_reason(self, module: ModuleConfig) -> tuple[float, str]:
        seconds = module.timeout
        reason = f"module {module.name} timeout {module.timeout:g}s"
        header = self.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
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

    def _probe(self, query: dict[str, list[str]]) -> None:
        resolved = self._resolve(query)
        if isinstance(resolved, str):
            self._send(400, resolved + "\n")
            return
        target, module = resolved
        counters = self.server.counters
        if not self.server.probe_slots.acquire(blocking=False):
            counters.reject()
            self._send(
                503,
                f"too many probes in flight (limit {self.server.max_concurrent_probes})\n",
            )
            return
        counters.enter()
        try:
            state = self.server.state
            start = time.monotonic()
            seconds, deadline_reason = self._deadline_and_reason(module)
            deadline = Deadline.after(seconds)
            with capture() as probe_log:
                log.debug("probe started", extra={"fields": {
                    "target": target.name, "module": module.name,
                    "deadline_seconds": round(seconds, 3), "deadline_from": deadline_reason}})
                result = state.prober.probe(
                    target, module, deadline, state.catalog, state.config.policy
                )
                log.debug("probe done", extra={"fields": {
                    "target": target.name, "up": int(result.up),
                    "duration_seconds": round(time.monotonic() - start, 3)}})
            families = probe_families(result)
            duration = GaugeMetricFamily(
                "citrix_license_probe_duration_seconds",
                "How long the whole probe took, as seen by the exporter.",
            )
            duration.add_metric([], time.monotonic() - start)
            families.append(duration)
        finally:
            counters.leave()
            self.server.probe_slots.release()
        counters.count(module.name, "success" if result.up else "failure")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_FamiliesCollector(lambda: families))
        text = redact(generate_latest(registry).decode())
        record = state.history.record(
            result, lines=probe_log.lines, metrics=text, duration=time.monotonic() - start,
            deadline=seconds, deadline_reason=deadline_reason,
            configured=state.config.find_target(target.name) is target,
        )
        if query.get("debug", [""])[-1].lower() == "true":
            self._send(200, record.debug_text())
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = text if encoder is generate_latest else encoder(registry)
        self._send(200, body, content_type)

    def _probe_log(self, query: dict[str, list[str]]) -> None:
        ids = query.get("id", [])
        record = None
        if len(ids) == 1 and ids[0].isascii() and ids[0].isdigit():
            record = self.server.state.history.get(int(ids[0]))
        if record is None:
            self._send(404, "no such probe in the recent probes (the last "
                            f"{self.server.state.history.max_probes} are kept)\n")
            return
        self._send(200, record.debug_text())

