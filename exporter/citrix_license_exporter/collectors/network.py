"""The ``probe`` collector: TCP reachability of the licensing ports and the Web Services
certificate. Needs no credentials; runs on every scrape (it is cheap and is what tells
"License Server down" apart from everything else).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from ..config import ModuleConfig, TargetConfig
from .base import CollectorError, Deadline

log = logging.getLogger(__name__)

#: The checks end this long before the probe deadline, so that a partial result (ports up, the
#: certificate not read because the handshake stalled) reaches the probe before it stops waiting.
RESULT_MARGIN = 0.1


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


def _connect(host: str, port: int, deadline: Deadline) -> socket.socket:
    timeout = deadline.check(f"connecting to port {port}")
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise CollectorError(f"port {port}: connection timed out") from None
    except ConnectionRefusedError:
        raise CollectorError(f"port {port}: connection refused") from None
    except OSError as exc:
        raise CollectorError(f"port {port}: {exc.strerror or exc}") from None


def check_port(name: str, host: str, port: int, deadline: Deadline) -> PortCheck:
    start = time.monotonic()
    try:
        sock = _connect(host, port, deadline)
    except CollectorError as exc:
        return PortCheck(name, port, False, time.monotonic() - start, str(exc))
    sock.close()
    return PortCheck(name, port, True, time.monotonic() - start)


def _handshake(
    host: str, port: int, deadline: Deadline, context: ssl.SSLContext
) -> bytes:
    sock = _connect(host, port, deadline)
    try:
        sock.settimeout(deadline.check("the TLS handshake"))
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        raise
    except (ssl.SSLError, OSError) as exc:
        raise CollectorError(f"port {port}: TLS handshake failed: {exc}") from None
    finally:
        sock.close()
    if not der:
        raise CollectorError(f"port {port}: no certificate presented")
    return der


# TLS contexts are built once and shared (an SSLContext is safe to use from many threads):
# building one that loads a CA store costs ~50 ms of CPU with OpenSSL 3 (the system bundle is
# parsed each time), which made it most of a network probe's cost (docs/performance.md).


def _read_only_context() -> ssl.SSLContext:
    """Reads the certificate without judging it: nothing to verify, so no CA store."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_READ_ONLY_CONTEXT = _read_only_context()
_VERIFYING: dict[str | None, tuple[tuple[int, int] | None, ssl.SSLContext]] = {}
_VERIFYING_LOCK = threading.Lock()


def _verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """The verifying context for ``ca_file`` (None: the system store), built again when the
    file changes (mtime or size), so an updated CA file is used without a restart."""
    stamp: tuple[int, int] | None = None
    if ca_file is not None:
        try:
            stat = os.stat(ca_file)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None  # create_default_context below reports the problem
    with _VERIFYING_LOCK:
        cached = _VERIFYING.get(ca_file)
        if cached is not None and (ca_file is None or (stamp is not None and cached[0] == stamp)):
            return cached[1]
        context = ssl.create_default_context(cafile=ca_file)
        _VERIFYING[ca_file] = (stamp, context)
        return context


def fetch_certificate(
    host: str, port: int, module: ModuleConfig, deadline: Deadline
) -> Certificate:
    tls = module.probe.tls
    verified: bool | None = None
    verify_error: str | None = None
    der: bytes | None = None
    if not tls.insecure_skip_verify:
        try:
            der = _handshake(host, port, deadline, _verifying_context(tls.ca_file))
            verified = True
        except ssl.SSLCertVerificationError as exc:
            verified, verify_error = False, exc.verify_message or str(exc)
    if der is None:
        # Read the certificate without judging it, so its expiry is reported either way.
        der = _handshake(host, port, deadline, _READ_ONLY_CONTEXT)
    cert = x509.load_der_x509_certificate(der)
    return Certificate(
        not_after=cert.not_valid_after_utc.astimezone(UTC),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        verified=verified,
        verify_error=verify_error,
    )


def _reason(exc: Exception) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class NetworkCollector:
    name = "probe"
    cached = False

    def collect(
        self, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> NetworkData:
        deadline = Deadline(deadline.at - min(RESULT_MARGIN, deadline.remaining() / 4))
        ports = {name: target.port(module, name) for name in module.probe.ports}
        results: dict[str, PortCheck] = {}
        cert_result: list[Certificate | CollectorError] = []

        def port_worker(name: str, port: int) -> None:
            try:
                results[name] = check_port(name, target.address, port, deadline)
            except Exception as exc:  # e.g. UnicodeError: a name IDNA cannot encode
                results[name] = PortCheck(name, port, False, 0.0, _reason(exc))

        def cert_worker() -> None:
            port = ports[module.probe.tls_port]
            try:
                cert_result.append(fetch_certificate(target.address, port, module, deadline))
            except CollectorError as exc:
                cert_result.append(exc)
            except Exception as exc:  # e.g. cryptography's ValueError on a bad date
                cert_result.append(CollectorError(f"port {port}: {_reason(exc)}"))

        threads = [
            threading.Thread(target=port_worker, args=(n, p), daemon=True) for n, p in ports.items()
        ]
        threads.append(threading.Thread(target=cert_worker, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=deadline.remaining() + 0.05)
        checks = tuple(
            results.get(name) or PortCheck(name, port, False, 0.0, "probe deadline exceeded")
            for name, port in ports.items()
        )
        if not any(check.up for check in checks):
            reasons = "; ".join(check.error or "" for check in checks)
            raise CollectorError(f"no licensing port reachable on {target.address}: {reasons}")
        certificate: Certificate | None = None
        certificate_error: str | None = None
        if cert_result and isinstance(cert_result[0], Certificate):
            certificate = cert_result[0]
        else:
            certificate_error = str(cert_result[0]) if cert_result else "probe deadline exceeded"
            # Otherwise invisible: the expiry series just disappears.
            log.warning(
                "web services certificate not read",
                extra={"fields": {"target": target.name, "reason": certificate_error}},
            )
        return NetworkData(checks, certificate, certificate_error)
