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

Successful bcrypt checks are cached (keyed by an HMAC of user, hash and password under a
per-process random key, never the password itself), so a scrape costs a bcrypt computation once,
not every time. Uncached checks run one at a time, so a flood of wrong passwords costs one core
at most; cached ones never wait for that lock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bcrypt
import yaml

if TYPE_CHECKING:
    from .web import ExporterServer

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024
#: A client has this long, in total, to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
#: bcrypt reads at most 72 bytes of a password (Go's and htpasswd's implementations too).
BCRYPT_MAX_PASSWORD = 72
_BCRYPT_HASH = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: Go's names of the TLS 1.0-1.2 cipher suites (as exporter-toolkit takes them) to OpenSSL's.
CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
#: TLS 1.3 suites are not configurable (in Go either): accepted and left to OpenSSL.
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
#: The response headers exporter-toolkit lets http_server_config.headers set.
ALLOWED_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)


class WebConfigError(ValueError):
    """Every problem found in one web configuration file (never quotes a password or hash)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        return (self.cert_file, self.key_file) + (
            (self.client_ca_file,) if self.client_ca_file else ()
        )


@dataclass(frozen=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    #: user -> bcrypt hash. Not a Secret: a bcrypt hash is meant to be stored, but it is still
    #: never logged or shown.
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    empty: bool = True


# ---------------------------------------------------------------------------------------------
# Parsing


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, reason: str) -> None:
        self.items.append(f"{key}: {reason}")

    def mapping(self, raw: object, key: str, allowed: set[str]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.add(key, f"expected a mapping, got {type(raw).__name__}")
            return {}
        for name in raw:
            if name not in allowed:
                self.add(f"{key}.{name}" if key else str(name), "unknown key")
        return raw

    def string(self, m: Mapping[str, Any], key: str, name: str) -> str | None:
        value = m.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.add(f"{key}.{name}", f"expected a string, got {type(value).__name__}")
            return None
        return value


def is_bcrypt_hash(value: str) -> bool:
    """True for a bcrypt hash (``$2a$``, ``$2b$``, ``$2y$``, cost 4-31)."""
    return bool(_BCRYPT_HASH.fullmatch(value.encode("utf-8", "replace")))


def _path(base_dir: Path, value: str) -> str:
    return str(base_dir / value) if not os.path.isabs(value) else value


def _tls(p: _Problems, raw: object, base_dir: Path) -> TLSServerConfig | None:
    key = "tls_server_config"
    m = p.mapping(
        raw,
        key,
        {
            "cert_file", "key_file", "client_auth_type", "client_ca_file", "client_allowed_sans",
            "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
            "curve_preferences", "cert", "key", "client_ca",
        },
    )
    for name in ("curve_preferences", "cert", "key", "client_ca"):
        if name in m:
            hint = "use cert_file, key_file and client_ca_file" if name != "curve_preferences" \
                else "OpenSSL's default curves are used"
            p.add(f"{key}.{name}", f"not supported by this exporter ({hint})")
    cert_file = p.string(m, key, "cert_file")
    key_file = p.string(m, key, "key_file")
    if cert_file is None and key_file is None:
        if any(m.get(k) for k in ("client_ca_file", "client_auth_type", "client_allowed_sans")):
            p.add(key, "client certificate settings without cert_file and key_file")
        return None  # TLS not configured, as with exporter-toolkit
    if cert_file is None:
        p.add(key, "missing cert_file")
    if key_file is None:
        p.add(key, "missing key_file")
    auth = p.string(m, key, "client_auth_type") or "NoClientCert"
    if auth == "RequireClientCert":  # exporter-toolkit's old name
        auth = "RequireAnyClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        p.add(f"{key}.client_auth_type",
              f"invalid value {auth!r} (one of {', '.join(CLIENT_AUTH_TYPES)})")
    elif auth == "RequireAnyClientCert":
        p.add(f"{key}.client_auth_type",
              "RequireAnyClientCert is not supported: a client certificate nobody verifies "
              "authenticates nobody; use RequireAndVerifyClientCert with client_ca_file")
    ca_file = p.string(m, key, "client_ca_file")
    verifying = auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if ca_file is not None and not verifying:
        p.add(f"{key}.client_ca_file",
              "client CAs configured without a client_auth_type that verifies "
              "(VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
    if verifying and ca_file is None:
        p.add(f"{key}.client_ca_file", f"client_auth_type {auth} needs client_ca_file")
    sans_raw = m.get("client_allowed_sans") or []
    sans: tuple[str, ...] = ()
    if not isinstance(sans_raw, list) or not all(isinstance(s, str) and s for s in sans_raw):
        p.add(f"{key}.client_allowed_sans", "expected a list of strings")
    else:
        sans = tuple(sans_raw)
        if sans and auth != "RequireAndVerifyClientCert":
            p.add(f"{key}.client_allowed_sans",
                  "needs client_auth_type RequireAndVerifyClientCert")
    versions: dict[str, str] = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = p.string(m, key, name) or default
        if value not in TLS_VERSIONS:
            p.add(f"{key}.{name}", f"invalid value {value!r} (one of {', '.join(TLS_VERSIONS)})")
            value = default
        versions[name] = value
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        p.add(key, "min_version is above max_version")
    suites_raw = m.get("cipher_suites") or []
    suites: tuple[str, ...] = ()
    if not isinstance(suites_raw, list) or not all(isinstance(s, str) for s in suites_raw):
        p.add(f"{key}.cipher_suites", "expected a list of cipher suite names")
    else:
        for suite in suites_raw:
            if suite not in CIPHER_SUITES and suite not in TLS13_SUITES:
                p.add(f"{key}.cipher_suites", f"unknown or unsupported cipher suite {suite!r}")
        suites = tuple(suites_raw)
    prefer = m.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        p.add(f"{key}.prefer_server_cipher_suites", "expected true or false")
        prefer = True
    return TLSServerConfig(
        cert_file=_path(base_dir, cert_file or ""),
        key_file=_path(base_dir, key_file or ""),
        client_auth_type=auth,
        client_ca_file=_path(base_dir, ca_file) if ca_file else None,
        client_allowed_sans=sans,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=suites,
        prefer_server_cipher_suites=prefer,
    )


def _http(p: _Problems, raw: object) -> dict[str, str]:
    key = "http_server_config"
    m = p.mapping(raw, key, {"http2", "headers"})
    if "http2" in m and not isinstance(m["http2"], bool):
        p.add(f"{key}.http2", "expected true or false")  # accepted; this server speaks HTTP/1.1
    headers_raw = p.mapping(m.get("headers"), f"{key}.headers", set(ALLOWED_HEADERS))
    headers = {}
    for name, value in headers_raw.items():
        if name not in ALLOWED_HEADERS:
            continue  # already reported as an unknown key
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            p.add(f"{key}.headers.{name}", "expected a single-line string")
            continue
        headers[name] = value
    return headers


def _users(p: _Problems, raw: object) -> dict[str, bytes]:
    key = "basic_auth_users"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        p.add(key, f"expected a mapping of user name to bcrypt hash, got {type(raw).__name__}")
        return {}
    users = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            p.add(key, "user names must be non-empty strings without ':'")
            continue
        if not isinstance(hashed, str) or not is_bcrypt_hash(hashed):
            # Never quote the value: it may be a plaintext password.
            p.add(f"{key}.{user}",
                  "not a bcrypt hash (plaintext passwords are refused; make one with "
                  "'htpasswd -nBC 12 \"\" | tr -d :' or Python's bcrypt.hashpw)")
            continue
        users[user] = hashed.encode("ascii")
    return users


def parse_web_config(text: str, path: str, base_dir: Path) -> WebConfig:
    """Parse a web configuration document; raise WebConfigError listing every problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # The YAML error's own text can quote the document (a password): not shown.
        raise WebConfigError(path, [f"invalid YAML{where}"]) from None
    if raw is None:
        return WebConfig()
    p = _Problems()
    top = p.mapping(raw, "", {"tls_server_config", "http_server_config", "basic_auth_users"})
    config = WebConfig(
        tls=_tls(p, top.get("tls_server_config"), base_dir),
        users=_users(p, top.get("basic_auth_users")),
        headers=_http(p, top.get("http_server_config")),
        empty=False,
    )
    if p.items:
        raise WebConfigError(path, p.items)
    return config


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
        context.load_cert_chain(tls.cert_file, tls.key_file)
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
        self._bcrypt_lock = threading.Lock()
        #: The fingerprint last tried (good or bad), so a bad file is reported once per change.
        self._tried = loaded.fingerprint
        self._cache_key = secrets.token_bytes(32)
        #: user -> (bcrypt hash, HMAC of the password that matched it).
        self._cache: dict[str, tuple[bytes, bytes]] = {}
        #: bcrypt cost -> a hash of a random password, checked for unknown users.
        self._dummy_hashes: dict[int, bytes] = {}
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
        self._cache.clear()
        self.reloads += 1
        log.info(
            "web config reloaded",
            extra={"fields": {"file": self.path, "tls": new.config.tls is not None,
                              "basic_auth_users": len(new.config.users)}},
        )

    # -- basic authentication ------------------------------------------------------------------

    def _digest(self, user: str, hashed: bytes, password: bytes) -> bytes:
        message = user.encode("utf-8") + b"\0" + hashed + b"\0" + password
        return hmac.new(self._cache_key, message, hashlib.sha256).digest()

    def check_password(self, users: Mapping[str, bytes], user: str, password: bytes) -> bool:
        """True when ``password`` matches ``user``'s bcrypt hash; constant time per case."""
        hashed = users.get(user)
        candidate = password[:BCRYPT_MAX_PASSWORD]
        if hashed is not None:
            digest = self._digest(user, hashed, candidate)
            cached = self._cache.get(user)
            if cached is not None and hmac.compare_digest(cached[0], hashed) \
                    and hmac.compare_digest(cached[1], digest):
                return True
        with self._bcrypt_lock:
            try:
                # An unknown user costs the same bcrypt computation as a known one.
                ok = bcrypt.checkpw(candidate, hashed or self._dummy_hash(users))
            except ValueError:
                ok = False
        if ok and hashed is not None:
            self._cache[user] = (hashed, digest)
            return True
        return False

    def _dummy_hash(self, users: Mapping[str, bytes]) -> bytes:
        costs = sorted(int(h[4:6]) for h in users.values()) or [10]
        cost = costs[len(costs) // 2]
        if cost not in self._dummy_hashes:
            self._dummy_hashes[cost] = bcrypt.hashpw(
                secrets.token_bytes(16), bcrypt.gensalt(rounds=cost)
            )
        return self._dummy_hashes[cost]


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
