"""Bounds on the exporter's own HTTP connections, below the HTTP server library (aiohttp).

aiohttp caps the number and length of header lines, but it has no cap on connections, no
deadline for a request's headers as a whole, and no total cap on header bytes. This module adds
them at the asyncio protocol level, wrapping each connection's aiohttp protocol:

- at most ``max_connections`` connections at once. Past it, the connection idle (or still
  sending its headers) the longest is closed to make room, so a flood of silent clients cannot
  lock out Prometheus or ``/-/healthy``; when every connection is busy with a request, the new
  one is refused. The cap stays below the process's open-file limit, so descriptors do not run
  out because of clients (asyncio's accept loop also backs off for a second, instead of
  spinning, when they do run out for another reason).
- a request's headers (and a TLS handshake) must arrive in full within ``header_timeout``
  from their first byte, or from the connection's start, however the client paces them;
- at most ``max_header_bytes`` may arrive before a request's headers are complete;
- a kept-alive connection with no request for ``idle_timeout`` is closed.

Every refusal is logged (at most once per second for each kind, so a flood does not flood the
log) and counted for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Descriptors kept free of client connections: the probes' own sockets, files, the listener.
FD_RESERVE = 64
#: asyncio accepts up to the listen backlog's worth of connections in one go, before any of
#: them reaches the cap below: room for that many more.
LISTEN_BACKLOG = 128


def default_max_connections(requested: int) -> int:
    """``requested``, lowered to leave room below the open-file limit (systemd's default soft
    limit is 1,024) for the probes' own sockets and one burst of accepts."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(4, min(requested, soft - FD_RESERVE - LISTEN_BACKLOG))


class ConnectionLimits:
    def __init__(
        self,
        max_connections: int,
        header_timeout: float = 10.0,
        max_header_bytes: int = 32 * 1024,
        idle_timeout: float = 120.0,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.idle_timeout = idle_timeout
        #: Open connections, the one idle (or waiting for headers) the longest first.
        self._open: OrderedDict[GuardedConnection, None] = OrderedDict()
        self._by_transport: dict[Any, GuardedConnection] = {}
        self.refused: dict[str, int] = {}
        self._last_log: dict[str, float] = {}

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def note(self, kind: str, peer: object) -> None:
        """Count (and, at most once a second per kind, log) a connection closed by a bound."""
        self.refused[kind] = self.refused.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._last_log.get(kind, 0.0) >= 1.0:
            self._last_log[kind] = now
            log.warning(
                "client connection closed",
                extra={"fields": {"reason": kind, "client": _host(peer),
                                  "open_connections": len(self._open),
                                  "closed_so_far": self.refused[kind]}},
            )

    def admit(self, conn: GuardedConnection) -> bool:
        if len(self._open) >= self.max_connections:
            victim = next((c for c in self._open if not c.busy), None)
            if victim is None:
                self.note("too many connections", conn.peer)
                return False
            self.note("too many connections, closed the longest idle", victim.peer)
            self.forget(victim)  # now: its descriptor is freed on the next loop iteration
            victim.close()
        self._open[conn] = None
        return True

    def register(self, transport: Any, conn: GuardedConnection) -> None:
        self._by_transport[transport] = conn

    def forget(self, conn: GuardedConnection) -> None:
        self._open.pop(conn, None)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def touch(self, conn: GuardedConnection) -> None:
        if conn in self._open:
            self._open.move_to_end(conn)

    def connection(self, transport: Any) -> GuardedConnection | None:
        return self._by_transport.get(transport)


def _host(peer: object) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "?"


class TLSSettings:
    """Where each new connection's TLS comes from: the web config in force when it connects
    (so a rotated certificate is served without a restart)."""

    def __init__(
        self,
        context: Callable[[], ssl.SSLContext],
        handshake_timeout: Callable[[], float],
        allowed_sans: Callable[[], tuple[str, ...]],
    ) -> None:
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.allowed_sans = allowed_sans


def peer_sans(peercert: object) -> set[str]:
    if not isinstance(peercert, dict):
        return set()
    return {str(entry[1]) for entry in peercert.get("subjectAltName", ()) if len(entry) == 2}


class GuardedConnection(asyncio.Protocol):
    """One client connection: enforces ``ConnectionLimits``, runs the TLS handshake when the
    web config asks for TLS, and hands the bytes to the HTTP server library's protocol
    (``inner``)."""

    def __init__(
        self, limits: ConnectionLimits, inner: asyncio.Protocol, tls: TLSSettings | None = None
    ) -> None:
        self.limits = limits
        self.inner = inner
        self.tls = tls
        self._handshake: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.peer: object = None
        self.busy = False  # a request is being handled
        self._admitted = False
        self._serving = False  # the inner protocol has the connection
        self._early: list[bytes] = []
        self._waiting_headers = True
        self._header_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        if not self.limits.admit(self):
            transport.abort()
            return
        self._admitted = True
        tls = self.tls
        if tls is not None:
            # No byte is read before the handshake takes the connection over.
            transport.pause_reading()
            self._arm(self.limits.header_timeout + tls.handshake_timeout(), "TLS handshake")
            self._handshake = asyncio.get_running_loop().create_task(
                self._start_tls(transport, tls)
            )
            return
        self._serve(transport)

    def _serve(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._serving = True
        self.limits.register(transport, self)
        self._arm(self.limits.header_timeout, "request headers not complete in time")
        self.inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            self.inner.data_received(data)

    async def _start_tls(self, raw: asyncio.Transport, tls: TLSSettings) -> None:
        loop = asyncio.get_running_loop()
        # The whole handshake gets one deadline, however the client paces its bytes.
        timeout = tls.handshake_timeout()
        try:
            secure = await loop.start_tls(
                raw, self, tls.context(), server_side=True, ssl_handshake_timeout=timeout
            )
            allowed = tls.allowed_sans()
            if secure is not None and allowed and \
                    not peer_sans(secure.get_extra_info("peercert")) & set(allowed):
                secure.abort()
                raise ssl.SSLError("client certificate has none of client_allowed_sans")
        except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
            # ssl.SSLError and ConnectionError are OSErrors.
            log.debug("TLS handshake failed",
                      extra={"fields": {"client": _host(self.peer),
                                        "reason": getattr(exc, "reason", None) or str(exc)
                                        or type(exc).__name__}})
            raw.abort()
            self._admitted = False
            self.limits.forget(self)
            return
        if secure is None:  # the connection went away during the handshake
            raw.abort()
            self._admitted = False
            self.limits.forget(self)
            return
        self._serve(secure)

    def data_received(self, data: bytes) -> None:
        if not self._serving:
            # Decrypted bytes that arrive before start_tls() has returned: kept (bounded by
            # the header cap below) and handed over when serving starts.
            if self._admitted:
                self._early.append(data)
                self._header_bytes += len(data)
                if self._header_bytes > self.limits.max_header_bytes:
                    self._close_for("request headers too large")
            return
        if not self.busy:
            if not self._waiting_headers:  # the first byte of the next request
                self._waiting_headers = True
                self._arm(self.limits.header_timeout, "request headers not complete in time")
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._close_for("request headers too large")
                return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self._serving else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.limits.forget(self)
        self._admitted = False
        if self._serving:
            self._serving = False
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- called by the request handler ------------------------------------------------------------

    def request_started(self) -> None:
        self.busy = True
        self._waiting_headers = False
        self._header_bytes = 0
        self._cancel_timer()

    def request_finished(self) -> None:
        self.busy = False
        self._header_bytes = 0
        self.limits.touch(self)
        self._arm(self.limits.idle_timeout, None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- timers ----------------------------------------------------------------------------------

    def _arm(self, seconds: float, reason: str | None) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._expired, reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, reason: str | None) -> None:
        self._timer = None
        if self.busy:
            return
        if reason is None:  # an idle kept-alive connection: not worth a log line
            self.close()
        else:
            self._close_for(reason)

    def _close_for(self, reason: str) -> None:
        self.limits.note(reason, self.peer)
        self.close()


def guarded_factory(
    limits: ConnectionLimits,
    inner_factory: Callable[[], asyncio.Protocol],
    tls: TLSSettings | None = None,
) -> Callable[[], GuardedConnection]:
    return lambda: GuardedConnection(limits, inner_factory(), tls)
