"""The ``--web.config.file`` format (Prometheus exporter-toolkit's), validated.

What the server does with it (TLS, basic auth, re-reading) is in :mod:`..webconfig`. Problems
never quote a value of the file: a ``basic_auth_users`` entry may hold a plaintext password,
and even PyYAML's own words about a syntax error can quote a character of it.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from . import yamlsource
from .problems import Problem, Section, Several, from_validation_error, kind, refusal

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


def is_bcrypt_hash(value: str) -> bool:
    """True for a bcrypt hash (``$2a$``, ``$2b$``, ``$2y$``, cost 4-31)."""
    return bool(_BCRYPT_HASH.fullmatch(value.encode("utf-8", "replace")))


class _Model(Section):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def _string(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {kind(value)}")
    return value


def _strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(s, str) and s for s in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _unsupported(hint: str) -> PlainValidator:
    def refuse(value: object) -> None:
        raise ValueError(f"not supported by this exporter ({hint})")

    return PlainValidator(refuse)


def _path(info: ValidationInfo, value: str | None) -> str | None:
    base_dir = (info.context or {}).get("base_dir")
    if value is None or base_dir is None or os.path.isabs(value):
        return value
    return str(Path(base_dir) / value)


OptionalString = Annotated[str | None, PlainValidator(_string)]
_FILES_HINT = "use cert_file, key_file and client_ca_file"


def _no_files(info: ValidationInfo) -> bool:
    return info.data.get("cert_file") is None and info.data.get("key_file") is None


class TLSServerConfig(_Model):
    cert_file: OptionalString = None
    key_file: OptionalString = Field(default=None, validate_default=True)
    client_auth_type: str = Field(default="NoClientCert", validate_default=True)
    client_ca_file: OptionalString = Field(default=None, validate_default=True)
    client_allowed_sans: Annotated[tuple[str, ...], PlainValidator(_strings)] = Field(
        default=(), validate_default=True
    )
    min_version: str = Field(default="TLS12", validate_default=True)
    max_version: str = Field(default="TLS13", validate_default=True)
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: Annotated[None, _unsupported("OpenSSL's default curves are used")] = None
    cert: Annotated[None, _unsupported(_FILES_HINT)] = None
    key: Annotated[None, _unsupported(_FILES_HINT)] = None
    client_ca: Annotated[None, _unsupported(_FILES_HINT)] = None

    # Cross-key rules are field validators that read the keys before them (info.data), so
    # that a bad value elsewhere in the section does not hide them.

    @field_validator("cert_file")
    @classmethod
    def _cert(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _path(info, value)

    @field_validator("key_file")
    @classmethod
    def _key(cls, value: str | None, info: ValidationInfo) -> str | None:
        cert = info.data.get("cert_file")
        if value is None and cert is not None:
            raise refusal("missing key_file", key=None)
        if value is not None and cert is None and "cert_file" in info.data:
            raise refusal("missing cert_file", key=None)
        return _path(info, value)

    @field_validator("client_auth_type", mode="plain")
    @classmethod
    def _auth(cls, value: object) -> str:
        text = _string(value) or "NoClientCert"
        if text == "RequireClientCert":  # exporter-toolkit's old name
            text = "RequireAnyClientCert"
        if text not in CLIENT_AUTH_TYPES:
            raise refusal(f"invalid value {text[:60]!r} (one of {', '.join(CLIENT_AUTH_TYPES)})")
        if text == "RequireAnyClientCert":
            raise refusal(
                "RequireAnyClientCert is not supported: a client certificate nobody verifies "
                "authenticates nobody; use RequireAndVerifyClientCert with client_ca_file"
            )
        return text

    @field_validator("client_ca_file")
    @classmethod
    def _ca(cls, value: str | None, info: ValidationInfo) -> str | None:
        auth = info.data.get("client_auth_type")
        verifying = auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
        if _no_files(info) or auth is None:
            return _path(info, value)
        if value is not None and not verifying:
            raise refusal("client CAs configured without a client_auth_type that verifies "
                          "(VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
        if verifying and value is None:
            raise refusal(f"client_auth_type {auth} needs client_ca_file")
        return _path(info, value)

    @field_validator("client_allowed_sans")
    @classmethod
    def _sans(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if _no_files(info) and "cert_file" in info.data and "key_file" in info.data:
            auth = info.data.get("client_auth_type", "NoClientCert")
            if value or info.data.get("client_ca_file") or auth != "NoClientCert":
                raise refusal("client certificate settings without cert_file and key_file",
                              key=None)
            return value
        if value and info.data.get("client_auth_type", "RequireAndVerifyClientCert") \
                != "RequireAndVerifyClientCert":
            raise refusal("needs client_auth_type RequireAndVerifyClientCert")
        return value

    @field_validator("min_version", "max_version", mode="plain")
    @classmethod
    def _version(cls, value: object, info: ValidationInfo) -> str:
        default = "TLS12" if info.field_name == "min_version" else "TLS13"
        text = _string(value) or default
        if text not in TLS_VERSIONS:
            raise refusal(f"invalid value {text[:60]!r} (one of {', '.join(TLS_VERSIONS)})")
        low = info.data.get("min_version")
        if info.field_name == "max_version" and low is not None \
                and TLS_VERSIONS[low] > TLS_VERSIONS[text]:
            raise refusal("min_version is above max_version", key=None)
        return text

    @field_validator("cipher_suites", mode="plain")
    @classmethod
    def _suites(cls, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
            raise refusal("expected a list of cipher suite names")
        for suite in value:
            if suite not in CIPHER_SUITES and suite not in TLS13_SUITES:
                raise refusal(f"unknown or unsupported cipher suite {suite[:80]!r}")
        return tuple(value)

    @field_validator("prefer_server_cipher_suites", mode="plain")
    @classmethod
    def _bool(cls, value: object) -> bool:
        if value is None:
            return True
        if not isinstance(value, bool):
            raise refusal("expected true or false")
        return value

    @property
    def configured(self) -> bool:
        return self.cert_file is not None or self.key_file is not None

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


def _headers(value: object) -> dict[str, str]:
    return {} if value is None else value  # type: ignore[return-value]


class Headers(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    strict_transport_security: str | None = Field(None, alias="Strict-Transport-Security")
    x_content_type_options: str | None = Field(None, alias="X-Content-Type-Options")
    x_frame_options: str | None = Field(None, alias="X-Frame-Options")
    x_xss_protection: str | None = Field(None, alias="X-XSS-Protection")
    content_security_policy: str | None = Field(None, alias="Content-Security-Policy")

    @field_validator("*", mode="plain")
    @classmethod
    def _line(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise refusal("expected a single-line string")
        return value

    def as_dict(self) -> dict[str, str]:
        return {name: value for name, value in self.model_dump(by_alias=True).items()
                if value is not None}


class HTTPServerConfig(_Model):
    http2: bool | None = None  # accepted; this server speaks HTTP/1.1
    headers: Headers = Field(default_factory=lambda: Headers.model_validate({}))

    @field_validator("http2", mode="plain")
    @classmethod
    def _http2(cls, value: object) -> bool | None:
        if value is not None and not isinstance(value, bool):
            raise refusal("expected true or false")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        return {} if value is None else value


_HASH_HINT = ("not a bcrypt hash (plaintext passwords are refused; make one with "
              "'htpasswd -nBC 12 \"\" | tr -d :' or Python's bcrypt.hashpw)")


def _users(value: object) -> dict[str, bytes]:
    if not isinstance(value, dict):
        raise refusal(f"expected a mapping of user name to bcrypt hash, got {kind(value)}")
    return value  # checked entry by entry by WebFile._entries


class WebFile(_Model):
    """The whole file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: Annotated[dict[str, bytes] | None, PlainValidator(
        lambda v: None if v is None else _users(v)
    )] = None

    input_keys: ClassVar[frozenset[str]] = frozenset()

    @field_validator("basic_auth_users")
    @classmethod
    def _entries(cls, value: dict[Any, Any] | None) -> dict[str, bytes] | None:
        if value is None:
            return None
        users: dict[str, bytes] = {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for user, hashed in value.items():
            if not isinstance(user, str) or not user or ":" in user:
                problems.append((("basic_auth_users",),
                                 "user names must be non-empty strings without ':'"))
                continue
            if not isinstance(hashed, str) or not is_bcrypt_hash(hashed):
                # Never quote the value: it may be a plaintext password.
                problems.append((("basic_auth_users", user), _HASH_HINT))
                continue
            users[user] = hashed.encode("ascii")
        if problems:
            raise Several(problems)
        return users


class WebConfig(BaseModel):
    """The web configuration in force."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    tls: TLSServerConfig | None = None
    #: user -> bcrypt hash. Not a Secret: a bcrypt hash is meant to be stored, but it is still
    #: never logged or shown.
    users: Mapping[str, bytes] = Field(default_factory=dict)
    headers: Mapping[str, str] = Field(default_factory=dict)
    #: True for an empty file (or only comments).
    empty: bool = True
    #: True when the file says ``basic_auth_users:`` with a mapping, even ``{}``: the only way
    #: a reload may turn basic auth off (a half-written file must not).
    users_declared: bool = False


def parse_web_config(text: str, path: str, base_dir: Path) -> WebConfig:
    """Parse a web configuration document; raise WebConfigError listing every problem."""
    doc = yamlsource.load(text, quote=False)
    if doc.problems:
        raise WebConfigError(path, [_render(p) for p in doc.problems])
    if doc.data is None:
        return WebConfig()
    raw = doc.data
    if not isinstance(raw, dict):
        raise WebConfigError(path, [f"expected a mapping, got {kind(raw)}"])
    try:
        file = WebFile.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise WebConfigError(path, _problems(exc, doc)) from None
    tls = file.tls_server_config
    return WebConfig(
        tls=tls if tls is not None and tls.configured else None,
        users=file.basic_auth_users or {},
        headers=file.http_server_config.headers.as_dict() if file.http_server_config else {},
        empty=False,
        users_declared=isinstance(raw.get("basic_auth_users"), dict),
    )


def _render(problem: Problem) -> str:
    where = problem.key or (f"line {problem.line}" if problem.line else "(top level)")
    line = f" (line {problem.line})" if problem.key and problem.line else ""
    return f"{where}: {problem.reason}{line}"


def _problems(exc: ValidationError, doc: yamlsource.Document) -> list[str]:
    return [_render(p) for p in from_validation_error(exc, WebFile, doc)]
