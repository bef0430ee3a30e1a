"""The YAML configuration file, turned into typed, immutable objects (pydantic models).

Every problem is collected with the file name, the key path (``modules.default.winrm.auth``)
and the line, so that ``--config.check`` and a reload report all mistakes at once. Unknown
keys are errors: a typo in a key would otherwise silently fall back to a default. Every value
is range-checked here, so that a configuration that loads cannot fail at probe time.

Secrets are read only from ``<key>_file`` (a file, relative to this file's folder) or
``<key>_env`` (an environment variable). Neither the secret nor what was written under these
keys is ever quoted in a problem: a password typed under ``password_env`` by mistake must not
end up in a log.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .citrix.catalog import MAX_DATE, MAX_DOCUMENT_BYTES, MIN_DATE, Release, parse_releases
from .citrix.policy import DEFAULT_MINIMUM_BUILDS, MinimumBuild, PolicyConfig
from .redaction import MIN_REDACTED_LENGTH, REDACTED, Secret, redact, shorten
from .settings import yamlsource

if TYPE_CHECKING:
    from .collectors.cloud import CloudConfig
    from .collectors.controller import ControllerConfig
    from .collectors.winrm import WinRMConfig

from .settings.problems import (
    Nested,
    Problem,
    Section,
    from_validation_error,
    kind,
    refusal,
)

__all__ = [
    "DEFAULT_PORTS", "MIN_REDACTED_LENGTH", "REDACTED", "CatalogConfig", "CatalogSource",
    "Config", "ConfigError", "ModuleConfig", "ProbeConfig", "Secret", "SectionModel",
    "TLSConfig", "TargetConfig", "load_config", "parse_config", "parse_duration", "redact",
    "redact_url", "shorten",
]

DEFAULT_PORTS: Mapping[str, int] = {
    "license_manager": 27000,
    "vendor_daemon": 7279,
    "web_services": 8083,
}
MAX_CONFIG_BYTES = 4 * 1024 * 1024

# Range limits: generous, but each keeps every later computation (socket timeouts, date
# arithmetic, buffer sizes) in range, so that no configuration that loads fails at probe time.
#: A probe that takes longer than this is not a scrape any more.
MAX_TIMEOUT = 3600.0
MAX_CACHE_INTERVAL = 30 * 86400.0
MAX_RESPONSE_BYTES = 1024 * 1024 * 1024
#: Ten years: with catalog dates up to MAX_DATE the deadline stays a valid date.
MAX_POLICY_MONTHS = 120
MAX_BUILD = 999_999_999


class ConfigError(Exception):
    """All problems found in one configuration file."""

    def __init__(
        self, path: str, problems: list[tuple[str, str]] | list[Problem] | list[Any]
    ) -> None:
        self.path = path
        located = [p if isinstance(p, Problem) else Problem(p[0], p[1]) for p in problems]
        #: In the order of the file (problems without a line last), as a reader goes through it.
        self.located: list[Problem] = sorted(
            located, key=lambda p: p.line if p.line is not None else 1 << 30
        )
        #: (key path, reason) pairs, as before the line numbers were added.
        self.problems: list[tuple[str, str]] = [(p.key, p.reason) for p in self.located]
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.render(self.path) for p in self.located]


# ---------------------------------------------------------------------------------------------
# Scalar values: each validator states its rule in the words the problem list shows.


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(value: object) -> float:
    """Prometheus-style durations (``1h30m``, ``15m``, ``500ms``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 15m or 24h")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("expected a duration such as 10s, 15m or 24h")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError("expected a duration such as 10s, 15m or 24h")
    match = _DURATION.match(value.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration such as 10s, 15m or 24h"[:200])
    d, h, m, s, ms = (int(g) if g else 0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s + ms / 1000


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _duration(low: float, high: float, *, zero: bool = True) -> PlainValidator:
    def check(value: object) -> float:
        seconds = parse_duration(value)
        if not zero and seconds <= 0:
            raise ValueError("must be greater than zero")
        if seconds < low:
            raise ValueError(f"must be at least {_human(low)}")
        if seconds > high:
            raise ValueError(f"must be at most {_human(high)}")
        return seconds

    return PlainValidator(check)


def _str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {kind(value)}")
    if len(value) > 4096:
        raise ValueError("at most 4096 characters")
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_quote(value)}")
    return value


def _quote(value: object) -> str:
    """A short, safe rendering of a wrong value (strings longer than 40 are cut)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"expected a port number 1-65535, got {_quote(value)}")
    return value


def _optional_port(value: object) -> int | None:
    return None if value is None else _port(value)


def _int_in(low: int, high: int) -> PlainValidator:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            what = "a positive integer" if low == 1 else f"a whole number >= {low}"
            raise ValueError(f"expected {what}, got {_quote(value)}")
        if value < low:
            what = "a positive integer" if low == 1 else f"a whole number >= {low}"
            raise ValueError(f"expected {what}, got {_quote(value)}")
        if value > high:
            raise ValueError(f"expected at most {high}, got {value}")
        return value

    return PlainValidator(check)


def _choice(*choices: str) -> PlainValidator:
    def check(value: object) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {_quote(value)}")
        return str(value)

    return PlainValidator(check)


def _date(value: object) -> date:
    parsed: date | None = None
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValueError(f"expected a date YYYY-MM-DD, got {_quote(value)}")
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise ValueError(f"expected a date between {MIN_DATE} and {MAX_DATE}, got {parsed}")
    return parsed


Str = Annotated[str, PlainValidator(_str)]
OptionalStr = Annotated[str | None, PlainValidator(_optional_str)]
Bool = Annotated[bool, PlainValidator(_bool)]
Port = Annotated[int, PlainValidator(_port)]
Bytes = Annotated[int, _int_in(1, MAX_RESPONSE_BYTES)]
Timeout = Annotated[float, _duration(0, MAX_TIMEOUT, zero=False)]
CacheInterval = Annotated[float, _duration(0, MAX_CACHE_INTERVAL)]
PositiveCacheInterval = Annotated[float, _duration(0, MAX_CACHE_INTERVAL, zero=False)]


def _port_name(value: object) -> str:
    if value not in DEFAULT_PORTS:
        raise ValueError(f"unknown key (allowed: {', '.join(sorted(DEFAULT_PORTS))})")
    return str(value)


Ports = dict[Annotated[str, PlainValidator(_port_name)], Port]


# ---------------------------------------------------------------------------------------------
# Secrets: read in a before-validator from <key>_file / <key>_env, never inline.


class _Refused:
    """Stands in for a secret that could not be read, so the field reports it at the right key
    while the rest of the section is still validated."""

    def __init__(self, reason: str, key: str | None) -> None:
        self.reason = reason
        self.key = key


def _read_secrets(data: Any, info: ValidationInfo, names: tuple[str, ...]) -> Any:
    if not isinstance(data, dict):
        return data
    data = dict(data)
    context = info.context or {}
    base_dir = Path(context.get("base_dir") or Path.cwd())
    environ: Mapping[str, str] = context.get("environ", os.environ)
    for name in names:
        file_key, env_key = f"{name}_file", f"{name}_env"
        file_name, env_name = data.pop(file_key, None), data.pop(env_key, None)
        if name in data and not isinstance(data[name], Secret | None):
            data[name] = _Refused(
                f"inline secrets are not accepted; use {file_key} or {env_key}", name
            )
            continue
        if file_name is not None and env_name is not None:
            data[name] = _Refused(f"set only one of {file_key} and {env_key}", None)
        elif file_name is not None:
            data[name] = _secret_file(file_name, file_key, base_dir)
        elif env_name is not None:
            data[name] = _secret_env(env_name, env_key, environ)
    return data


def _secret_file(value: object, key: str, base_dir: Path) -> Secret | _Refused:
    # What was written under the key is not quoted: it may be a password put there by mistake.
    if not isinstance(value, str) or not value.strip():
        return _Refused(f"expected the name of a file, got {kind(value)}", key)
    path = base_dir / value
    try:
        with path.open("rb") as fh:
            data = fh.read(64 * 1024 + 1)
    except OSError as exc:
        return _Refused(
            f"cannot read the file named there ({exc.strerror}; a relative name is read from "
            f"{base_dir})", key,
        )
    if len(data) > 64 * 1024:
        return _Refused("the file named there is larger than 64 KiB", key)
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return _Refused("the file named there is not UTF-8 text", key)
    if not text:
        return _Refused("the file named there is empty", key)
    return Secret(text)


def _secret_env(value: object, key: str, environ: Mapping[str, str]) -> Secret | _Refused:
    if not isinstance(value, str) or not value.strip():
        return _Refused(f"expected the name of an environment variable, got {kind(value)}", key)
    if not environ.get(value):
        # Not "variable X is not set": X may be the password itself, typed here by mistake.
        return _Refused(f"the environment variable named under {key} is not set (or empty)", key)
    return Secret(environ[value])


def _secret(value: object, info: ValidationInfo) -> Secret | None:
    if isinstance(value, _Refused):
        raise refusal(value.reason, key=value.key)
    if value is None or isinstance(value, Secret):
        return value
    name = info.field_name
    raise refusal(f"inline secrets are not accepted; use {name}_file or {name}_env")


SecretValue = Annotated[Secret | None, PlainValidator(_secret)]


class _Model(Section):
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, populate_by_name=True,
        hide_input_in_errors=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """``key:`` with no value means the default, as it always has in these files."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


#: The base of a collector's module section (``modules.<module>.<collector>``): frozen, unknown
#: keys refused, ``key:`` with no value meaning the default (collectors/base.py).
SectionModel = _Model


def _resolve_file(value: str | None, info: ValidationInfo) -> str | None:
    """A file name relative to the configuration file's folder, which must exist."""
    base_dir = (info.context or {}).get("base_dir")
    if value is None or base_dir is None:
        return value
    path = Path(base_dir) / value
    if not path.is_file():
        raise refusal(f"{path} does not exist")
    return str(path)


# Building blocks of the collectors' section models (collectors/*.py, docs/collectors.md): the
# same rules, in the same words, in every section.
non_empty = _str
choice = _choice
int_in = _int_in
optional_port = _optional_port
read_secrets = _read_secrets
resolve_file = _resolve_file


# ---------------------------------------------------------------------------------------------
# Sections


class TLSConfig(_Model):
    ca_file: OptionalStr = None
    insecure_skip_verify: Bool = False

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve_file(value, info)

    def verify(self) -> bool | str:
        """The value requests and httpx take as ``verify``."""
        if self.insecure_skip_verify:
            return False
        return self.ca_file or True


class ProbeTLSConfig(TLSConfig):
    # The default Web Services certificate is self-signed, so verification is off by default
    # here; expiry is reported either way. This is the one place TLS verification defaults off,
    # and nothing secret is sent over this connection.
    insecure_skip_verify: Bool = True


class ProbeConfig(_Model):
    ports: Ports = Field(default_factory=lambda: dict(DEFAULT_PORTS))
    tls: ProbeTLSConfig = Field(default_factory=ProbeTLSConfig)
    tls_port: Annotated[str, _choice(*DEFAULT_PORTS)] = "web_services"

    @field_validator("ports")
    @classmethod
    def _defaults(cls, value: dict[str, int]) -> dict[str, int]:
        return {**DEFAULT_PORTS, **value}


_HTTPS_URL = re.compile(r"^https://[^/\s?#@]+/?$")
_HTTPS_BASE_URL = re.compile(r"^https://[^/\s?#@]+(/[^\s?#]*)?$")


def _https_host_url(value: object) -> str:
    """``https://host[:port]``: where credentials go, so plain http is refused."""
    text = _str(value).strip()
    if not _HTTPS_URL.match(text):
        raise ValueError(f"expected https://host[:port] (no path), got {redact_url(text)!r}")
    return text.rstrip("/")


def _https_base_url(value: object) -> str:
    text = _str(value).strip()
    if not _HTTPS_BASE_URL.match(text):
        raise ValueError(f"expected an https:// URL, got {redact_url(text)!r}")
    return text.rstrip("/")


def _url_path(value: object) -> str:
    if value == "":
        return ""
    text = _str(value).strip()
    if not text.startswith("/") or any(c.isspace() or c in "?#" for c in text):
        raise ValueError(f"expected a path starting with '/', got {_quote(text)}")
    return text.rstrip("/")


HttpsBaseURL = Annotated[str, PlainValidator(_https_base_url)]
URLPath = Annotated[str, PlainValidator(_url_path)]


def _collectors(value: object) -> object:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("expected a non-empty list of collector names")
    return value


def _collector(value: object) -> str:
    from .collectors import registry

    known = registry.names()
    if value not in known:
        raise ValueError(f"unknown collector {_quote(value)} (known: {', '.join(known)})")
    return str(value)


_S = TypeVar("_S", bound=Section)


class ModuleConfig(_Model):
    internal_keys: ClassVar[frozenset[str]] = frozenset({"__name__"})

    name: str = Field(default="", alias="__name__")
    timeout: Timeout = 10.0
    collectors: Annotated[
        tuple[Annotated[str, PlainValidator(_collector)], ...],
        Field(validate_default=False),
    ] = ("probe",)
    primary: str = Field(default="", validate_default=True)
    allow_unlisted_targets: Bool = False
    #: The registered collectors' sections (``probe:``, ``winrm:``...) by collector name, each
    #: validated by its collector's model (collectors/registry.py). Never set in a file.
    sections: Mapping[str, Section] = Field(
        default_factory=dict, alias="__sections__", validate_default=True, repr=False
    )

    @model_validator(mode="before")
    @classmethod
    def _gather_sections(cls, data: Any) -> Any:
        """Moves the keys named after a registered collector under ``__sections__``."""
        from .collectors import registry

        if not isinstance(data, dict):
            return data
        keys = registry.sections()
        gathered = {k: v for k, v in data.items() if k in keys and v is not None}
        rest = {k: v for k, v in data.items() if k not in keys}
        return {**rest, "__sections__": gathered}

    @classmethod
    def allowed_keys(cls) -> list[str]:
        from .collectors import registry

        names = {f.alias or n for n, f in cls.model_fields.items()} - cls.internal_keys
        return sorted(names - {"__sections__"} | set(registry.sections()))

    @field_validator("collectors", mode="before")
    @classmethod
    def _collectors_list(cls, value: object) -> object:
        return _collectors(value)

    @field_validator("collectors")
    @classmethod
    def _once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise refusal("lists a collector twice")
        return value

    @field_validator("primary", mode="plain")
    @classmethod
    def _primary(cls, value: object, info: ValidationInfo) -> str:
        collectors = info.data.get("collectors")
        if value is None or value == "":
            return collectors[0] if collectors else "probe"
        text = _str(value)
        if collectors is not None and text not in collectors:
            raise refusal(f"{_quote(text)} is not in this module's collectors")
        return text

    @field_validator("sections", mode="plain")
    @classmethod
    def _sections(cls, value: object, info: ValidationInfo) -> Mapping[str, Section]:
        from .collectors import registry

        given: Mapping[str, object] = value if isinstance(value, dict) else {}
        enabled = info.data.get("collectors") or ()
        sections: dict[str, Section] = {}
        missing: list[tuple[tuple[str | int, ...], str]] = []
        failed: list[tuple[tuple[str | int, ...], ValidationError, type[Section]]] = []
        for name, collector in registry.sections().items():
            model = collector.config_model
            assert model is not None
            raw = given.get(name)
            if isinstance(raw, model):  # built by code
                sections[name] = raw
            elif raw is not None:
                try:
                    sections[name] = model.model_validate(raw, context=info.context)
                except ValidationError as exc:
                    failed.append(((name,), exc, model))
            elif collector.section_optional:
                sections[name] = model()
            # Code may build a module without the section (tests of the exposition): file only.
            elif name in enabled and info.context is not None:
                missing.append(
                    ((), f"collector {name} is enabled but the module has no {name} section")
                )
        if missing or failed:
            raise Nested(missing, failed)
        return sections

    def section(self, collector: str) -> Section | None:
        """The module's section of ``collector`` (typed: ``CollectorUnit.settings``)."""
        return self.sections.get(collector)

    def _typed(self, collector: str, model: type[_S]) -> _S | None:
        section = self.sections.get(collector)
        return section if isinstance(section, model) else None

    # The built-in collectors' sections, typed, as the code has always read them.
    @property
    def probe(self) -> ProbeConfig:
        return self._typed("probe", ProbeConfig) or ProbeConfig()

    @property
    def winrm(self) -> WinRMConfig | None:
        from .collectors.winrm import WinRMConfig

        return self._typed("winrm", WinRMConfig)

    @property
    def controller(self) -> ControllerConfig | None:
        from .collectors.controller import ControllerConfig

        return self._typed("controller", ControllerConfig)

    @property
    def cloud(self) -> CloudConfig | None:
        from .collectors.cloud import CloudConfig

        return self._typed("cloud", CloudConfig)

    @property
    def sends_credentials(self) -> bool:
        """True when a probe with this module sends credentials to the target."""
        from .collectors import registry

        return any((c := registry.get(name)) is not None and c.credentials
                   for name in self.collectors)

    def cache_interval(self, collector: str) -> float:
        """The section's ``cache_interval`` (0: not cached, or no such section)."""
        interval = getattr(self.sections.get(collector), "cache_interval", None)
        return float(interval) if isinstance(interval, int | float) else 0.0


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def _target_name(value: object) -> str:
    text = _str(value)
    if not _NAME.match(text):
        raise ValueError("use letters, digits, '.', '_', ':' or '-' (max 128)")
    return text


def _address(value: object) -> str:
    text = _str(value).strip()
    if len(text) > 253 or any(c.isspace() or c in "/?#@" for c in text):
        raise ValueError("expected a host name or IP address")
    return text


def _winrm_url(value: object) -> str | None:
    if value is None:
        return None
    text = _str(value)
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", text):
        raise ValueError("expected http(s)://host:port/wsman")
    return text


def _controller_list(value: object) -> object:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("expected a non-empty list of https://host[:port] URLs")
    return value


class TargetConfig(_Model):
    name: Annotated[str, PlainValidator(_target_name)]
    address: Annotated[str, PlainValidator(_address)]
    module: str = Field(default="default", validate_default=True)
    telemetry: Annotated[
        Literal["automatic", "manual"], _choice("automatic", "manual")
    ] = "automatic"
    ports: Ports = Field(default_factory=dict)
    winrm_url: Annotated[str | None, PlainValidator(_winrm_url)] = None
    #: Delivery Controllers (https://host[:port]) of the site(s) that use this License Server.
    controllers: tuple[Annotated[str, PlainValidator(_https_host_url)], ...] = Field(
        default=(), validate_default=True
    )
    #: The site (name or Id) to watch; None: every site the controllers report.
    site: OptionalStr = None
    #: The name Citrix Cloud lists this License Server under; None: the address.
    cloud_fqdn: OptionalStr = None
    #: Other modules a client may name with ``module=`` for this target. A module that sends
    #: credentials is refused for a target it is not paired with (its own ``module``).
    allowed_modules: tuple[Str, ...] = ()

    @field_validator("module", mode="plain")
    @classmethod
    def _module(cls, value: object, info: ValidationInfo) -> str:
        text = _str(value)
        names = (info.context or {}).get("module_names")
        if names is not None and text not in names:
            raise refusal(f"no module named {_quote(text)}")
        return text

    @field_validator("controllers", mode="before")
    @classmethod
    def _controller_list(cls, value: object) -> object:
        if value is None or value == ():  # not given (the default is validated too)
            return ()
        return _controller_list(value)

    @field_validator("controllers")
    @classmethod
    def _controllers_needed(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        module = info.data.get("module")
        collectors = (info.context or {}).get("module_collectors", {}).get(module, ())
        if not value and "controller" in collectors:
            raise refusal(
                f"module {module!r} runs the controller collector: list the site's Delivery "
                "Controllers under controllers", key=None,
            )
        return value

    @field_validator("cloud_fqdn")
    @classmethod
    def _fqdn(cls, value: str | None) -> str | None:
        return value.strip().rstrip(".").lower() if value else None

    @field_validator("allowed_modules")
    @classmethod
    def _known_modules(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        names = (info.context or {}).get("module_names")
        for name in value:
            if names is not None and name not in names:
                raise refusal(f"no module named {_quote(name)}")
        return value

    def port(self, module: ModuleConfig, name: str) -> int:
        return self.ports.get(name, module.probe.ports[name])


# ---------------------------------------------------------------------------------------------
# Policy and catalog


class MinimumBuildSection(_Model):
    build: Annotated[int, _int_in(1, MAX_BUILD)]
    deadline: Annotated[date, PlainValidator(_date)]
    name: OptionalStr = None
    #: telemetry: manual limits the rule to targets that report by hand.
    telemetry: Annotated[Literal["manual"] | None, _choice("manual")] = None


class PolicySection(_Model):
    six_month_rule: Bool = True
    months: Annotated[int, _int_in(1, MAX_POLICY_MONTHS)] = 6
    minimum_builds: tuple[MinimumBuildSection, ...] | None = None
    six_month_rule_from_build: Annotated[int, _int_in(0, MAX_BUILD)] = (
        PolicyConfig().six_month_rule_from_build
    )

    def to_policy(self) -> PolicyConfig:
        minimum: tuple[MinimumBuild, ...] = DEFAULT_MINIMUM_BUILDS
        if self.minimum_builds is not None:
            minimum = tuple(
                MinimumBuild(name=m.name or f"minimum_build_{m.build}", build=m.build,
                             deadline=m.deadline, telemetry=m.telemetry)
                for m in self.minimum_builds
            )
        return PolicyConfig(
            six_month_rule=self.six_month_rule, months=self.months, minimum_builds=minimum,
            six_month_rule_from_build=self.six_month_rule_from_build,
        )


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


def _https_source(url: str | None, info: ValidationInfo) -> str | None:
    if url is None or info.context is None:  # built by code, not read from a file
        return url
    try:
        parts = urlsplit(url)
        valid = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if not valid or len(url) > 2000 or any(c.isspace() for c in url):
        raise refusal(f"expected an https:// URL, got {redact_url(url)!r}")
    return url


class CatalogSource(_Model):
    """A release catalog the exporter follows: an HTTPS ``url`` or a local ``file`` (catalog
    documents), or Citrix's RSS feed of licensing downloads (``citrix_feed``: ``url`` holds
    its URL, fetched by the same rules)."""

    internal_keys: ClassVar[frozenset[str]] = frozenset({"format"})

    url: OptionalStr = None
    citrix_feed: OptionalStr = None
    file: OptionalStr = None  # resolved against the configuration file's folder
    ca_file: OptionalStr = None  # CA bundle for ``url`` (TLS verification stays on)
    format: Literal["catalog", "citrix_feed"] = "catalog"

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any, info: ValidationInfo) -> Any:
        if data is None or data == {}:
            raise refusal(
                "expected a mapping with url or citrix_feed (and optional ca_file) or file"
            )
        if isinstance(data, dict) and "format" in data and info.context is not None:
            allowed = ", ".join(cls.allowed_keys())
            raise refusal(f"unknown key (allowed: {allowed})", child="format")
        return data

    @field_validator("url", "citrix_feed")
    @classmethod
    def _https(cls, url: str | None, info: ValidationInfo) -> str | None:
        return _https_source(url, info)

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> CatalogSource:
        if sum(v is not None for v in (self.url, self.citrix_feed, self.file)) != 1:
            raise refusal("give exactly one of url, citrix_feed or file")
        if self.citrix_feed is not None:  # as code builds it: the feed's URL in url
            object.__setattr__(self, "url", self.citrix_feed)
            object.__setattr__(self, "format", "citrix_feed")
            object.__setattr__(self, "citrix_feed", None)
        if self.url is None and self.ca_file is not None:
            raise refusal("only a url or citrix_feed source takes a ca_file", child="ca_file")
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is not None:
            if self.ca_file is not None:
                ca_path = Path(base_dir) / self.ca_file
                if not ca_path.is_file():
                    raise refusal(f"{ca_path} does not exist", child="ca_file")
                object.__setattr__(self, "ca_file", str(ca_path))
            if self.file is not None:
                object.__setattr__(self, "file", str((Path(base_dir) / self.file).resolve()))
        return self

    @property
    def label(self) -> str:
        """Stable, non-secret name: the ``source`` label and ``Release.origin``."""
        if self.url is not None:
            return redact_url(self.url)
        return str(self.file)


class CatalogConfig(_Model):
    """The ``catalog:`` section. Precedence: ``releases``, then ``sources`` in order, then the
    bundled catalog (per build, the first that has it wins)."""

    #: Validated by the catalog's own rules (parse_releases) before the model sees them.
    releases: tuple[Release, ...] = ()
    sources: tuple[CatalogSource, ...] = ()
    refresh_interval: Annotated[
        float, _duration(CATALOG_MIN_REFRESH_INTERVAL, MAX_CACHE_INTERVAL)
    ] = CATALOG_REFRESH_INTERVAL
    max_bytes: Annotated[int, _int_in(1, CATALOG_MAX_BYTES_LIMIT)] = CATALOG_MAX_BYTES
    timeout: Timeout = CATALOG_TIMEOUT

    @field_validator("releases", mode="plain")
    @classmethod
    def _parsed(cls, value: object) -> tuple[Release, ...]:
        if not isinstance(value, tuple) or not all(isinstance(r, Release) for r in value):
            raise refusal("expected a list of releases")
        return value



class Config(_Model):
    internal_keys: ClassVar[frozenset[str]] = frozenset({"path"})

    path: str = ""
    modules: Mapping[str, ModuleConfig]
    targets: tuple[TargetConfig, ...] = ()
    policy_section: PolicySection = Field(default_factory=PolicySection, alias="policy")
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    _policy: PolicyConfig = PrivateAttr(default_factory=PolicyConfig)
    #: find_target's index: the first target of each name, the first of each address.
    _by_name: dict[str, TargetConfig] = PrivateAttr(default_factory=dict)
    _by_address: dict[str, TargetConfig] = PrivateAttr(default_factory=dict)

    @classmethod
    def allowed_keys(cls) -> list[str]:
        return ["catalog", "modules", "policy", "targets"]

    @field_validator("modules")
    @classmethod
    def _some(cls, value: Mapping[str, ModuleConfig]) -> Mapping[str, ModuleConfig]:
        if not value:
            raise refusal("at least one module is required")
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._policy = self.policy_section.to_policy()
        for target in self.targets:
            self._by_name.setdefault(target.name, target)
            self._by_address.setdefault(target.address, target)

    @property
    def policy(self) -> PolicyConfig:
        return self._policy

    @property
    def catalog_releases(self) -> tuple[Release, ...]:
        """The user's own release entries (``catalog.releases``)."""
        return self.catalog.releases

    def find_target(self, name_or_address: str) -> TargetConfig | None:
        """The target of that name, else the first of that address (every probe asks, up to
        three times: an index, not a scan of the fleet)."""
        found = self._by_name.get(name_or_address)
        return found if found is not None else self._by_address.get(name_or_address)

    def resolve(
        self, name: str, module_name: str | None
    ) -> tuple[TargetConfig, ModuleConfig] | str:
        """The target and module a ``/probe?target=&module=`` request names, or why not.

        Credentials go only where the configuration sends them: a module that sends
        credentials is used for a configured target only when it is the target's own module
        or listed in its ``allowed_modules``, and for an unlisted target only when the module
        sets ``allow_unlisted_targets``.
        """
        if module_name is not None and module_name not in self.modules:
            return f"unknown module {module_name!r}"
        target = self.find_target(name)
        if target is None:
            if module_name is None:
                return f"target {name!r} is not configured; name a configured target or a module"
            module = self.modules[module_name]
            if not module.allow_unlisted_targets:
                return (
                    f"target {name!r} is not configured and module {module_name!r} does not set "
                    "allow_unlisted_targets (credentials are only sent to configured targets)"
                )
            try:
                address = _address(name)
            except ValueError:
                return f"target {name!r} is not a host name or address"
            # Not validated as a configured target's name: any host name or address is one.
            unlisted = TargetConfig.model_construct(name=address, address=address,
                                                    module=module_name)
            return unlisted, module
        module = self.modules[module_name or target.module]
        if (
            module.name != target.module
            and module.sends_credentials
            and module.name not in target.allowed_modules
        ):
            return (
                f"module {module.name!r} sends credentials and target {target.name!r} is "
                f"configured with module {target.module!r}; list {module.name!r} under the "
                "target's allowed_modules to allow it"
            )
        return target, module


# ---------------------------------------------------------------------------------------------
# Reading a file


def _prepass(
    raw: dict[str, Any], problems: list[Problem], doc: yamlsource.Document, base_dir: Path
) -> dict[str, Any]:
    """What pydantic cannot see per field: names of modules for the targets' checks, duplicate
    target names, and the catalog entries (validated by the catalog's own rules)."""
    raw = dict(raw)
    modules = raw.get("modules")
    if isinstance(modules, dict):
        raw["modules"] = {
            name: ({**value, "__name__": name} if isinstance(value, dict) else
                   {"__name__": name} if value is None else value)
            for name, value in modules.items()
        }
    targets = raw.get("targets")
    if targets is None and "targets" in raw:
        raw["targets"] = ()
    elif isinstance(targets, list):
        seen: dict[str, int] = {}
        for i, item in enumerate(targets):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(Problem(
                    f"targets[{i}].name", f"duplicate target name {name!r} (also "
                    f"targets[{seen[name]}])", doc.line(("targets", i, "name")),
                ))
            else:
                seen[name] = i
    catalog = raw.get("catalog")
    if isinstance(catalog, dict) and "releases" in catalog:
        releases, found = parse_releases(
            catalog["releases"], origin="config", path="catalog.releases"
        )
        problems.extend(Problem(key, reason, doc.line(_split(key))) for key, reason in found)
        raw["catalog"] = {**catalog, "releases": tuple(releases)}
    if isinstance(catalog, dict) and isinstance(catalog.get("sources"), list):
        labels: dict[str, int] = {}
        for i, item in enumerate(catalog["sources"]):
            if not isinstance(item, dict):
                continue
            url, file = item.get("url") or item.get("citrix_feed"), item.get("file")
            label = redact_url(url) if isinstance(url, str) else \
                str(Path(base_dir, file).resolve()) if isinstance(file, str) else None
            if label is None:
                continue
            if label in labels:
                problems.append(Problem(
                    f"catalog.sources[{i}]",
                    f"source {label!r} is listed twice (also catalog.sources[{labels[label]}])",
                    doc.line(("catalog", "sources", i)),
                ))
            else:
                labels[label] = i
    if catalog is None and "catalog" in raw:
        raw.pop("catalog")
    if raw.get("policy") is None:
        raw.pop("policy", None)
    return raw


def _split(key: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def parse_config(
    text: str, path: str, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Parse a whole configuration document; raise ConfigError listing every problem."""
    doc = yamlsource.load(text)
    if doc.problems:
        raise ConfigError(path, doc.problems)
    raw = {} if doc.data is None else doc.data
    if not isinstance(raw, dict):
        raise ConfigError(path, [Problem("", f"expected a mapping, got {kind(raw)}")])
    problems: list[Problem] = []
    base_dir = base_dir or Path(path).resolve().parent
    raw = _prepass(raw, problems, doc, base_dir)
    found = raw.get("modules")
    raw_modules: dict[Any, Any] = found if isinstance(found, dict) else {}
    context = {
        "base_dir": base_dir,
        "environ": os.environ if environ is None else environ,
        "module_names": set(raw_modules),
        "module_collectors": {
            name: tuple(m.get("collectors") or ("probe",))
            if isinstance(m, dict) and isinstance(m.get("collectors") or (), list | tuple)
            else ()
            for name, m in raw_modules.items()
        },
    }
    config: Config | None = None
    try:
        config = Config.model_validate({**raw, "path": path}, context=context)
    except ValidationError as exc:
        problems.extend(from_validation_error(exc, Config, doc))
    if "modules" not in raw or raw.get("modules") is None:
        problems = [p for p in problems if p.key != "modules"]
        problems.insert(0, Problem("modules", "at least one module is required"))
    if problems or config is None:
        raise ConfigError(path, problems)
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
