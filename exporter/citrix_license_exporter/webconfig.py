"""``--web.config.file``: TLS and basic authentication for the exporter's own endpoint, in the
Prometheus exporter-toolkit format, so the file written for node_exporter or Prometheus works
here too::

    tls_server_config:
      cert_file: server.crt          # relative paths: relative to this file's folder
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      client_allowed_sans: [prometheus.corp.example]
      min_version: TLS12             # TLS10 | TLS11 | TLS12 (default) | TLS13
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hashes only; plaintext is refused

Every path (``/``, ``/metrics``, ``/probe``, ``/-/healthy``, ``/-/ready``, ``/-/reload``) is
protected, as with exporter-toolkit.

The file (and the certificate, key and CA files it names) is checked for changes on every
connection and request with one ``stat`` each. A changed file is re-read; when the new file is
invalid the previous configuration stays in force and the reason is logged once per change.
Switching between TLS and plain HTTP needs a restart (as with exporter-toolkit, which decides
at start), so a half-written file can never turn TLS off.

Differences from exporter-toolkit, on purpose:

- ``RequestClientCert`` does not ask the client for a certificate: the exporter makes no use
  of an unverified certificate, so the effect (any client is served) is the same.
- ``RequireAnyClientCert`` is refused: Python's TLS stack cannot require a certificate without
  verifying it, and a certificate nobody verifies authenticates nobody. Use
  ``RequireAndVerifyClientCert`` with ``client_ca_file``.
- Verifying client certificates needs ``client_ca_file`` (no fallback to the system CAs, which
  would accept a certificate from any public CA).
- ``curve_preferences`` and the inline ``cert``/``key`` keys are refused (not silently ignored).

The file is validated by :mod:`.settings.web`. Once basic auth is configured, a reload can
only turn it off with a complete, valid file that says ``basic_auth_users: {}``: a file that is
half-written (``basic_auth_users:`` with nothing under it, or the key gone) keeps the old
configuration in force and logs why.

Password checks (:mod:`.webauth`) are thread-safe and hold no lock while bcrypt runs; correct
passwords are cached, so a scrape costs a bcrypt computation once, not every time.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .settings.web import (
    ALLOWED_HEADERS,
    BCRYPT_MAX_PASSWORD,
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    TLS13_SUITES,
    TLS_VERSIONS,
    TLSServerConfig,
    WebConfig,
    WebConfigError,
    is_bcrypt_hash,
    parse_web_config,
)
from .webauth import BasicAuth

if TYPE_CHECKING:
    from .web import ExporterServer

__all__ = [
    "ALLOWED_HEADERS", "BCRYPT_MAX_PASSWORD", "CIPHER_SUITES", "CLIENT_AUTH_TYPES",
    "TLS13_SUITES", "TLS_VERSIONS", "BasicAuth", "Loaded", "TLSServerConfig", "WebConfig",
    "WebConfigError", "WebConfigGuard", "build_ssl_context", "install_web_config",
    "is_bcrypt_hash", "load_web_config", "parse_web_config",
]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024
#: A client has this long, in total, to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


def build_ssl_context(tls: TLSServerConfig, path: str = "web config") -> ssl.SSLContext:
    """The server-side SSLContext for ``tls``; WebConfigError when a file is missing or bad."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    problems = []
    for name in tls.files():
        try:
            with open(name, "rb"):
                pass
        except OSError as exc:
            problems.append(f"tls_server_config: cannot read {name}: {exc.strerror}")
    if problems:
        raise WebConfigError(path, problems)
    try:
        context.load_cert_chain(tls.cert_file or "", tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        problems.append(
            f"tls_server_config: cannot load cert_file {tls.cert_file} with key_file "
            f"{tls.key_file}: {getattr(exc, 'reason', None) or exc.strerror or 'invalid'}"
        )
    legacy = [CIPHER_SUITES[s] for s in tls.cipher_suites if s in CIPHER_SUITES]
    if legacy:
        try:
            context.set_ciphers(":".join(legacy))
        except ssl.SSLError:
            problems.append("tls_server_config.cipher_suites: none is available in OpenSSL")
    if tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls.client_auth_type == "RequireAndVerifyClientCert"
            else ssl.CERT_OPTIONAL
        )
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            problems.append(
                f"tls_server_config: cannot load client_ca_file {tls.client_ca_file}: "
                f"{getattr(exc, 'reason', None) or exc.strerror or 'invalid'}"
            )
    else:
        context.verify_mode = ssl.CERT_NONE
    if problems:
        raise WebConfigError(path, problems)
    return context


# ---------------------------------------------------------------------------------------------
# Loading and watching

Fingerprint = tuple[tuple[int, int, int] | None, ...]


def _fingerprint(paths: tuple[str, ...]) -> Fingerprint:
    prints: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            prints.append(None)
        else:
            prints.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(prints)


@dataclass(frozen=True)
class Loaded:
    config: WebConfig
    context: ssl.SSLContext | None
    #: The files this state came from (the web config first), and their fingerprint then.
    files: tuple[str, ...]
    fingerprint: Fingerprint

    def __post_init__(self) -> None:
        # One per configuration: a reload starts with an empty cache.
        object.__setattr__(self, "auth", BasicAuth(self.config.users))

    auth: BasicAuth = None  # type: ignore[assignment]  # set in __post_init__


def load_web_config(path: str) -> Loaded:
    """Read, parse and (for TLS) build the context; WebConfigError on any problem."""
    files_before = (path,)
    before = _fingerprint(files_before)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(path, [f"cannot read file: {exc.strerror}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise WebConfigError(path, [f"file is larger than {MAX_FILE_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WebConfigError(path, ["not UTF-8 text"]) from None
    config = parse_web_config(text, path, Path(path).resolve().parent)
    files = (path, *config.tls.files()) if config.tls else (path,)
    # The fingerprint is taken before reading: a change while reading is seen next time.
    fingerprint = before + _fingerprint(files[1:])
    context = build_ssl_context(config.tls, path) if config.tls else None
    return Loaded(config, context, files, fingerprint)


class WebConfigGuard:
    """The web configuration in force for one server, re-read when its files change."""

    def __init__(self, path: str, loaded: Loaded) -> None:
        self.path = path
        self._loaded = loaded
        self._reload_lock = threading.Lock()
        #: The fingerprint last tried (good or bad), so a bad file is reported once per change.
        self._tried = loaded.fingerprint
        self.reloads = 0
        self.reload_failures = 0

    @property
    def loaded(self) -> Loaded:
        return self._loaded

    def current(self) -> Loaded:
        """The configuration in force, after re-reading the files if one changed."""
        loaded = self._loaded
        now = _fingerprint(loaded.files)
        if now == self._tried or not self._reload_lock.acquire(blocking=False):
            return loaded  # unchanged, or another thread is re-reading it right now
        try:
            self._tried = now
            self._reload(loaded)
        finally:
            self._reload_lock.release()
        return self._loaded

    def _reload(self, old: Loaded) -> None:
        try:
            new = load_web_config(self.path)
            if new.config.empty and not old.config.empty:
                raise WebConfigError(self.path, ["the file is empty (being rewritten?)"])
            if (new.config.tls is None) != (old.config.tls is None):
                raise WebConfigError(
                    self.path, ["switching between TLS and plain HTTP needs a restart"]
                )
            if old.config.users and not new.config.users and not new.config.users_declared:
                raise WebConfigError(self.path, [
                    "basic_auth_users has no users (half-written?); basic auth stays on: to "
                    "turn it off, write basic_auth_users: {}"
                ])
        except WebConfigError as exc:
            self.reload_failures += 1
            # If a file changed again since the fingerprint above, try again next request.
            log.error(
                "web config reload failed, keeping the previous web configuration",
                extra={"fields": {"file": self.path, "reason": "; ".join(exc.problems)}},
            )
            return
        self._tried = new.fingerprint
        self._loaded = new
        self.reloads += 1
        log.info(
            "web config reloaded",
            extra={"fields": {"file": self.path, "tls": new.config.tls is not None,
                              "basic_auth_users": len(new.config.users)}},
        )

    # -- basic authentication ------------------------------------------------------------------

    def check(self, user: str, password: bytes) -> bool:
        """True when ``password`` is ``user``'s, under the configuration in force.

        Thread-safe, never holds a lock while bcrypt runs; see :class:`.webauth.BasicAuth`
        (``lookup`` answers cached cases without bcrypt).
        """
        return self.current().auth.check(user, password)

    def lookup(self, user: str, password: bytes) -> bool | None:
        """The answer when it is known without bcrypt (cached), else None: cheap enough for an
        event loop; run ``check`` in a worker pool for the rest."""
        return self.current().auth.lookup(user, password)

    def check_password(self, users: Mapping[str, bytes], user: str, password: bytes) -> bool:
        """``check`` against ``users`` (those of the configuration in force)."""
        auth = self._loaded.auth
        if dict(users) != auth.users:
            auth = BasicAuth(users)
        return auth.check(user, password)


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(value) > 4096:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def install_web_config(server: ExporterServer, path: str) -> None:
    """Secure ``server`` with the web configuration at ``path``; ValueError when it is invalid.

    Call before serving. The server runs the TLS handshake of each connection on its event
    loop with the context in force when the client connects, under HANDSHAKE_TIMEOUT.
    """
    loaded = load_web_config(path)
    guard = WebConfigGuard(path, loaded)
    server.use_web_config(guard)
    tls = loaded.config.tls
    log.info(
        "web config loaded",
        extra={"fields": {"file": path, "tls": tls is not None,
                          "client_auth": tls.client_auth_type if tls else "none",
                          "basic_auth_users": len(loaded.config.users)}},
    )
