"""The client TLS contexts of every outbound connection (controller, Cloud, catalog sources,
the network probe's certificate read), built in this one place and cached.

Building a context that loads a CA store costs ~50 ms of CPU with OpenSSL 3 (the bundle is
parsed each time), so one context is kept per setting and shared (an SSLContext is safe to use
from many threads and tasks). A ``ca_file`` context is built again when the file changes
(mtime or size), so an updated CA file is used without a restart.
"""

from __future__ import annotations

import os
import ssl
import threading

__all__ = ["build_count", "client_context", "read_only_context"]


def _read_only() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_READ_ONLY = _read_only()
_VERIFYING: dict[str | None, tuple[tuple[int, int] | None, ssl.SSLContext]] = {}
_LOCK = threading.Lock()
_BUILDS: dict[str | None, int] = {}


def read_only_context() -> ssl.SSLContext:
    """Reads the peer's certificate without judging it: nothing to verify, so no CA store."""
    return _READ_ONLY


def build_count(ca_file: str | None) -> int:
    """How many times the verifying context for ``ca_file`` was built (for tests and bench)."""
    with _LOCK:
        return _BUILDS.get(ca_file, 0)


def client_context(ca_file: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """The context for a connection that verifies the peer against ``ca_file`` (None: the
    system store), or the read-only one when ``verify`` is False. Raises OSError or
    ssl.SSLError when the CA file cannot be loaded."""
    if not verify:
        return _READ_ONLY
    stamp: tuple[int, int] | None = None
    if ca_file is not None:
        try:
            stat = os.stat(ca_file)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None  # create_default_context below reports the problem
    with _LOCK:
        cached = _VERIFYING.get(ca_file)
        if cached is not None and (ca_file is None or (stamp is not None and cached[0] == stamp)):
            return cached[1]
        context = ssl.create_default_context(cafile=ca_file)
        _VERIFYING[ca_file] = (stamp, context)
        _BUILDS[ca_file] = _BUILDS.get(ca_file, 0) + 1
        return context
