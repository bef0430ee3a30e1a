"""HTTPS requests answering JSON, for the ``controller`` and ``cloud`` collectors.

Every request is bounded by the probe deadline as a whole, however the server paces its
bytes: connect and read timeouts never exceed what is left, and at the deadline a watchdog
shuts the request's connections down, so a server that sends its headers (or its body) a byte
a second is cut off there and holds no socket or worker past it. The body is read in chunks
with a size cap (``max_response_bytes``; a larger Content-Length fails before reading).
A 429 or 503 answer with ``Retry-After`` is retried after that wait only when the wait fits in
the time left; otherwise the request fails at once with a reason saying so (the API asked us
to back off, so no blind retries). Failure reasons name the method and URL but never a header
or a body: neither may leak a credential into the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .. import __version__
from ..config import TLSConfig, redact_url
from ..redaction import shorten
from ..tlscontext import client_context
from .base import CollectorError, Deadline, FailureKind
from .failures import classify, status_kind

log = logging.getLogger(__name__)

# httpx logs every request at INFO; keep the exporter's log to its own lines.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

CONNECT_TIMEOUT = 10.0
#: One request plus at most this many waits for Retry-After.
MAX_RETRIES = 2
#: A Retry-After wait is only taken when this much time is still left after it.
RETRY_MARGIN = 0.5


class HTTPStatusError(CollectorError):
    """The server answered, with a status that is not 2xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, kind=status_kind(status))
        self.status = status


@dataclass(frozen=True)
class JSONAnswer:
    status: int
    body: Any
    #: The answer's ``Date`` header, if any.
    date: str | None


def new_client(tls: TLSConfig) -> httpx.Client:
    """A client verifying TLS per the module (on by default, with an optional CA file).
    Redirects are not followed: a credential must not travel to another host."""
    try:
        verify = client_context(tls.ca_file, verify=not tls.insecure_skip_verify)
    except (OSError, ssl.SSLError) as exc:
        raise CollectorError(f"cannot load the CA file {tls.ca_file}: {exc}",
                             kind=FailureKind.TLS) from None
    return httpx.Client(
        verify=verify,
        follow_redirects=False,
        headers={"Accept": "application/json",
                 "User-Agent": f"citrix-license-exporter/{__version__}"},
    )


#: The sockets each client has connected (recorded through httpcore's documented ``trace``
#: request extension), so that a deadline can shut them down.
_SOCKETS: weakref.WeakKeyDictionary[httpx.Client, list[socket.socket]] = (
    weakref.WeakKeyDictionary()
)
_SOCKETS_LOCK = threading.Lock()


def _tracer(client: httpx.Client) -> Any:
    def trace(event: str, info: Mapping[str, Any]) -> None:
        # The TCP socket, and for HTTPS the TLS socket that takes its descriptor over.
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with _SOCKETS_LOCK:
                known = _SOCKETS.setdefault(client, [])
                known[:] = [s for s in known if s.fileno() != -1]
                known.append(sock)

    return trace


@contextlib.contextmanager
def _deadline_watch(client: httpx.Client, deadline: Deadline) -> Iterator[threading.Event]:
    """Shut the client's connections down at ``deadline`` (a blocked read then ends at once);
    the event tells that it happened."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        with _SOCKETS_LOCK:
            sockets = list(_SOCKETS.get(client, ()))
        for sock in sockets:
            with contextlib.suppress(OSError, ValueError):
                # The kernel-level shutdown (the base class's, also for a TLS socket, whose
                # own shutdown() would drop its TLS state under the reading thread).
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(deadline.remaining(), expire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait (delta-seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _transport_reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return f"TLS certificate verification failed ({detail or 'untrusted certificate'})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if "Connection refused" in text:
        return "connection refused"
    return shorten(f"{type(exc).__name__}: {text}", 200)


def _send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    deadline: Deadline,
    max_bytes: int,
    headers: Mapping[str, str] | None,
    json_body: Any,
    auth: tuple[str, str] | None,
) -> tuple[httpx.Response, bytes]:
    left = deadline.check(what)
    timeout = httpx.Timeout(left, connect=min(CONNECT_TIMEOUT, left))
    started = time.monotonic()
    with _deadline_watch(client, deadline) as fired:
        try:
            with client.stream(
                method, url, headers=headers, json=json_body, auth=auth, timeout=timeout,
                extensions={"trace": _tracer(client)},
            ) as response:
                # The request line only (query values masked): never a header or a body.
                log.debug("http answer", extra={"fields": {
                    "request": f"{method} {redact_url(url)}", "status": response.status_code,
                    "seconds": round(time.monotonic() - started, 3)}})
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise CollectorError(
                        f"{what}: answer of {declared} bytes exceeds max_response_bytes "
                        f"({max_bytes})", kind=FailureKind.LIMIT,
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise CollectorError(
                            f"{what}: answer exceeds max_response_bytes ({max_bytes})",
                            kind=FailureKind.LIMIT,
                        )
                    if deadline.expired():
                        raise CollectorError(
                            f"{what}: probe deadline reached while reading the answer",
                            kind=FailureKind.TIMEOUT,
                        )
                    chunks.append(chunk)
                return response, b"".join(chunks)
        except httpx.HTTPError as exc:
            if fired.is_set():
                raise CollectorError(f"{what}: probe deadline reached before the answer was "
                                     "complete", kind=FailureKind.TIMEOUT) from None
            raise CollectorError(f"{what}: {_transport_reason(exc)}",
                                 kind=classify(exc)) from None


def request_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    deadline: Deadline,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    auth: tuple[str, str] | None = None,
) -> JSONAnswer:
    """Send one request (retrying only on 429/503 with a Retry-After that fits the deadline)
    and parse the 2xx answer as JSON. Raises HTTPStatusError for other statuses and
    CollectorError for everything else."""
    retries = 0
    while True:
        response, body = _send(
            client, method, url, what=what, deadline=deadline, max_bytes=max_bytes,
            headers=headers, json_body=json_body, auth=auth,
        )
        status = response.status_code
        if status in (429, 503):
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            left = deadline.remaining()
            name = "rate limited" if status == 429 else "service unavailable"
            if wait is None:
                raise HTTPStatusError(f"{what}: HTTP {status} ({name}) without Retry-After",
                                      status)
            if retries >= MAX_RETRIES:
                raise HTTPStatusError(
                    f"{what}: HTTP {status} ({name}), still after {retries} Retry-After waits",
                    status,
                )
            if wait + RETRY_MARGIN > left:
                raise HTTPStatusError(
                    f"{what}: HTTP {status} ({name}); Retry-After {wait:g}s does not fit in the "
                    f"{max(0.0, left):.1f}s left before the probe deadline",
                    status,
                )
            retries += 1
            time.sleep(wait)
            continue
        if not 200 <= status < 300:
            raise HTTPStatusError(f"{what}: HTTP {status}", status)
        try:
            parsed = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise CollectorError(f"{what}: answer is not UTF-8 text",
                                 kind=FailureKind.PARSE) from None
        except json.JSONDecodeError as exc:
            raise CollectorError(
                f"{what}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                kind=FailureKind.PARSE,
            ) from None
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise CollectorError(f"{what}: invalid JSON (not a document)", kind=FailureKind.PARSE)
        return JSONAnswer(status, parsed, response.headers.get("Date"))
