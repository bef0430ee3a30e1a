"""One place that turns a collector's exception into a ``FailureKind``.

Collectors set ``CollectorError(kind=...)`` where they know best (a size cap, a fault the peer
sent). Everything else — a socket timeout deep inside a library, ``ConnectionRefusedError``,
``socket.gaierror``, an ``ssl`` error, an httpx or requests error, an HTTP 401 — is classified
here by walking the exception's chain (``__cause__``, ``__context__`` and the ``reason`` that
urllib3 keeps). ``raise CollectorError(...) from None`` still keeps ``__context__``, so a
collector may hide the library error from the log message and the kind is still found.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from xml.etree.ElementTree import ParseError as XMLParseError

from .base import CollectorError, FailureKind

#: HTTP statuses that mean "the credentials (or the account's rights) were refused".
AUTH_STATUSES = frozenset({401, 403, 407})
#: How deep the chain is followed: a bound, since a peer cannot make it longer but a bug could.
MAX_CHAIN = 16


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < MAX_CHAIN:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),  # urllib3 MaxRetryError, ProtocolError
        ):
            if isinstance(linked, BaseException):
                todo.append(linked)
        todo.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))


def status_kind(status: int) -> FailureKind:
    """An HTTP answer that is not 2xx: the credentials, or the protocol."""
    return FailureKind.AUTH if status in AUTH_STATUSES else FailureKind.PROTOCOL


def _direct(exc: BaseException) -> FailureKind | None:
    """The kind one exception says by its type alone (None: look further down the chain)."""
    if isinstance(exc, CollectorError) and exc.kind is not None:
        return exc.kind
    status = getattr(exc, "status", None)
    if isinstance(exc, CollectorError) and isinstance(status, int):
        return status_kind(status)
    if isinstance(exc, socket.gaierror):
        return FailureKind.DNS
    if isinstance(exc, UnicodeError) and "idna" in str(exc):
        return FailureKind.DNS  # a name the resolver cannot even encode (an empty label)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return FailureKind.TLS
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return FailureKind.TIMEOUT
    if isinstance(exc, ConnectionRefusedError | ConnectionResetError | ConnectionAbortedError):
        return FailureKind.REFUSED
    name = type(exc).__name__
    module = type(exc).__module__
    # Library types by name, so this module imports no HTTP library: httpx (httpcore),
    # requests/urllib3, pypsrp and pyspnego each have their own hierarchy.
    if name in ("AuthenticationError", "SpnegoError", "BadMechanismError", "InvalidTokenError",
                "NoCredentialError", "OperationNotAvailableError") and (
        module.startswith(("pypsrp", "spnego"))
    ):
        return FailureKind.AUTH
    if name.endswith(("TimeoutException", "Timeout", "TimeoutError")) or name in (
        "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout",
    ):
        return FailureKind.TIMEOUT
    if name in ("SSLError", "CertificateError") or "SSL" in name:
        return FailureKind.TLS
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | XMLParseError):
        return FailureKind.PARSE
    if name in ("ParseError", "APIFormatError", "DefusedXmlException", "EntitiesForbidden",
                "DTDForbidden", "ExternalReferenceForbidden"):
        return FailureKind.PARSE
    if name in ("RemoteProtocolError", "LocalProtocolError", "ProtocolError",
                "DecodingError", "TooManyRedirects", "InvalidChunkLength", "IncompleteRead"):
        return FailureKind.PROTOCOL
    return None


def _from_text(exc: BaseException) -> FailureKind | None:
    """Last resort for library errors that carry the cause only in their message."""
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or (
        "temporary failure in name resolution" in text
    ) or "getaddrinfo failed" in text:
        return FailureKind.DNS
    if "certificate verify failed" in text or "ssl:" in text:
        return FailureKind.TLS
    if "connection refused" in text or "connection reset" in text:
        return FailureKind.REFUSED
    if "timed out" in text:
        return FailureKind.TIMEOUT
    return None


def classify(exc: BaseException) -> FailureKind:
    """The kind of a collector failure: explicit first, then by type along the chain, then
    by the wording of library messages; ``internal`` when nothing matches (an exporter bug)."""
    chain = list(_chain(exc))
    for link in chain:
        kind = _direct(link)
        if kind is not None:
            return kind
    for link in chain:
        kind = _from_text(link)
        if kind is not None:
            return kind
    return FailureKind.INTERNAL
