"""The YAML configuration file, turned into typed, immutable objects.

Every problem is collected with the file name and the key path (``modules.default.winrm.auth``)
so that ``--config.check`` and a reload report all mistakes at once. Unknown keys are errors:
a typo in a key would otherwise silently fall back to a default.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml

from .citrix.catalog import MAX_DOCUMENT_BYTES, Release, parse_releases
from .citrix.licensing import DEFAULT_SERVICES, ServiceSpec, parse_service_specs
from .citrix.policy import DEFAULT_MINIMUM_BUILDS, MinimumBuild, PolicyConfig

COLLECTORS = ("probe", "winrm", "controller", "cloud")
DEFAULT_PORTS: Mapping[str, int] = {
    "license_manager": 27000,
    "vendor_daemon": 7279,
    "web_services": 8083,
}
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class ConfigError(Exception):
    """All problems found in one configuration file."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.path}: {key or '(top level)'}: {reason}" for key, reason in self.problems]


class Secret:
    """A credential read from a file or the environment. Its text never shows in repr or str,
    and every secret ever read is scrubbed from log lines and HTTP answers (``redact``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        _remember_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<hidden>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


#: Secret values seen in this process (copy-on-write, so readers never lock). A hostile or
#: broken server may echo a credential back in an error or a value; whatever the exporter then
#: writes to its log or answers over HTTP passes through ``redact`` first.
_SECRETS: tuple[str, ...] = ()
_SECRETS_LOCK = threading.Lock()
#: Shorter values are not scrubbed: they would garble every log line.
MIN_REDACTED_LENGTH = 4
REDACTED = "<hidden>"
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")


def _remember_secret(value: str) -> None:
    global _SECRETS
    if len(value) < MIN_REDACTED_LENGTH or value in _SECRETS:
        return
    with _SECRETS_LOCK:
        _SECRETS = tuple(sorted({*_SECRETS, value}, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` without any secret value, nor a Base64 run decoding to one (a Basic header)."""
    known = _SECRETS
    if not known:
        return text
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)

    def base64_run(match: re.Match[str]) -> str:
        run = match.group(0)
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return run
        return REDACTED if any(value in decoded for value in known) else run

    return _BASE64_RUN.sub(base64_run, text)


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str | None = None
    insecure_skip_verify: bool = False

    def verify(self) -> bool | str:
        """The value requests and httpx take as ``verify``."""
        if self.insecure_skip_verify:
            return False
        return self.ca_file or True


@dataclass(frozen=True)
class ProbeConfig:
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    # The default Web Services certificate is self-signed, so verification is off by default
    # here; expiry is reported either way. This is the one place TLS verification defaults off,
    # and nothing secret is sent over this connection.
    tls: TLSConfig = field(default_factory=lambda: TLSConfig(insecure_skip_verify=True))
    tls_port: str = "web_services"


@dataclass(frozen=True)
class KerberosConfig:
    """``winrm.kerberos`` (auth kerberos): where the client's ticket comes from, and the SPN.

    The source is the module's password (the exporter runs kinit into a private credential
    cache), else ``keytab``, else an existing credential cache (``ccache``, or KRB5CCNAME).
    """

    #: The realm of ``username`` when it has no ``@REALM`` part.
    realm: str | None = None
    #: The service principal, ``SERVICE/host`` (default ``HTTP/<host of the WinRM URL>``).
    spn: str | None = None
    keytab: str | None = None
    ccache: str | None = None


@dataclass(frozen=True)
class WinRMConfig:
    username: str
    password: Secret | None
    scheme: Literal["https", "http"] = "https"
    port: int | None = None
    path: str = "/wsman"
    auth: Literal["ntlm", "basic", "kerberos"] = "ntlm"
    allow_unencrypted: bool = False
    tls: TLSConfig = field(default_factory=TLSConfig)
    cache_interval: float = 900.0
    log_tail_bytes: int = 256 * 1024
    max_response_bytes: int = 8 * 1024 * 1024
    #: WMI instances read per class at most (a License Server has a few dozen pools).
    max_instances: int = 10_000
    kerberos: KerberosConfig | None = None
    #: The Windows services watched (citrix/licensing.py DEFAULT_SERVICES: the four of 11.17.2).
    services: tuple[ServiceSpec, ...] = DEFAULT_SERVICES
    #: Whether WMI Count includes the overdraft allowance (docs/assumptions.md, Overdraft).
    count_includes_overdraft: bool = True

    @property
    def effective_port(self) -> int:
        return self.port or (5986 if self.scheme == "https" else 5985)


@dataclass(frozen=True)
class ControllerConfig:
    """The Delivery Controller REST API (``https://<controller>/cvad/manage``), read-only."""

    username: str
    password: Secret | None
    tls: TLSConfig = field(default_factory=TLSConfig)
    base_path: str = "/cvad/manage"
    #: Where the License Server status (LicenseInformation.LicenseServerStatus) is read, per
    #: site; empty: not read (see docs/controller-and-cloud.md).
    license_overview_path: str = "/Licensing/LicenseOverview"
    cache_interval: float = 60.0
    max_response_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class CloudConfig:
    """Citrix Cloud's licensing API (experimental): one License Server list per customer."""

    customer_id: str
    client_id: Secret | None
    client_secret: Secret | None
    trust_url: str = "https://trust.citrixworkspacesapi.net"
    licensing_url: str = "https://licensing.citrixworkspacesapi.net"
    tls: TLSConfig = field(default_factory=TLSConfig)
    cache_interval: float = 900.0
    max_response_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModuleConfig:
    name: str
    timeout: float = 10.0
    collectors: tuple[str, ...] = ("probe",)
    primary: str = "probe"
    allow_unlisted_targets: bool = False
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    winrm: WinRMConfig | None = None
    controller: ControllerConfig | None = None
    cloud: CloudConfig | None = None

    def cache_interval(self, collector: str) -> float:
        if collector == "winrm" and self.winrm is not None:
            return self.winrm.cache_interval
        if collector == "controller" and self.controller is not None:
            return self.controller.cache_interval
        if collector == "cloud" and self.cloud is not None:
            return self.cloud.cache_interval
        return 0.0


@dataclass(frozen=True)
class TargetConfig:
    name: str
    address: str
    module: str
    telemetry: Literal["automatic", "manual"] = "automatic"
    ports: Mapping[str, int] = field(default_factory=dict)
    winrm_url: str | None = None
    #: Delivery Controllers (https://host[:port]) of the site(s) that use this License Server.
    controllers: tuple[str, ...] = ()
    #: The site (name or Id) to watch; None: every site the controllers report.
    site: str | None = None
    #: The name Citrix Cloud lists this License Server under; None: the address.
    cloud_fqdn: str | None = None

    def port(self, module: ModuleConfig, name: str) -> int:
        return self.ports.get(name, module.probe.ports[name])


#: Defaults of the ``catalog:`` section (docs/catalog.md "Following the published catalog").
CATALOG_REFRESH_INTERVAL = 24 * 3600.0
CATALOG_TIMEOUT = 30.0
CATALOG_MAX_BYTES = MAX_DOCUMENT_BYTES
CATALOG_MAX_BYTES_LIMIT = 100 * 1024 * 1024
CATALOG_MIN_REFRESH_INTERVAL = 1.0


def redact_url(url: str) -> str:
    """``url`` without anything secret, for labels and logs: user info becomes ``***`` and
    every query value ``***`` (a token may sit in either); the fragment is dropped."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    query = "&".join(
        f"{key}=***" if sep else key
        for key, sep, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class CatalogSource:
    """A release catalog the exporter follows: an HTTPS ``url`` or a local ``file`` (catalog
    documents), or Citrix's RSS feed of licensing downloads (``citrix_feed``: ``url`` holds
    its URL, fetched by the same rules)."""

    url: str | None = None
    file: str | None = None  # resolved against the configuration file's folder
    ca_file: str | None = None  # CA bundle for ``url`` (TLS verification stays on)
    format: Literal["catalog", "citrix_feed"] = "catalog"

    @property
    def label(self) -> str:
        """Stable, non-secret name: the ``source`` label and ``Release.origin``."""
        if self.url is not None:
            return redact_url(self.url)
        return str(self.file)


@dataclass(frozen=True)
class CatalogConfig:
    """The ``catalog:`` section. Precedence: ``releases``, then ``sources`` in order, then the
    bundled catalog (per build, the first that has it wins)."""

    releases: tuple[Release, ...] = ()
    sources: tuple[CatalogSource, ...] = ()
    refresh_interval: float = CATALOG_REFRESH_INTERVAL
    max_bytes: int = CATALOG_MAX_BYTES
    timeout: float = CATALOG_TIMEOUT


@dataclass(frozen=True)
class Config:
    path: str
    modules: Mapping[str, ModuleConfig]
    targets: tuple[TargetConfig, ...]
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)

    @property
    def catalog_releases(self) -> tuple[Release, ...]:
        """The user's own release entries (``catalog.releases``)."""
        return self.catalog.releases

    def find_target(self, name_or_address: str) -> TargetConfig | None:
        for target in self.targets:
            if target.name == name_or_address:
                return target
        for target in self.targets:
            if target.address == name_or_address:
                return target
        return None


# ---------------------------------------------------------------------------------------------
# Reading: a small toolkit that records problems instead of raising, so all of them are reported.


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
T = TypeVar("T")
_MISSING: Any = object()


def parse_duration(value: object) -> float:
    """Prometheus-style durations (``1h30m``, ``15m``, ``500ms``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 15m or 24h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError("expected a duration such as 10s, 15m or 24h")
    match = _DURATION.match(value.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration such as 10s, 15m or 24h")
    d, h, m, s, ms = (int(g) if g else 0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s + ms / 1000


class Reader:
    """Reads typed values out of YAML mappings, recording (key path, reason) problems."""

    def __init__(self, base_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.problems: list[tuple[str, str]] = []
        self.base_dir = base_dir
        self.environ = os.environ if environ is None else environ

    def problem(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def problems_for(self, path: str) -> bool:
        return any(key == path or key.startswith(path + ".") for key, _ in self.problems)

    def mapping(self, raw: object, path: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping, got {_kind(raw)}")
            return {}
        for key in raw:
            if not isinstance(key, str):
                self.problem(path, f"keys must be strings, got {key!r}")
            elif allowed is not None and key not in allowed:
                known = ", ".join(sorted(allowed))
                self.problem(_join(path, key), f"unknown key (allowed: {known})")
        return raw

    def value(
        self,
        raw: Mapping[str, Any],
        path: str,
        key: str,
        convert: Callable[[object], T],
        default: T = _MISSING,
    ) -> T:
        where = _join(path, key)
        if key not in raw or raw[key] is None:
            if default is _MISSING:
                self.problem(where, "required")
                return None  # type: ignore[return-value]
            return default
        try:
            return convert(raw[key])
        except (TypeError, ValueError) as exc:
            self.problem(where, str(exc))
            return default if default is not _MISSING else None  # type: ignore[return-value]

    def secret(self, raw: Mapping[str, Any], path: str, key: str) -> Secret | None:
        """``<key>_file`` (a file path) or ``<key>_env`` (a variable name); never inline."""
        if key in raw:
            self.problem(
                _join(path, key),
                f"inline secrets are not accepted; use {key}_file or {key}_env",
            )
        file_key, env_key = f"{key}_file", f"{key}_env"
        if file_key in raw and env_key in raw:
            self.problem(path, f"set only one of {file_key} and {env_key}")
            return None
        if raw.get(file_key) is not None:
            file_path = self.base_dir / str(raw[file_key])
            try:
                text = file_path.read_text(encoding="utf-8")
            except OSError as exc:
                self.problem(_join(path, file_key), f"cannot read {file_path}: {exc.strerror}")
                return None
            text = text.rstrip("\r\n")
            if not text:
                self.problem(_join(path, file_key), f"{file_path} is empty")
                return None
            return Secret(text)
        if raw.get(env_key) is not None:
            name = str(raw[env_key])
            if name not in self.environ or not self.environ[name]:
                self.problem(_join(path, env_key), f"environment variable {name} is not set")
                return None
            return Secret(self.environ[name])
        return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    kinds: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return kinds.get(type(value), type(value).__name__)


def _str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_kind(value)}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"expected a port number 1-65535, got {value!r}")
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _non_negative_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return value


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def _choice(*choices: str) -> Callable[[object], Any]:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert


def _date(value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Sections


def _tls(r: Reader, raw: object, path: str, default: TLSConfig) -> TLSConfig:
    if raw is None:
        return default
    m = r.mapping(raw, path, {"ca_file", "insecure_skip_verify"})
    ca_file = r.value(m, path, "ca_file", _str, None)
    if ca_file is not None:
        ca_path = r.base_dir / ca_file
        if not ca_path.is_file():
            r.problem(_join(path, "ca_file"), f"{ca_path} does not exist")
        ca_file = str(ca_path)
    return TLSConfig(
        ca_file=ca_file,
        insecure_skip_verify=r.value(
            m, path, "insecure_skip_verify", _bool, default.insecure_skip_verify
        ),
    )


def _ports(r: Reader, raw: object, path: str) -> dict[str, int]:
    m = r.mapping(raw, path, set(DEFAULT_PORTS))
    return {key: r.value(m, path, key, _port) for key in m if key in DEFAULT_PORTS}


def _probe(r: Reader, raw: object, path: str) -> ProbeConfig:
    m = r.mapping(raw, path, {"ports", "tls", "tls_port"})
    ports = dict(DEFAULT_PORTS)
    ports.update(_ports(r, m.get("ports"), _join(path, "ports")))
    return ProbeConfig(
        ports=ports,
        tls=_tls(r, m.get("tls"), _join(path, "tls"), ProbeConfig().tls),
        tls_port=r.value(m, path, "tls_port", _choice(*DEFAULT_PORTS), "web_services"),
    )


def _winrm(r: Reader, raw: object, path: str) -> WinRMConfig:
    m = r.mapping(
        raw,
        path,
        {
            "scheme", "port", "path", "auth", "username", "password", "password_file",
            "password_env", "allow_unencrypted", "tls", "cache_interval", "log_tail_bytes",
            "max_response_bytes", "max_instances", "kerberos", "services",
            "count_includes_overdraft",
        },
    )
    scheme: Literal["https", "http"] = r.value(m, path, "scheme", _choice("https", "http"), "https")
    auth: Literal["ntlm", "basic", "kerberos"] = r.value(
        m, path, "auth", _choice("ntlm", "basic", "kerberos"), "ntlm"
    )
    allow_unencrypted = r.value(m, path, "allow_unencrypted", _bool, False)
    password = r.secret(m, path, "password")
    if auth in ("ntlm", "basic") and password is None and not r.problems_for(path):
        r.problem(path, f"auth {auth} needs password_file or password_env")
    if auth in ("ntlm", "basic") and not m.get("username"):
        r.problem(_join(path, "username"), f"required for auth {auth}")
    if auth != "kerberos" and "kerberos" in m:
        r.problem(_join(path, "kerberos"), "only for auth kerberos")
    if auth == "basic" and scheme == "http" and not allow_unencrypted:
        r.problem(
            _join(path, "auth"),
            "basic authentication over http sends the password in clear text; "
            "use scheme https, auth ntlm, or set allow_unencrypted: true",
        )
    return WinRMConfig(
        username=r.value(m, path, "username", _str, ""),
        password=password,
        scheme=scheme,
        port=r.value(m, path, "port", _port, None),
        path=r.value(m, path, "path", _str, "/wsman"),
        auth=auth,
        allow_unencrypted=allow_unencrypted,
        tls=_tls(r, m.get("tls"), _join(path, "tls"), TLSConfig()),
        cache_interval=r.value(m, path, "cache_interval", parse_duration, 900.0),
        log_tail_bytes=r.value(m, path, "log_tail_bytes", _positive_int, 256 * 1024),
        max_response_bytes=r.value(m, path, "max_response_bytes", _positive_int, 8 * 1024 * 1024),
        max_instances=r.value(m, path, "max_instances", _max_instances, 10_000),
        kerberos=_kerberos(r, m, path, auth, password) if auth == "kerberos" else None,
        services=r.value(m, path, "services", parse_service_specs, DEFAULT_SERVICES),
        count_includes_overdraft=r.value(m, path, "count_includes_overdraft", _bool, True),
    )


def _max_instances(value: object) -> int:
    number = _positive_int(value)
    if number > 1_000_000:
        raise ValueError(f"expected at most 1000000, got {number}")
    return number


_SPN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}/[A-Za-z0-9.-]{1,253}$")
_REALM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$")


def _kerberos(
    r: Reader, m: Mapping[str, Any], path: str, auth: str, password: Secret | None
) -> KerberosConfig:
    where = _join(path, "kerberos")
    k = r.mapping(m.get("kerberos"), where, {"realm", "spn", "keytab", "ccache"})
    realm = r.value(k, where, "realm", _str, None)
    if realm is not None and not _REALM.match(realm):
        r.problem(_join(where, "realm"), "expected a realm name such as CORP.EXAMPLE.COM")
    spn = r.value(k, where, "spn", _str, None)
    if spn is not None and not _SPN.match(spn):
        r.problem(_join(where, "spn"), "expected SERVICE/host, e.g. HTTP/ls01.corp.example.com")
    keytab = r.value(k, where, "keytab", _str, None)
    if keytab is not None:
        keytab_path = r.base_dir / keytab.removeprefix("FILE:")
        if not keytab_path.is_file():
            r.problem(_join(where, "keytab"), f"{keytab_path} does not exist")
        keytab = str(keytab_path)
    ccache = r.value(k, where, "ccache", _str, None)
    sources = [name for name, set_ in (("password_file/password_env", password is not None),
                                       ("kerberos.keytab", keytab is not None),
                                       ("kerberos.ccache", ccache is not None)) if set_]
    if len(sources) > 1:
        r.problem(path, f"auth kerberos takes one credential source, got {' and '.join(sources)}")
    username = m.get("username")
    if (password is not None or keytab is not None) and not username:
        r.problem(_join(path, "username"), "required for auth kerberos with a password or keytab "
                                           "(the client principal, user or user@REALM)")
    return KerberosConfig(realm=realm, spn=spn, keytab=keytab, ccache=ccache)


_HTTPS_URL = re.compile(r"^https://[^/\s?#@]+/?$")
_HTTPS_BASE_URL = re.compile(r"^https://[^/\s?#@]+(/[^\s?#]*)?$")


def _https_host_url(value: object) -> str:
    """``https://host[:port]``: where credentials go, so plain http is refused."""
    text = _str(value).strip()
    if not _HTTPS_URL.match(text):
        raise ValueError(f"expected https://host[:port] (no path), got {text!r}")
    return text.rstrip("/")


def _https_base_url(value: object) -> str:
    text = _str(value).strip()
    if not _HTTPS_BASE_URL.match(text):
        raise ValueError(f"expected an https:// URL, got {text!r}")
    return text.rstrip("/")


def _url_path(value: object) -> str:
    if value == "":
        return ""
    text = _str(value).strip()
    if not text.startswith("/") or any(c.isspace() or c in "?#" for c in text):
        raise ValueError(f"expected a path starting with '/', got {text!r}")
    return text.rstrip("/")


def _controller(r: Reader, raw: object, path: str) -> ControllerConfig:
    m = r.mapping(
        raw,
        path,
        {
            "username", "password", "password_file", "password_env", "tls", "base_path",
            "license_overview_path", "cache_interval", "max_response_bytes",
        },
    )
    password = r.secret(m, path, "password")
    if password is None and not r.problems_for(path):
        r.problem(path, "the controller API needs password_file or password_env")
    return ControllerConfig(
        username=r.value(m, path, "username", _str),
        password=password,
        tls=_tls(r, m.get("tls"), _join(path, "tls"), TLSConfig()),
        base_path=r.value(m, path, "base_path", _url_path, "/cvad/manage"),
        license_overview_path=r.value(
            m, path, "license_overview_path", _url_path, "/Licensing/LicenseOverview"
        ),
        cache_interval=r.value(m, path, "cache_interval", parse_duration, 60.0),
        max_response_bytes=r.value(m, path, "max_response_bytes", _positive_int, 4 * 1024 * 1024),
    )


def _cloud(r: Reader, raw: object, path: str) -> CloudConfig:
    m = r.mapping(
        raw,
        path,
        {
            "customer_id", "client_id", "client_id_file", "client_id_env", "client_secret",
            "client_secret_file", "client_secret_env", "trust_url", "licensing_url", "tls",
            "cache_interval", "max_response_bytes",
        },
    )
    before = len(r.problems)
    client_id = r.secret(m, path, "client_id")
    client_secret = r.secret(m, path, "client_secret")
    reported = " ".join(key for key, _ in r.problems[before:])
    for key, value in (("client_id", client_id), ("client_secret", client_secret)):
        if value is None and _join(path, key) not in reported:
            r.problem(path, f"Citrix Cloud API access needs {key}_file or {key}_env")
    customer_id: str = r.value(m, path, "customer_id", _str)
    if customer_id is not None and not re.match(r"^[A-Za-z0-9_.-]{1,128}$", customer_id):
        r.problem(_join(path, "customer_id"), "expected the Citrix Cloud customer ID (letters, "
                  "digits, '.', '_', '-')")
    return CloudConfig(
        customer_id=customer_id,
        client_id=client_id,
        client_secret=client_secret,
        trust_url=r.value(
            m, path, "trust_url", _https_base_url, "https://trust.citrixworkspacesapi.net"
        ),
        licensing_url=r.value(
            m, path, "licensing_url", _https_base_url, "https://licensing.citrixworkspacesapi.net"
        ),
        tls=_tls(r, m.get("tls"), _join(path, "tls"), TLSConfig()),
        cache_interval=r.value(m, path, "cache_interval", _positive_duration, 900.0),
        max_response_bytes=r.value(m, path, "max_response_bytes", _positive_int, 8 * 1024 * 1024),
    )



def _module(r: Reader, name: str, raw: object, path: str) -> ModuleConfig:
    allowed = {"timeout", "collectors", "primary", "allow_unlisted_targets", "probe", "winrm",
               "controller", "cloud"}
    m = r.mapping(raw, path, allowed)
    collectors: tuple[str, ...] = ("probe",)
    if "collectors" in m:
        raw_list = m["collectors"]
        if not isinstance(raw_list, list) or not raw_list:
            r.problem(_join(path, "collectors"), "expected a non-empty list of collector names")
        else:
            for i, item in enumerate(raw_list):
                if item not in COLLECTORS:
                    r.problem(
                        _join(_join(path, "collectors"), i),
                        f"unknown collector {item!r} (known: {', '.join(COLLECTORS)})",
                    )
            if len(set(raw_list)) != len(raw_list):
                r.problem(_join(path, "collectors"), "lists a collector twice")
            collectors = tuple(str(c) for c in raw_list if c in COLLECTORS) or ("probe",)
    primary = r.value(m, path, "primary", _str, collectors[0])
    if primary not in collectors:
        r.problem(_join(path, "primary"), f"{primary!r} is not in this module's collectors")
    winrm = _winrm(r, m["winrm"], _join(path, "winrm")) if "winrm" in m else None
    if "winrm" in collectors and winrm is None:
        r.problem(path, "collector winrm is enabled but the module has no winrm section")
    controller = (
        _controller(r, m["controller"], _join(path, "controller")) if "controller" in m else None
    )
    if "controller" in collectors and controller is None:
        r.problem(path, "collector controller is enabled but the module has no controller section")
    cloud = _cloud(r, m["cloud"], _join(path, "cloud")) if "cloud" in m else None
    if "cloud" in collectors and cloud is None:
        r.problem(path, "collector cloud is enabled but the module has no cloud section")
    return ModuleConfig(
        name=name,
        timeout=r.value(m, path, "timeout", _positive_duration, 10.0),
        collectors=collectors,
        primary=primary,
        allow_unlisted_targets=r.value(m, path, "allow_unlisted_targets", _bool, False),
        probe=_probe(r, m.get("probe"), _join(path, "probe")),
        winrm=winrm,
        controller=controller,
        cloud=cloud,
    )


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _target(
    r: Reader, raw: object, path: str, modules: Mapping[str, ModuleConfig]
) -> TargetConfig | None:
    allowed = {"name", "address", "module", "telemetry", "ports", "winrm_url", "controllers",
               "site", "cloud_fqdn"}
    m = r.mapping(raw, path, allowed)
    if not m:
        if raw is not None and not isinstance(raw, dict):
            return None
        r.problem(path, "a target needs at least name and address")
        return None
    # None when the value was missing or invalid (already recorded as a problem).
    name: str | None = r.value(m, path, "name", _str)
    if name is not None and not _NAME.match(name):
        r.problem(_join(path, "name"), "use letters, digits, '.', '_', ':' or '-' (max 128)")
    address: str | None = r.value(m, path, "address", _str)
    module = r.value(m, path, "module", _str, "default")
    if module not in modules:
        r.problem(_join(path, "module"), f"no module named {module!r}")
    winrm_url = r.value(m, path, "winrm_url", _str, None)
    if winrm_url is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", winrm_url):
        r.problem(_join(path, "winrm_url"), "expected http(s)://host:port/wsman")
    controllers: list[str] = []
    if m.get("controllers") is not None:
        raw_controllers = m["controllers"]
        cpath = _join(path, "controllers")
        if not isinstance(raw_controllers, list) or not raw_controllers:
            r.problem(cpath, "expected a non-empty list of https://host[:port] URLs")
        else:
            for i, item in enumerate(raw_controllers):
                try:
                    controllers.append(_https_host_url(item))
                except ValueError as exc:
                    r.problem(_join(cpath, i), str(exc))
    site = r.value(m, path, "site", _str, None)
    cloud_fqdn = r.value(m, path, "cloud_fqdn", _str, None)
    target_module = modules.get(module)
    if (
        target_module is not None
        and "controller" in target_module.collectors
        and not controllers
        and not r.problems_for(_join(path, "controllers"))
    ):
        r.problem(path, f"module {module!r} runs the controller collector: list the site's "
                  "Delivery Controllers under controllers")
    if name is None or address is None:
        return None
    return TargetConfig(
        name=name,
        address=address,
        module=module,
        telemetry=r.value(m, path, "telemetry", _choice("automatic", "manual"), "automatic"),
        ports=_ports(r, m.get("ports"), _join(path, "ports")),
        winrm_url=winrm_url,
        controllers=tuple(controllers),
        site=site,
        cloud_fqdn=cloud_fqdn.strip().rstrip(".").lower() if cloud_fqdn else None,
    )


def _policy(r: Reader, raw: object, path: str) -> PolicyConfig:
    m = r.mapping(
        raw, path, {"six_month_rule", "months", "minimum_builds", "six_month_rule_from_build"}
    )
    minimum: tuple[MinimumBuild, ...] = DEFAULT_MINIMUM_BUILDS
    if "minimum_builds" in m:
        items = m["minimum_builds"]
        if not isinstance(items, list):
            r.problem(_join(path, "minimum_builds"), "expected a list")
        else:
            built = []
            for i, item in enumerate(items):
                ipath = _join(_join(path, "minimum_builds"), i)
                im = r.mapping(item, ipath, {"name", "build", "deadline", "telemetry"})
                build = r.value(im, ipath, "build", _positive_int)
                deadline = r.value(im, ipath, "deadline", _date)
                rule = r.value(im, ipath, "name", _str, f"minimum_build_{build}")
                # telemetry: manual limits the rule to targets that report by hand.
                only = r.value(im, ipath, "telemetry", _choice("manual"), None)
                if build is not None and deadline is not None:
                    built.append(
                        MinimumBuild(name=rule, build=build, deadline=deadline, telemetry=only)
                    )
            minimum = tuple(built)
    return PolicyConfig(
        six_month_rule=r.value(m, path, "six_month_rule", _bool, True),
        months=r.value(m, path, "months", _positive_int, 6),
        minimum_builds=minimum,
        six_month_rule_from_build=r.value(
            m, path, "six_month_rule_from_build", _non_negative_int,
            PolicyConfig().six_month_rule_from_build,
        ),
    )


def _catalog_source(r: Reader, raw: object, path: str) -> CatalogSource | None:
    m = r.mapping(raw, path, {"url", "file", "ca_file", "citrix_feed"})
    if not m:
        if isinstance(raw, dict) or raw is None:
            r.problem(
                path, "expected a mapping with url or citrix_feed (and optional ca_file) or file"
            )
        return None
    url = r.value(m, path, "url", _str, None)
    feed = r.value(m, path, "citrix_feed", _str, None)
    file = r.value(m, path, "file", _str, None)
    ca_file = r.value(m, path, "ca_file", _str, None)
    if sum(v is not None for v in (url, feed, file)) != 1:
        if not r.problems_for(path):
            r.problem(path, "give exactly one of url, citrix_feed or file")
        return None
    kind: Literal["catalog", "citrix_feed"] = "catalog"
    if feed is not None:
        url, kind = feed, "citrix_feed"
    if url is not None:
        try:
            parts = urlsplit(url)
            valid = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
        except ValueError:
            valid = False
        if not valid or len(url) > 2000 or any(c.isspace() for c in url):
            key = "citrix_feed" if kind == "citrix_feed" else "url"
            r.problem(_join(path, key), f"expected an https:// URL, got {redact_url(url)!r}")
            return None
        if ca_file is not None:
            ca_path = r.base_dir / ca_file
            if not ca_path.is_file():
                r.problem(_join(path, "ca_file"), f"{ca_path} does not exist")
            ca_file = str(ca_path)
        return CatalogSource(url=url, ca_file=ca_file, format=kind)
    if ca_file is not None:
        r.problem(_join(path, "ca_file"), "only a url or citrix_feed source takes a ca_file")
    return CatalogSource(file=str((r.base_dir / str(file)).resolve()))


def _max_bytes(value: object) -> int:
    size = _positive_int(value)
    if size > CATALOG_MAX_BYTES_LIMIT:
        raise ValueError(f"at most {CATALOG_MAX_BYTES_LIMIT} bytes")
    return size


def _refresh_interval(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < CATALOG_MIN_REFRESH_INTERVAL:
        raise ValueError("must be at least 1s")
    return seconds


def _catalog(r: Reader, raw: object, path: str) -> CatalogConfig:
    m = r.mapping(raw, path, {"releases", "sources", "refresh_interval", "max_bytes", "timeout"})
    releases: list[Release] = []
    if "releases" in m:
        releases, problems = parse_releases(
            m["releases"], origin="config", path=_join(path, "releases")
        )
        for key, reason in problems:
            r.problem(key, reason)
    sources: list[CatalogSource] = []
    raw_sources = m.get("sources")
    if raw_sources is not None and not isinstance(raw_sources, list):
        r.problem(_join(path, "sources"), f"expected a list, got {_kind(raw_sources)}")
    elif raw_sources is not None:
        seen: dict[str, int] = {}
        for i, item in enumerate(raw_sources):
            ipath = _join(_join(path, "sources"), i)
            source = _catalog_source(r, item, ipath)
            if source is None:
                continue
            if source.label in seen:
                r.problem(
                    ipath,
                    f"source {source.label!r} is listed twice "
                    f"(also {path}.sources[{seen[source.label]}])",
                )
                continue
            seen[source.label] = i
            sources.append(source)
    return CatalogConfig(
        releases=tuple(releases),
        sources=tuple(sources),
        refresh_interval=r.value(
            m, path, "refresh_interval", _refresh_interval, CATALOG_REFRESH_INTERVAL
        ),
        max_bytes=r.value(m, path, "max_bytes", _max_bytes, CATALOG_MAX_BYTES),
        timeout=r.value(m, path, "timeout", _positive_duration, CATALOG_TIMEOUT),
    )


def parse_config(
    text: str, path: str, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Parse a whole configuration document; raise ConfigError listing every problem."""
    r = Reader(base_dir or Path(path).resolve().parent, environ)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [(where, f"invalid YAML: {problem}")]) from None
    if raw is None:
        raw = {}
    allowed = {"modules", "targets", "policy", "catalog"}
    top = r.mapping(raw, "", allowed)
    modules: dict[str, ModuleConfig] = {}
    raw_modules = r.mapping(top.get("modules"), "modules")
    if not raw_modules and not r.problems_for("modules"):
        r.problem("modules", "at least one module is required")
    for name, module_raw in raw_modules.items():
        if isinstance(name, str):
            modules[name] = _module(r, name, module_raw, _join("modules", name))
    targets: list[TargetConfig] = []
    raw_targets = top.get("targets", [])
    if raw_targets is None:
        raw_targets = []
    if not isinstance(raw_targets, list):
        r.problem("targets", f"expected a list, got {_kind(raw_targets)}")
        raw_targets = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw_targets):
        target = _target(r, item, _join("targets", i), modules)
        if target is None:
            continue
        if target.name in seen:
            r.problem(
                _join(_join("targets", i), "name"),
                f"duplicate target name {target.name!r} (also targets[{seen[target.name]}])",
            )
            continue
        seen[target.name] = i
        targets.append(target)
    config = Config(
        path=path,
        modules=modules,
        targets=tuple(targets),
        policy=_policy(r, top.get("policy"), "policy"),
        catalog=_catalog(r, top.get("catalog"), "catalog"),
    )
    if r.problems:
        raise ConfigError(path, r.problems)
    return config


def load_config(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and parse the file at ``path``; raise ConfigError on any problem."""
    file_path = Path(path)
    try:
        with file_path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, [("", f"cannot read file: {exc.strerror}")]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, [("", f"file is larger than {MAX_CONFIG_BYTES} bytes")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
        raise ConfigError(path, [("", reason)]) from None
    return parse_config(text, path, base_dir=file_path.resolve().parent, environ=environ)
