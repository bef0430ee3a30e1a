"""The one bounded HTTP downloader of every HTTP source: the ``controller`` and ``cloud``
collectors and the catalog's ``url:`` and ``citrix_feed:`` sources, on ``httpx.AsyncClient``.

The rules, written here and nowhere else:

- **Deadline.** Connect, headers, body, redirects and Retry-After waits count against one
  deadline, enforced by asyncio cancellation (``asyncio.timeout_at``), so a peer that sends a
  byte a second in its headers or its body is cut off at the deadline whatever it does. The
  client is closed on the way out (``async with``), so no socket outlives the request.
- **Size.** The body is read raw, in chunks, up to ``max_bytes``: a larger ``Content-Length``
  fails before reading, a chunked body as soon as it passes the cap. Compressed answers are
  refused (the request says ``Accept-Encoding: identity``), so the cap counts the bytes that
  are parsed and no small answer can inflate into a large one.
- **TLS.** Contexts come from ``tlscontext.client_context`` (cached per CA file); verification
  is on unless the caller's settings switch it off.
- **Redirects** are not followed unless the caller asks (the catalog: to https only, at most
  ``redirects``): a credential must not travel to another host.
- **Retry-After.** A 429 or 503 answer with ``Retry-After`` is retried after that wait only
  when the wait fits in the time left; otherwise the request fails at once saying so.
- **Reasons** name the method and the URL (user info and query values masked) but never a
  header or a body: neither may leak a credential into the log. Failures carry a kind from
  ``collectors/failures.py``.

httpx is imported by the first client made (``new_client``), not with this module: loading a
configuration imports this module (the catalog sources, the controller and cloud collectors),
and httpx with httpcore (and click and pygments, which httpx's ``__init__`` imports for its
command line when they are installed) holds ~3-4 MB of RSS that an exporter without a
controller, cloud or catalog URL source never uses (docs/performance.md "What RSS holds").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast

from . import __version__
from .collectors.base import CollectorError, Deadline, FailureKind
from .collectors.failures import classify, status_kind
from .config import redact_url
from .redaction import shorten
from .tlscontext import client_context

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

# httpx logs every request at INFO; keep the exporter's log to its own lines.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

USER_AGENT = f"citrix-license-exporter/{__version__}"
#: A connection attempt gives up after this long (or the time left, if shorter), so that a
#: controller that drops SYNs leaves time for the next one in the list.
CONNECT_TIMEOUT = 10.0
#: One request plus at most this many waits for Retry-After.
MAX_RETRIES = 2
#: A Retry-After wait is only taken when this much time is still left after it.
RETRY_MARGIN = 0.5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = {429: "rate limited", 503: "service unavailable"}
#: Where a request stands, from httpcore's documented ``trace`` events, for the reason the
#: deadline gives.
PHASES = {
    "connection.connect_tcp.started": "connecting",
    "connection.start_tls.started": "in the TLS handshake",
    "http11.send_request_headers.started": "sending the request",
    "http11.receive_response_headers.started": "waiting for the headers",
}


class TransportError(CollectorError):
    """A request that failed. The message names the request (method and masked URL) and says
    why; ``detail`` is the why alone. Neither holds a header or a body."""

    def __init__(self, message: str, *, kind: FailureKind | None,
                 detail: str | None = None) -> None:
        super().__init__(message, kind=kind)
        self.detail = message if detail is None else detail


class HTTPStatusError(TransportError):
    """The server answered, with a status that is not 2xx."""

    def __init__(self, message: str, status: int, *, detail: str | None = None) -> None:
        super().__init__(message, kind=status_kind(status), detail=detail)
        self.status = status


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    #: The URL that answered (after redirects, when the caller allowed them).
    url: str

    @property
    def date(self) -> str | None:
        """The answer's ``Date`` header, if any."""
        date: str | None = self.headers.get("Date")
        return date


@dataclass(frozen=True)
class Limits:
    """What bounds one fetch, and the names the reasons give to those bounds."""

    deadline: Deadline
    max_bytes: int
    #: The setting behind ``max_bytes``, as the reasons name it.
    size_setting: str = "max_response_bytes"
    #: The deadline as the reasons name it ("the probe deadline", "3s").
    deadline_name: str = "the probe deadline"
    #: Redirects followed at most (0: none; a 3xx is then an HTTP status failure).
    redirects: int = 0


def new_client(
    ca_file: str | None = None,
    *,
    verify: bool = True,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """A client verifying TLS against ``ca_file`` (None: the system store) unless ``verify``
    is False. Use it as ``async with``: closing it closes its connections. Raises
    CollectorError (kind tls) when the CA file cannot be loaded."""
    import httpx  # here, not at module scope: see the module doc

    try:
        context = client_context(ca_file, verify=verify)
    except OSError as exc:  # ssl.SSLError is an OSError
        raise CollectorError(f"cannot load the CA file {ca_file}: {exc}",
                             kind=FailureKind.TLS) from None
    return httpx.AsyncClient(
        verify=context,
        follow_redirects=False,
        # The deadline (asyncio cancellation) bounds every step; httpx's own timeouts only
        # bound the connection attempt (see CONNECT_TIMEOUT).
        timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})},
    )


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


def _transport_reason(exc: httpx.HTTPError, url: str) -> str:
    import httpx  # loaded by the client that failed (new_client)

    text = (str(exc) or type(exc).__name__).replace(url, redact_url(url))
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return ("TLS certificate verification failed (CERTIFICATE_VERIFY_FAILED: "
                f"{detail or 'untrusted certificate'})")
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection not established within {CONNECT_TIMEOUT:g}s"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if "Connection refused" in text:
        return "connection refused"
    return shorten(f"{type(exc).__name__}: {text}", 200)


class _Fetch:
    """One fetch: the request, its redirects and its Retry-After waits. ``phase`` says where
    the deadline found it."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        limits: Limits,
        request: httpx.Request,
        auth: tuple[str, str] | None,
    ) -> None:
        self.client = client
        self.limits = limits
        self.request = request
        #: Only for the request as configured: a redirect keeps what httpx's redirect rules
        #: keep (the Authorization header on the same origin only).
        self.auth = auth
        self.url = str(request.url)
        self.what = f"{request.method} {redact_url(self.url)}"
        self.phase = "waiting for a connection"
        # Carried over to the redirected requests (httpx copies the extensions).
        request.extensions["trace"] = self._trace

    async def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        self.phase = PHASES.get(event, self.phase)

    def fail(self, detail: str, kind: FailureKind | None) -> TransportError:
        return TransportError(f"{self.what}: {detail}", kind=kind, detail=detail)

    def status_error(self, detail: str, status: int) -> HTTPStatusError:
        return HTTPStatusError(f"{self.what}: {detail}", status, detail=detail)

    async def run(self) -> Answer:
        retries = 0
        redirects = 0
        while True:
            started = time.monotonic()
            response = await self.client.send(self.request, auth=self.auth, stream=True)
            try:
                status = response.status_code
                # The request line only (query values masked): never a header or a body.
                log.debug("http answer", extra={"fields": {
                    "request": self.what, "status": status,
                    "seconds": round(time.monotonic() - started, 3)}})
                if status in REDIRECT_STATUSES and self.limits.redirects:
                    self.request = self._redirect(response, redirects)
                    self.auth = None
                    redirects += 1
                    continue
                if status in RETRY_STATUSES:
                    wait = self._retry_wait(response, retries)
                    retries += 1
                elif not 200 <= status < 300:
                    raise self.status_error(
                        f"HTTP {status} {response.reason_phrase}".strip(), status)
                else:
                    return Answer(status, response.headers, await self._body(response),
                                  self.url)
            finally:
                await response.aclose()
            self.phase = f"waiting {wait:g}s as Retry-After asked"
            await asyncio.sleep(wait)

    def _redirect(self, response: httpx.Response, done: int) -> httpx.Request:
        if done >= self.limits.redirects:
            raise self.fail(f"more than {self.limits.redirects} redirects",
                            FailureKind.PROTOCOL)
        following = response.next_request
        if following is None:
            raise self.fail(f"HTTP {response.status_code} without a usable Location",
                            FailureKind.PROTOCOL)
        if following.url.scheme != "https":
            raise self.fail("redirected to a URL that is not https; refused",
                            FailureKind.PROTOCOL)
        self.url = str(following.url)
        self.what = f"{following.method} {redact_url(self.url)}"
        return following

    def _retry_wait(self, response: httpx.Response, retries: int) -> float:
        status = response.status_code
        name = RETRY_STATUSES[status]
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        left = self.limits.deadline.remaining()
        if wait is None:
            detail = f"HTTP {status} ({name}) without Retry-After"
        elif retries >= MAX_RETRIES:
            detail = f"HTTP {status} ({name}), still after {retries} Retry-After waits"
        elif wait + RETRY_MARGIN > left:
            detail = (f"HTTP {status} ({name}); Retry-After {wait:g}s does not fit in the "
                      f"{left:.1f}s left before {self.limits.deadline_name}")
        else:
            return wait
        raise self.status_error(detail, status)

    async def _body(self, response: httpx.Response) -> bytes:
        self.phase = "reading the body"
        cap = self.limits.max_bytes
        setting = self.limits.size_setting
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise self.fail(f"compressed response ({encoding}) refused; only identity",
                            FailureKind.PROTOCOL)
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise self.fail(f"response is {declared} bytes, the limit is {cap} ({setting})",
                            FailureKind.LIMIT)
        chunks: list[bytes] = []
        size = 0
        # Closed here, not by the garbage collector (which would finish it in a task of its
        # own, after the fetch has returned).
        raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())  # it is one
        async with contextlib.aclosing(raw) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > cap:
                    raise self.fail(f"response is larger than {cap} bytes; stopped ({setting})",
                                    FailureKind.LIMIT)
                chunks.append(chunk)
        return b"".join(chunks)


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    limits: Limits,
    *,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    auth: tuple[str, str] | None = None,
) -> Answer:
    """Send one request through ``client`` within ``limits`` and return the 2xx answer with its
    whole body. Raises HTTPStatusError for other statuses and TransportError for everything
    else (the deadline: kind timeout; the size cap: kind limit)."""
    import httpx  # loaded with the client (new_client)

    what = f"{method} {redact_url(url)}"
    left = limits.deadline.check(what)
    try:
        request = client.build_request(
            method, url, headers=headers, json=json_body,
            timeout=httpx.Timeout(None, connect=min(CONNECT_TIMEOUT, left)),
        )
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise TransportError(f"{what}: invalid request ({type(exc).__name__})",
                             kind=FailureKind.INTERNAL) from None
    one = _Fetch(client, limits, request, auth)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + limits.deadline.remaining()):
            return await one.run()
    except TimeoutError:
        raise one.fail(f"response took longer than {limits.deadline_name}; stopped "
                       f"({one.phase})", FailureKind.TIMEOUT) from None
    except httpx.HTTPError as exc:
        raise one.fail(_transport_reason(exc, one.url), classify(exc)) from None
