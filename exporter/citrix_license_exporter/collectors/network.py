"""The ``probe`` collector: TCP reachability of the licensing ports and the Web Services
certificate. Needs no credentials; runs on every scrape (it is cheap and is what tells
"License Server down" apart from everything else).

Every check runs on the event loop, none in a thread: non-blocking connects, and the standard
library's TLS handshake driven over an ``ssl.MemoryBIO`` pair (asyncio's own TLS streams cost
twice the CPU per handshake and hold a 256 KiB buffer per connection, docs/performance.md).
One connection to the Web Services port serves both its port check and the certificate read;
a second handshake, with a context that does not judge the certificate, happens only when
verification is on and fails (so the expiry is reported either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ..config import ModuleConfig, ProbeConfig, TargetConfig
from ..metrics import PREFIX, gauge, single, ts
from ..tlscontext import client_context, read_only_context
from .base import CollectorDocs, CollectorError, CollectorUnit, Deadline, FailureKind

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from ..probe import ProbeResult

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PortCheck:
    name: str  # license_manager, vendor_daemon, web_services
    port: int
    up: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class Certificate:
    not_after: datetime
    subject: str
    issuer: str
    #: None when verification is switched off for this module.
    verified: bool | None
    verify_error: str | None = None


@dataclass(frozen=True)
class NetworkData:
    ports: tuple[PortCheck, ...]
    certificate: Certificate | None
    certificate_error: str | None = None

    license_server_version: str | None = None  # the network probe cannot know the version


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CollectorError):
        return str(exc)
    message = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def literal(host: str) -> list[tuple[int, str]] | None:
    """(family, address) of ``host`` when it is an IP address (no lookup needed), else None."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))]


async def resolve(host: str) -> list[tuple[int, str]]:
    """(family, address) of ``host``; an IP address needs no lookup."""
    known = literal(host)
    if known is not None:
        return known
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise CollectorError(f"cannot resolve {host[:100]!r}: {exc.strerror or exc}",
                             kind=FailureKind.DNS) from None
    except UnicodeError:
        raise CollectorError(f"{host[:100]!r} is not a valid host name",
                             kind=FailureKind.DNS) from None
    seen: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        entry = (int(family), str(sockaddr[0]))
        if entry not in seen:
            seen.append(entry)
    if not seen:
        raise CollectorError(f"cannot resolve {host[:100]!r}", kind=FailureKind.DNS)
    return seen


#: Linux creates a socket non-blocking in the same system call (elsewhere: setblocking).
_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)


async def connect(addresses: list[tuple[int, str]], port: int) -> socket.socket:
    """A connected non-blocking socket to the first address that accepts; the caller's
    cancellation (the deadline) stops it."""
    loop = asyncio.get_running_loop()
    error: OSError | None = None
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM | _SOCK_NONBLOCK)
        try:
            if not _SOCK_NONBLOCK:
                sock.setblocking(False)
            await loop.sock_connect(sock, (address, port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if isinstance(error, ConnectionResetError):
        # A reset (not a refusal) while connecting: the server accepted the connection and
        # reset it at once. The port is reachable; nothing can be read from it.
        raise AcceptedThenReset(f"port {port}: connection reset right after it was accepted",
                                kind=FailureKind.REFUSED)
    if isinstance(error, ConnectionRefusedError):
        raise CollectorError(f"port {port}: connection refused", kind=FailureKind.REFUSED)
    reason = os.strerror(error.errno) if error is not None and error.errno else str(error)
    raise CollectorError(f"port {port}: {reason}", kind=FailureKind.REFUSED)


class AcceptedThenReset(CollectorError):
    """The TCP connection was accepted, then reset before the loop saw it complete."""


async def tls_handshake(
    sock: socket.socket, context: ssl.SSLContext, host: str, port: int
) -> bytes:
    """The server's certificate (DER) after a client handshake over ``sock``."""
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    # As with a socket: SNI for a name, none for an IP address (Python sends none for one).
    tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=host)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                await loop.sock_sendall(sock, outgoing.read())
            data = await loop.sock_recv(sock, 32768)
            if not data:
                raise CollectorError(f"port {port}: TLS handshake failed: connection closed",
                                     kind=FailureKind.TLS) from None
            incoming.write(data)
    if outgoing.pending:  # the client's Finished
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, outgoing.read())
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise CollectorError(f"port {port}: no certificate presented", kind=FailureKind.TLS)
    return der


async def check_port(
    name: str, addresses: list[tuple[int, str]], port: int, found: dict[str, PortCheck]
) -> socket.socket:
    """Connect; record the check in ``found`` (so a later stall keeps it); the socket stays
    open for the caller (which closes it)."""
    start = time.monotonic()
    try:
        sock = await connect(addresses, port)
    except AcceptedThenReset:
        found[name] = PortCheck(name, port, True, time.monotonic() - start)
        raise
    except CollectorError as exc:
        seconds = time.monotonic() - start
        log.debug("port closed", extra={"fields": {"port": port, "name": name,
                                                   "reason": str(exc),
                                                   "seconds": round(seconds, 3)}})
        found[name] = PortCheck(name, port, False, seconds, str(exc))
        raise
    seconds = time.monotonic() - start
    log.debug("port open", extra={"fields": {"port": port, "name": name,
                                             "seconds": round(seconds, 3)}})
    found[name] = PortCheck(name, port, True, seconds)
    return sock


async def _port_only(
    name: str, addresses: list[tuple[int, str]], port: int, found: dict[str, PortCheck]
) -> None:
    with contextlib.suppress(CollectorError):
        sock = await check_port(name, addresses, port, found)
        sock.close()


async def _port_and_certificate(
    name: str, host: str, addresses: list[tuple[int, str]], port: int, module: ModuleConfig,
    found: dict[str, PortCheck],
) -> Certificate:
    """The Web Services port check and, on the same connection, its certificate."""
    tls = module.probe.tls
    sock = await check_port(name, addresses, port, found)
    verified: bool | None = None
    verify_error: str | None = None
    der: bytes | None = None
    try:
        if tls.insecure_skip_verify:
            der = await _handshake_on(sock, read_only_context(), host, port)
        else:
            try:
                der = await _handshake_on(sock, client_context(tls.ca_file), host, port)
                verified = True
            except ssl.SSLCertVerificationError as exc:
                verified, verify_error = False, exc.verify_message or str(exc)
    finally:
        sock.close()
    if der is None:
        # Read the certificate without judging it, so its expiry is reported either way.
        retry = await connect(addresses, port)
        try:
            der = await _handshake_on(retry, read_only_context(), host, port)
        finally:
            retry.close()
    certificate = read_certificate(der, port, verified, verify_error)
    log.debug("certificate read", extra={"fields": {
        "port": port, "not_after": certificate.not_after.isoformat(),
        "verified": verified if verified is not None else "not checked",
        "verify_error": verify_error or ""}})
    return certificate


async def _handshake_on(
    sock: socket.socket, context: ssl.SSLContext, host: str, port: int
) -> bytes:
    try:
        return await tls_handshake(sock, context, host, port)
    except ssl.SSLCertVerificationError:
        raise
    except (ssl.SSLError, OSError) as exc:
        raise CollectorError(f"port {port}: TLS handshake failed: {_reason(exc)}",
                             kind=FailureKind.TLS) from None


def read_certificate(
    der: bytes, port: int, verified: bool | None, verify_error: str | None
) -> Certificate:
    """The facts of a certificate; whatever its bytes hold, a CollectorError at worst (e.g.
    cryptography's ValueError on a month 13)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return Certificate(
            not_after=cert.not_valid_after_utc.astimezone(UTC),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            verified=verified,
            verify_error=verify_error,
        )
    except Exception as exc:
        raise CollectorError(f"port {port}: the certificate could not be read: {_reason(exc)}",
                             kind=FailureKind.PARSE) from None


# The TLS contexts are built once and shared: see tlscontext.py.


class NetworkCollector(CollectorUnit[NetworkData, ProbeConfig]):
    name = "probe"
    data_type = NetworkData
    config_model = ProbeConfig
    section_optional = True  # every module probes the default ports
    cached = False
    docs = CollectorDocs(
        summary="TCP reachability of the licensing ports and the Web Services TLS certificate, "
        "on every scrape",
        families=(
            f"{PREFIX}_port_up",
            f"{PREFIX}_web_certificate_expiry_timestamp_seconds",
            f"{PREFIX}_web_certificate_verified",
        ),
    )

    async def collect_async(
        self, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> NetworkData:
        # A partial result (ports up, the handshake stalled) must reach the probe in time.
        inner = deadline.inner()
        ports = {name: target.port(module, name) for name in module.probe.ports}
        tls_name = module.probe.tls_port
        found: dict[str, PortCheck] = {}
        # An IP address is taken as it is, without the task and timer of a bounded lookup.
        addresses = literal(target.address)
        if addresses is None:
            try:
                addresses = await asyncio.wait_for(resolve(target.address), inner.remaining())
            except TimeoutError:
                raise CollectorError(f"resolving {target.address[:100]!r} timed out",
                                     kind=FailureKind.DNS) from None
        loop = asyncio.get_running_loop()
        checks = [
            loop.create_task(_port_only(name, addresses, port, found))
            for name, port in ports.items() if name != tls_name
        ]
        cert_task = None
        if tls_name in ports:
            cert_task = loop.create_task(_port_and_certificate(
                tls_name, target.address, addresses, ports[tls_name], module, found))
        tasks: list[asyncio.Task[Any]] = [*checks]
        if cert_task is not None:
            tasks.append(cert_task)
        try:
            _, pending = await asyncio.wait(tasks, timeout=inner.remaining())
        finally:
            for task in tasks:
                task.cancel()
        if pending:
            await asyncio.wait(pending)  # let the cancelled checks close their sockets
        results = tuple(
            found.get(name) or PortCheck(name, port, False, 0.0, "probe deadline exceeded")
            for name, port in ports.items()
        )
        if not any(check.up for check in results):
            reasons = "; ".join(check.error or "" for check in results)
            timed_out = all(check.error == "probe deadline exceeded" for check in results)
            raise CollectorError(
                f"no licensing port reachable on {target.address}: {reasons}",
                kind=FailureKind.TIMEOUT if timed_out else FailureKind.REFUSED,
            )
        certificate: Certificate | None = None
        certificate_error: str | None = None
        if cert_task is None:
            certificate_error = f"no port named {tls_name}"
        elif cert_task.cancelled():
            certificate_error = "probe deadline exceeded"
        elif (exc := cert_task.exception()) is not None:
            certificate_error = _reason(exc)
        else:
            certificate = cert_task.result()
        if certificate_error is not None:
            # Otherwise invisible: the expiry series just disappears.
            log.warning(
                "web services certificate not read",
                extra={"fields": {"target": target.name, "reason": certificate_error}},
            )
        return NetworkData(results, certificate, certificate_error)

    def collect(
        self, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> NetworkData:
        """For callers outside the event loop."""
        return asyncio.run(self.collect_async(target, module, deadline))

    def families(self, data: NetworkData, result: ProbeResult) -> Iterator[Metric]:
        port_up = gauge(
            "port_up",
            "1 if a TCP connection to the licensing port succeeded. role: license_manager "
            "(lmadmin, default 27000), vendor_daemon (CITRIX, default 7279) or web_services (Web "
            "Services for Licensing, default 8083); port: the number probed for that role.",
            ["role", "port"],
        )
        for check in data.ports:
            port_up.add_metric([check.name, str(check.port)], 1.0 if check.up else 0.0)
        yield port_up
        if data.certificate is not None:
            yield single(
                "web_certificate_expiry_timestamp_seconds",
                "When the Web Services for Licensing TLS certificate expires (notAfter).",
                ts(data.certificate.not_after),
            )
            if data.certificate.verified is not None:
                yield single(
                    "web_certificate_verified",
                    "1 if the Web Services certificate verified against the configured CA "
                    "bundle (absent when verification is switched off for the module).",
                    1.0 if data.certificate.verified else 0.0,
                )
