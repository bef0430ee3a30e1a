"""The ``winrm`` collector: agentless reads from the License Server over WinRM (WS-Management).

The collector unit: the ``winrm:`` section's model, the steps of a collection, the data they
build and the metric families. What a collection does on the server, in this order:

1. WS-Management Enumerate (+ Pull) of the WMI classes ``root\\CitrixLicensing\\
   Citrix_GT_License_Pool`` and ``Citrix_GT_License``;
2. Enumerate of ``root\\cimv2`` with a WQL filter for the watched services (``winrm.services``;
   default the four of an 11.17.2 License Server), by name or display name;
3. one WinRS shell running one fixed, read-only PowerShell command (citrix/onbox.py) for the
   installed version, the end of the uploader log and the upload bundle names.

The WS-Management client (pypsrp over requests, with the bounds on every wait, answer and
logon round that keep a hostile server from holding the probe) is collectors/winrm_client.py.
This module imports it inside ``WinRMCollector.collect``, not at module scope: loading a
configuration imports this module (the registry lists the collector, config.py validates the
``winrm:`` section), and pypsrp, requests, urllib3, pyspnego and the Kerberos bindings hold
14-15 MB of RSS that an exporter whose modules never use WinRM should not pay
(docs/performance.md "What RSS holds"; tests/e2e/test_winrm_lazy_import.py). So this module
imports none of them; only ``collect`` reaches them, through winrm_client.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, PlainValidator, ValidationInfo, field_validator, model_validator

from ..citrix.licensing import (
    DEFAULT_SERVICES,
    SERVICE_STATES,
    License,
    LicensePool,
    ServiceSpec,
    ServiceState,
    TelemetrySummary,
    WinRMData,
    excerpt,
    parse_service_specs,
    summarize_telemetry,
)
from ..citrix.onbox import OnBoxData, parse_output, stderr_summary
from ..citrix.uploader_log import compliance_attempts, parse_bundles, parse_uploader_log
from ..citrix.versions import VersionParseError, parse_version
from ..citrix.wmi import (
    CIMV2_ALL_URI,
    LICENSE_URI,
    POOL_URI,
    WSManFault,
    parse_licenses,
    parse_pools,
    parse_services,
    services_query,
)
from ..config import (
    Bool,
    Bytes,
    CacheInterval,
    ModuleConfig,
    OptionalStr,
    Secret,
    SecretValue,
    SectionModel,
    Str,
    TargetConfig,
    TLSConfig,
    choice,
    int_in,
    non_empty,
    optional_port,
    read_secrets,
    resolve_file,
)
from ..metrics import CACHED_NOTE, PREFIX, gauge, single, ts
from ..redaction import shorten
from ..settings.problems import Several, refusal
from .base import CollectorDocs, CollectorError, CollectorUnit, Deadline, FailureKind

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from ..probe import ProbeResult
    from .winrm_client import WinRMClient

log = logging.getLogger(__name__)


class WinRMCollectorError(CollectorError):
    pass


# ---------------------------------------------------------------------------------------------
# Where the client connects


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.path}"


def endpoint_for(target: TargetConfig, cfg: WinRMConfig) -> Endpoint:
    if target.winrm_url:
        parts = urlsplit(target.winrm_url)
        scheme = parts.scheme
        port = parts.port or (5986 if scheme == "https" else 5985)
        return Endpoint(scheme, parts.hostname or target.address, port,
                        (parts.path or "/wsman").lstrip("/"))
    return Endpoint(cfg.scheme, target.address, cfg.effective_port, cfg.path.lstrip("/"))


def service_principal(endpoint: Endpoint, cfg: WinRMConfig) -> tuple[str, str]:
    """(service, host) of the SPN: ``kerberos.spn``, else ``HTTP/<host of the WinRM URL>``, the
    name Windows' own WinRM client asks for (docs/windows-setup.md)."""
    spn = cfg.kerberos.spn if cfg.kerberos is not None else None
    if spn:
        service, _, host = spn.partition("/")
        return service, host
    return "HTTP", endpoint.host


# ---------------------------------------------------------------------------------------------
# Errors a user reads


def describe_fault(fault: WSManFault, what: str, namespace: str | None) -> str:
    if namespace and fault.is_missing_namespace():
        if namespace == "root\\CitrixLicensing":
            return "WMI namespace root\\CitrixLicensing not found (licensing not installed?)"
        return f"WMI namespace {namespace}: class not found while {what}"
    if fault.is_access_denied():
        if namespace:
            return (f"access denied while {what} (grant the account Enable Account and "
                    f"Remote Enable on WMI {namespace}; see docs/windows-setup.md)")
        return f"access denied while {what} (see docs/windows-setup.md)"
    code = f" (code {fault.code})" if fault.code is not None else ""
    reason = shorten(fault.reason, 160) or fault.subcode or "no reason given"
    return f"WS-Management fault while {what}{code}: {reason}"


# ---------------------------------------------------------------------------------------------
# The collector


def choose_version(registry: str | None, uninstall: str | None) -> tuple[str | None, str | None]:
    """The registry's Install\\Version, unless it lacks what the release policy needs (a
    build number) and the Uninstall entry's DisplayVersion has it. ASSUMPTION: both hold a
    version string such as "11.17.2.0 build 56200" (docs/windows-setup.md)."""
    for text, source in ((registry, "registry"), (uninstall, "uninstall")):
        if text:
            try:
                parse_version(text)
            except VersionParseError:
                continue
            return text, source
    if registry:
        return registry, "registry"  # reported as unparseable by the probe
    if uninstall:
        return uninstall, "uninstall"
    return None, None


# ---------------------------------------------------------------------------------------------
# The module section: ``modules.<module>.winrm``

#: The largest uploader log tail a module may ask for.
MAX_LOG_TAIL_BYTES = 64 * 1024 * 1024
_SPN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}/[A-Za-z0-9.-]{1,253}$")
_REALM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$")
#: WMI instances read per class at most (a License Server has a few dozen pools).
MAX_INSTANCES_LIMIT = 1_000_000


def _realm_name(value: object) -> str | None:
    if value is None:
        return None
    text = non_empty(value)
    if not _REALM.match(text):
        raise ValueError("expected a realm name such as CORP.EXAMPLE.COM")
    return text


def _spn_name(value: object) -> str | None:
    if value is None:
        return None
    text = non_empty(value)
    if not _SPN.match(text):
        raise ValueError("expected SERVICE/host, e.g. HTTP/ls01.corp.example.com")
    return text


class KerberosConfig(SectionModel):
    """``winrm.kerberos`` (auth kerberos): where the client's ticket comes from, and the SPN.

    The source is the module's password (the exporter runs kinit into a private credential
    cache), else ``keytab``, else an existing credential cache (``ccache``, or KRB5CCNAME).
    """

    #: The realm of ``username`` when it has no ``@REALM`` part.
    realm: Annotated[str | None, PlainValidator(_realm_name)] = None
    #: The service principal, ``SERVICE/host`` (default ``HTTP/<host of the WinRM URL>``).
    spn: Annotated[str | None, PlainValidator(_spn_name)] = None
    keytab: OptionalStr = None
    ccache: OptionalStr = None

    @field_validator("keytab")
    @classmethod
    def _keytab(cls, value: str | None, info: ValidationInfo) -> str | None:
        return resolve_file(value.removeprefix("FILE:") if value else value, info)


def _services(value: object) -> tuple[ServiceSpec, ...]:
    """``winrm.services`` as written (citrix/licensing.py's rules), or as code builds it."""
    if isinstance(value, tuple) and all(isinstance(s, ServiceSpec) for s in value):
        return value
    return parse_service_specs(value)


def _cross_checks(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """The Kerberos credential rules, on the keys as written."""
    if raw.get("auth") != "kerberos":
        return []
    found = raw.get("kerberos")
    kerberos: Mapping[str, Any] = found if isinstance(found, dict) else {}
    password = any(raw.get(k) is not None for k in ("password", "password_file", "password_env"))
    keytab = kerberos.get("keytab") is not None
    sources = [name for name, given in (
        ("password_file/password_env", password), ("kerberos.keytab", keytab),
        ("kerberos.ccache", kerberos.get("ccache") is not None)) if given]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if len(sources) > 1:
        problems.append(((), "auth kerberos takes one credential source, got "
                         + " and ".join(sources)))
    if (password or keytab) and not raw.get("username"):
        problems.append((("username",), "required for auth kerberos with a password or keytab "
                         "(the client principal, user or user@REALM)"))
    return problems


class WinRMConfig(SectionModel):
    input_keys: ClassVar[frozenset[str]] = frozenset({"password_file", "password_env"})

    scheme: Annotated[Literal["https", "http"], choice("https", "http")] = "https"
    auth: Annotated[
        Literal["ntlm", "basic", "kerberos"], choice("ntlm", "basic", "kerberos")
    ] = "ntlm"
    allow_unencrypted: Bool = False
    username: str = Field(default="", validate_default=True)
    password: SecretValue = Field(default=None, validate_default=True)
    port: Annotated[int | None, PlainValidator(optional_port)] = None
    path: Str = "/wsman"
    tls: TLSConfig = Field(default_factory=TLSConfig)
    cache_interval: CacheInterval = 900.0
    log_tail_bytes: Annotated[int, int_in(1, MAX_LOG_TAIL_BYTES)] = 256 * 1024
    max_response_bytes: Bytes = 8 * 1024 * 1024
    #: WMI instances read per class at most (a License Server has a few dozen pools).
    max_instances: Annotated[int, int_in(1, MAX_INSTANCES_LIMIT)] = 10_000
    kerberos: KerberosConfig | None = Field(default=None, validate_default=True)
    #: The Windows services watched (citrix/licensing.py DEFAULT_SERVICES: the four of 11.17.2).
    services: Annotated[tuple[ServiceSpec, ...], PlainValidator(_services)] = DEFAULT_SERVICES
    #: Whether WMI Count includes the overdraft allowance (docs/assumptions.md, Overdraft).
    count_includes_overdraft: Bool = True
    #: Rules across keys, judged on what was written (so that a bad value of one key does not
    #: hide them): see _cross_checks. Never set in a file.
    checks: None = Field(default=None, alias="__checks__", validate_default=True, repr=False)

    internal_keys: ClassVar[frozenset[str]] = frozenset({"__checks__"})

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = {**data, "__checks__": _cross_checks(data)}
        return read_secrets(data, info, ("password",))

    @field_validator("username", mode="plain")
    @classmethod
    def _username(cls, value: object, info: ValidationInfo) -> str:
        auth = info.data.get("auth")
        if value is None or value == "":
            if auth in ("ntlm", "basic"):
                raise refusal(f"required for auth {auth}")
            return ""
        return non_empty(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: Secret | None, info: ValidationInfo) -> Secret | None:
        auth = info.data.get("auth")
        if auth in ("ntlm", "basic") and value is None and info.context is not None:
            raise refusal(f"auth {auth} needs password_file or password_env", key=None)
        if auth == "basic" and info.data.get("scheme") == "http" \
                and info.data.get("allow_unencrypted") is False:
            raise refusal(
                "basic authentication over http sends the password in clear text; "
                "use scheme https, auth ntlm, or set allow_unencrypted: true", key="auth",
            )
        return value

    @field_validator("kerberos")
    @classmethod
    def _kerberos(
        cls, value: KerberosConfig | None, info: ValidationInfo
    ) -> KerberosConfig | None:
        auth = info.data.get("auth")
        if auth is None:
            return value
        if auth != "kerberos":
            if value is not None:
                raise refusal("only for auth kerberos")
            return None
        return value or KerberosConfig()

    @field_validator("checks", mode="plain")
    @classmethod
    def _raw_checks(cls, value: object) -> None:
        if value:
            raise Several(value)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _tail_fits(self, info: ValidationInfo) -> WinRMConfig:
        # The log tail travels Base64-encoded (4/3) inside the answer: a tail that cannot fit
        # would fail every collection. (Code may build tighter caps on purpose: file only.)
        if info.context is not None \
                and self.log_tail_bytes * 4 // 3 + 64 * 1024 > self.max_response_bytes:
            raise refusal(
                "log_tail_bytes does not fit in max_response_bytes (the tail travels "
                "Base64-encoded: raise max_response_bytes or lower log_tail_bytes)"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (5986 if self.scheme == "https" else 5985)


class WinRMCollector(CollectorUnit[WinRMData, WinRMConfig]):
    name = "winrm"
    data_type = WinRMData
    config_model = WinRMConfig
    cached = True
    credentials = True
    docs = CollectorDocs(
        summary="Licenses, pools, services, version and compliance uploads of the License "
        "Server, over WinRM (WMI, the registry, the uploader log)",
        families=tuple(f"{PREFIX}_{name}" for name in (
            "service_up", "service_state", "service_required", "installed", "in_use",
            "available", "overdraft", "purchased", "subscription_advantage_timestamp_seconds",
            "expiry_timestamp_seconds", "telemetry_manual",
            "telemetry_last_success_timestamp_seconds", "telemetry_last_attempt_timestamp_seconds",
            "telemetry_last_attempt_success", "telemetry_oldest_pending_bundle_timestamp_seconds",
            "telemetry_consecutive_failures", "telemetry_pending_bundles",
        )),
    )

    def families(self, data: WinRMData, result: ProbeResult) -> Iterator[Metric]:
        return winrm_families(data, result)

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> WinRMData:
        cfg = module.winrm
        if cfg is None:
            raise WinRMCollectorError(f"module {module.name} has no winrm section",
                                      kind=FailureKind.INTERNAL)
        # Here, not at module scope: see the module doc (the WinRM client stack's RSS).
        from .winrm_client import Budget, WinRMClient, describe

        endpoint = endpoint_for(target, cfg)
        budget = Budget(deadline, cfg.max_response_bytes, auth=cfg.auth)
        namespace: str | None = None
        started = time.monotonic()

        def step(phase: str) -> None:
            budget.phase = phase
            log.debug("winrm step", extra={"fields": {
                "target": target.name, "step": phase,
                "after_seconds": round(time.monotonic() - started, 3)}})

        with budget.watchdog():
            client: WinRMClient | None = None
            try:
                budget.left()
                client = WinRMClient(endpoint, cfg, budget)
                namespace = "root\\CitrixLicensing"
                step("reading WMI Citrix_GT_License_Pool")
                pools = parse_pools(client.enumerate(POOL_URI))
                step("reading WMI Citrix_GT_License")
                licenses = parse_licenses(client.enumerate(LICENSE_URI))
                namespace = "root\\cimv2"
                step("reading WMI Win32_Service")
                services: tuple[ServiceState, ...] = ()
                if cfg.services:
                    services = parse_services(
                        client.enumerate(CIMV2_ALL_URI, services_query(cfg.services)),
                        cfg.services,
                    )
                if services and not any(s.installed for s in services):
                    # WMI root\CitrixLicensing answered, so licensing is installed: an empty
                    # answer here means the account may not list services.
                    raise WinRMCollectorError(
                        "Win32_Service lists none of the licensing services (the account needs "
                        "read access to the Service Control Manager; see docs/windows-setup.md)",
                        kind=FailureKind.AUTH,
                    )
                namespace = None
                step("running the on-box script")
                rc, stdout, stderr = client.run_script(cfg.log_tail_bytes)
                if rc != 0:
                    raise WinRMCollectorError(
                        f"on-box script failed (exit code {rc}): {stderr_summary(stderr)}",
                        kind=FailureKind.PROTOCOL,
                    )
                step("reading the on-box script output")
                onbox = parse_output(stdout, cfg.log_tail_bytes)
                data = self._data(target, pools, licenses, services, onbox,
                                  cfg.count_includes_overdraft)
                log.debug(
                    "winrm collection done",
                    extra={"fields": {"target": target.name, "pools": len(pools),
                                      "seconds": round(time.monotonic() - started, 3)}},
                )
            except Exception as exc:
                reason, kind = describe(exc, endpoint, cfg, budget, namespace)
                raise WinRMCollectorError(reason, kind=kind) from None
            finally:
                if client is not None:
                    client.close()
        return data

    @staticmethod
    def _data(
        target: TargetConfig,
        pools: tuple[LicensePool, ...],
        licenses: tuple[License, ...],
        services: tuple[ServiceState, ...],
        onbox: OnBoxData,
        count_includes_overdraft: bool = True,
    ) -> WinRMData:
        if not onbox.ls_exists:
            raise WinRMCollectorError(
                f"License Server folder {excerpt(onbox.ls_path, 120)} not found (custom "
                "install path?)",
                kind=FailureKind.PROTOCOL,
            )
        attempts = (
            parse_uploader_log(onbox.log_tail, onbox.log_truncated)
            if onbox.log_size is not None
            else ()
        )
        bundles = parse_bundles(f.name for f in onbox.files)
        telemetry: TelemetrySummary = summarize_telemetry(compliance_attempts(attempts), bundles)
        version, source = choose_version(onbox.registry_version, onbox.uninstall_version)
        return WinRMData(
            license_server_version=version,
            version_source=source,
            services=services,
            pools=pools,
            licenses=licenses,
            attempts=attempts,
            bundles=bundles,
            telemetry=telemetry,
            telemetry_manual=target.telemetry == "manual",
            uploader_log_bytes=onbox.log_size,
            count_includes_overdraft=count_includes_overdraft,
        )


# ---------------------------------------------------------------------------------------------
# Metric families (docs/metrics.md "License Server over WinRM")


POOL_LABELS = ("feature", "product", "edition", "model", "license_type", "pool")


def service_families(data: WinRMData) -> Iterator[Metric]:
    """The watched Windows services: not installed is told apart from installed but not
    running (docs/metrics.md), and which of them the module requires."""
    service_up = gauge(
        "service_up",
        "1 if the watched Windows service is running, 0 if it is installed but not running; "
        "absent when it is not installed (see citrix_license_service_state)." + CACHED_NOTE,
        ["service"],
    )
    state = gauge(
        "service_state",
        "The watched Windows service's state (Win32_Service.State in snake case, or "
        "not_installed): one series per state, 1 for the current one." + CACHED_NOTE,
        ["service", "state"],
    )
    required = gauge(
        "service_required",
        "1 if the module lists the service as required (winrm.services), so that its absence "
        "alerts; 0 if it is watched only.",
        ["service"],
    )
    for service in data.services:
        if service.installed:
            service_up.add_metric([service.name], 1.0 if service.running else 0.0)
        current = service.state_label
        for name in SERVICE_STATES:
            state.add_metric([service.name, name], 1.0 if name == current else 0.0)
        required.add_metric([service.name], 1.0 if service.required else 0.0)
    yield service_up
    yield state
    yield required


def winrm_families(data: WinRMData, result: ProbeResult) -> Iterator[Metric]:
    """What the WinRM collector read (cached: every HELP says the data may be that old)."""
    yield from service_families(data)

    pool_metrics = {
        "installed": ("installed", "Licenses installed in the pool as the License Server "
                      "counts them (WMI Count; taken to include the overdraft allowance, see "
                      "citrix_license_purchased)."),
        "in_use": ("in_use", "Licenses of the pool in use (WMI InUseCount)."),
        "available": ("available", "Licenses of the pool available (WMI PooledAvailable)."),
        "overdraft": ("overdraft", "Overdraft licenses of the pool (WMI Overdraft)."),
    }
    families = {
        attr: gauge(name, doc + " One series per pool; sum by (feature) for totals." + CACHED_NOTE,
                    POOL_LABELS)
        for attr, (name, doc) in pool_metrics.items()
    }
    purchased = gauge(
        "purchased",
        "Licenses of the pool bought, without the overdraft allowance: WMI Count minus "
        "Overdraft when the module's winrm.count_includes_overdraft is true (the default, from "
        "public evidence: docs/assumptions.md), else Count. In use above this: overdraft in use."
        " One series per pool; sum by (feature) for totals." + CACHED_NOTE,
        POOL_LABELS,
    )
    sa = gauge(
        "subscription_advantage_timestamp_seconds",
        "Subscription Advantage / Customer Success Services date of the pool (absent when the "
        "pool has none)." + CACHED_NOTE,
        POOL_LABELS,
    )
    for pool in data.pools:
        feature = pool.feature
        labels = [feature.pld, feature.product, feature.edition, feature.model,
                  pool.license_type or "unknown", pool.pool]
        for attr, family in families.items():
            family.add_metric(labels, float(getattr(pool, attr)))
        purchased.add_metric(labels, float(pool.purchased(data.count_includes_overdraft)))
        if pool.subscription_advantage is not None:
            sa.add_metric(labels, ts(pool.subscription_advantage))
    yield from families.values()
    yield purchased
    yield sa

    expiry = gauge(
        "expiry_timestamp_seconds",
        "When the license expires (permanent licenses have no series)." + CACHED_NOTE,
        ["feature", "serial"],
    )
    for item in data.licenses:
        if item.expiry is not None:
            expiry.add_metric([item.feature, item.serial], ts(item.expiry))
    yield expiry

    tele = data.telemetry
    yield single(
        "telemetry_manual",
        "1 if the target is configured telemetry: manual (air-gapped, reported by hand); the "
        "upload metrics then describe the automatic uploader only (see docs/windows-setup.md).",
        1.0 if data.telemetry_manual else 0.0,
    )
    optional = (
        ("telemetry_last_success_timestamp_seconds", tele.last_success,
         "Last successful compliance telemetry upload in the uploader log tail (absent: none "
         "there)."),
        ("telemetry_last_attempt_timestamp_seconds", tele.last_attempt,
         "Last compliance telemetry upload attempt in the uploader log tail (absent: none "
         "there)."),
        ("telemetry_last_attempt_success",
         None if tele.last_attempt_success is None else float(tele.last_attempt_success),
         "1 if the last compliance telemetry upload attempt succeeded (absent: no attempt)."),
        ("telemetry_oldest_pending_bundle_timestamp_seconds", tele.oldest_pending_bundle,
         "Creation time of the oldest upload bundle waiting in the License Server's "
         "resource/usage folder (absent: none waiting)."),
    )
    for name, value, doc in optional:
        if value is not None:
            yield single(name, doc + CACHED_NOTE, float(value))
    yield single(
        "telemetry_consecutive_failures",
        "Failed compliance uploads since the last success in the uploader log tail (a lower "
        "bound when the tail holds no success)." + CACHED_NOTE,
        float(tele.consecutive_failures),
    )
    yield single(
        "telemetry_pending_bundles",
        "Upload bundles newer than the last successful upload, waiting in the License "
        "Server's resource/usage folder." + CACHED_NOTE,
        float(tele.pending_bundles),
    )
