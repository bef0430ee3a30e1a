"""A small HTTPS JSON server on 127.0.0.1: the base of the SIMULATED Delivery Controller REST
API (simulator/controller.py) and Citrix Cloud licensing API (simulator/cloud.py).

Real TLS with one self-signed certificate per process (from ``make_self_signed``, with an IP
address SAN for 127.0.0.1), so the exporter under test verifies TLS against the simulator's CA
file instead of switching verification off. Each server counts the requests per route, so
tests can assert that a token was fetched once and reused, and has switchable faults:

- ``unauthorized`` (401), ``forbidden`` (403), ``not_found`` (404), ``error`` (500);
- ``rate_limit`` (429) and ``unavailable`` (503), with ``Retry-After`` when one is given;
- ``malformed``: 200 with a body that is not valid JSON;
- ``slow``: the right answer, after ``slow_seconds``.

A fault applies to one route (or to every route but the token route when ``route`` is
``"api"``, or to all with None) for ``count`` requests (None: until cleared).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any

from .network import HOST, make_self_signed

FAULT_KINDS = (
    "none", "unauthorized", "forbidden", "not_found", "error", "rate_limit", "unavailable",
    "malformed", "slow",
)
_STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "error": 500,
           "rate_limit": 429, "unavailable": 503}

_CERT_LOCK = threading.Lock()
_CERT: tuple[bytes, bytes] | None = None


def certificate() -> tuple[bytes, bytes]:
    """The simulators' certificate and key (PEM), one per process: the tests' CA file."""
    global _CERT
    with _CERT_LOCK:
        if _CERT is None:
            _CERT = make_self_signed("simulated-citrix-api.test", 365, ip_addresses=(HOST,))
        return _CERT


def write_ca(directory: Path, name: str = "simulator-api-ca.pem") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(certificate()[0])
    return path


@dataclass
class Fault:
    kind: str
    route: str | None = None  # a route name, "api" (all but the token route), or None (all)
    count: int | None = None
    retry_after: str | None = None
    slow_seconds: float = 3.0


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: Mapping[str, str] = field(default_factory=dict)


class TLSThreadingServer(ThreadingMixIn, HTTPServer):
    """An HTTPS test server: a thread per connection, ``tls`` set before serving. Shared by the
    simulators that speak HTTPS (this module's JSON APIs, the Citrix feed)."""

    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, never in the accept loop.
        request.settimeout(30)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            with contextlib.suppress(OSError):
                conn.close()


class _Server(TLSThreadingServer):
    sim: JSONServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if 0 < length <= 1024 * 1024 else b""
        answer = self.server.sim.dispatch(self.command, self.path, self.headers, body)
        payload = answer.body if isinstance(answer.body, bytes) else (
            b"" if answer.body is None else json.dumps(answer.body).encode()
        )
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class JSONServer:
    """Subclasses implement ``route(method, path) -> name | None`` and
    ``answer(name, method, path, headers, body) -> Answer``."""

    token_route = "tokens"  # noqa: S105 - a route name

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.last_headers: dict[str, dict[str, str]] = {}
        self.faults: list[Fault] = []
        cert_pem, key_pem = certificate()
        with tempfile.TemporaryDirectory(prefix="cle-api-sim-") as tmp:
            Path(tmp, "cert.pem").write_bytes(cert_pem)
            Path(tmp, "key.pem").write_bytes(key_pem)
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(Path(tmp, "cert.pem")), str(Path(tmp, "key.pem")))
        self.httpd = _Server((HOST, 0), _Handler)
        self.httpd.sim = self
        self.httpd.tls = self.tls
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name=f"sim-api-{name}",
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    # -- faults and counters ---------------------------------------------------------------

    def set_fault(
        self,
        kind: str,
        route: str | None = "api",
        *,
        count: int | None = None,
        retry_after: str | float | None = None,
        slow_seconds: float = 3.0,
    ) -> None:
        """Add a fault (``none`` clears them all)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
        with self._lock:
            if kind == "none":
                self.faults.clear()
                return
            after = None if retry_after is None else (
                retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            )
            self.faults.append(Fault(kind, route, count, after, slow_seconds))

    def clear_faults(self) -> None:
        self.set_fault("none")

    def count(self, route: str) -> int:
        with self._lock:
            return self.counts[route]

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                applies = (
                    fault.route is None
                    or fault.route == route
                    or (fault.route == "api" and route != self.token_route)
                )
                if applies and (fault.count is None or fault.count > 0):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    # -- dispatch --------------------------------------------------------------------------

    def route(self, method: str, path: str) -> str | None:
        raise NotImplementedError

    def answer(
        self, route: str, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        raise NotImplementedError

    def dispatch(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        route = self.route(method, path.split("?", 1)[0])
        if route is None:
            return Answer(404, {"ErrorMessage": "no such resource (SIMULATED)"})
        plain = {key.lower(): value for key, value in headers.items()}  # names: lower case
        with self._lock:
            self.counts[route] += 1
            self.last_headers[route] = plain
        fault = self._take_fault(route)
        if fault is not None:
            if fault.kind == "slow":
                self.stopped.wait(fault.slow_seconds)
            elif fault.kind == "malformed":
                return Answer(200, b'{"Items": [{"Id": "1", "Name": ')
            else:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return Answer(_STATUS[fault.kind], {"ErrorMessage": f"{fault.kind} (SIMULATED)"},
                              extra)
        return self.answer(route, method, path, plain, body)

    def close(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

