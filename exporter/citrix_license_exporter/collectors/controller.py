"""The ``controller`` collector: the licensing state of the site(s) that use this License Server,
as the site sees it, from the Delivery Controller REST API (``https://<controller>/cvad/manage``).

Fetch only; it names no metric. Per collection, on the first controller of the target's
``controllers`` list that answers (the next one is tried when one fails, except when the
credentials are rejected: trying them elsewhere would only lock the account sooner):

1. ``POST /Tokens`` with HTTP Basic credentials, only when no token is held for this controller
   and account, or the held one is about to expire (``ExpiresAt``), or the API answered 401;
2. ``GET /Sites``, then per site (the target's ``site``, or all) ``GET /Sites/{id}`` and the
   license overview (``GET /Licensing/LicenseOverview`` with ``Citrix-InstanceId: {id}``) for
   the License Server status; a controller without that call (404, 405, 501) leaves the status
   out. Every API call carries ``Citrix-CustomerId: CitrixOnPremises`` and
   ``Authorization: CWSAuth Bearer=<token>``.

Tokens are kept in memory per (controller, account), shared by all targets and probes, and
fetched by one probe at a time. The password is only ever put in the Basic header of the token
request; failure reasons name URLs and statuses only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..citrix.controller_api import (
    LICENSE_SERVER_STATUSES,
    APIFormatError,
    SiteLicensing,
    parse_site,
    parse_site_list,
    parse_token,
    select_sites,
    unique_site_labels,
)
from ..config import (
    Bytes,
    CacheInterval,
    ModuleConfig,
    Secret,
    SecretValue,
    SectionModel,
    Str,
    TargetConfig,
    TLSConfig,
    URLPath,
    read_secrets,
)
from ..metrics import CACHED_NOTE, PREFIX, gauge, ts
from ..settings.problems import refusal
from ..transport import HTTPStatusError
from .base import CollectorDocs, CollectorError, CollectorUnit, Deadline, FailureKind
from .failures import classify
from .httpjson import new_client, request_json

if TYPE_CHECKING:
    import httpx  # imported by transport.new_client (transport.py's module doc)
    from prometheus_client.core import Metric

    from ..probe import ProbeResult

log = logging.getLogger(__name__)

CUSTOMER_ID = "CitrixOnPremises"
#: A token is renewed this long before it expires (at most a tenth of its lifetime).
TOKEN_RENEW_MARGIN = 30.0
#: Statuses of the license overview call that mean "this controller has no such call".
OVERVIEW_ABSENT = (404, 405, 501)
MAX_TOKENS = 1000


@dataclass(frozen=True)
class ControllerData:
    controller: str  # the controller that answered (https://host[:port])
    sites: tuple[SiteLicensing, ...]
    fetched_at: datetime  # UTC, when the answers arrived
    license_server_version: str | None = None  # the site API does not report it


class AuthenticationFailed(CollectorError):
    """The controller rejected the credentials: no other controller is tried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind=FailureKind.AUTH)


@dataclass
class _HeldToken:
    value: str
    renew_at: float  # time.monotonic()


TokenKey = tuple[str, str, Secret | None]


class _Session:
    """One collection against one controller."""

    def __init__(
        self,
        owner: ControllerCollector,
        client: httpx.AsyncClient,
        base: str,
        config: ControllerConfig,
        deadline: Deadline,
    ) -> None:
        self.owner = owner
        self.client = client
        self.base = base
        self.api = base + config.base_path
        self.config = config
        self.deadline = deadline
        self.key: TokenKey = (base, config.username, config.password)

    async def get(self, path: str, extra: dict[str, str] | None = None) -> Any:
        url = self.api + path
        what = f"GET {url}"
        token = await self.owner.token(self, stale=None)
        for attempt in (1, 2):
            headers = {"Citrix-CustomerId": CUSTOMER_ID,
                       "Authorization": f"CWSAuth Bearer={token}", **(extra or {})}
            try:
                return (await request_json(
                    self.client, "GET", url, deadline=self.deadline,
                    max_bytes=self.config.max_response_bytes, headers=headers,
                )).body
            except HTTPStatusError as exc:
                if exc.status == 401 and attempt == 1:
                    # Expired or revoked before its ExpiresAt (e.g. the controller restarted).
                    token = await self.owner.token(self, stale=token)
                    continue
                if exc.status == 401:
                    raise HTTPStatusError(f"{what}: HTTP 401 even with a new token", 401) from None
                if exc.status == 403:
                    raise HTTPStatusError(
                        f"{what}: HTTP 403: the account {self.config.username} may not read "
                        "the site (it needs a Studio role, e.g. Read Only Administrator)",
                        403,
                    ) from None
                raise
        raise AssertionError("unreachable")  # pragma: no cover


class ControllerConfig(SectionModel):
    """The Delivery Controller REST API (``https://<controller>/cvad/manage``), read-only."""

    input_keys: ClassVar[frozenset[str]] = frozenset({"password_file", "password_env"})

    username: Str
    password: SecretValue = Field(default=None, validate_default=True)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    base_path: URLPath = "/cvad/manage"
    #: Where the License Server status (LicenseInformation.LicenseServerStatus) is read, per
    #: site; empty: not read (see docs/controller-and-cloud.md).
    license_overview_path: URLPath = "/Licensing/LicenseOverview"
    cache_interval: CacheInterval = 60.0
    max_response_bytes: Bytes = 4 * 1024 * 1024

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        return read_secrets(data, info, ("password",))

    @field_validator("password")
    @classmethod
    def _password(cls, value: Secret | None, info: ValidationInfo) -> Secret | None:
        if value is None and info.context is not None:
            raise refusal("the controller API needs password_file or password_env", key=None)
        return value


class ControllerCollector(CollectorUnit[ControllerData, ControllerConfig]):
    name = "controller"
    data_type = ControllerData
    config_model = ControllerConfig
    cached = True
    credentials = True
    docs = CollectorDocs(
        summary="The licensing state of the site(s) using the License Server, from the "
        "Delivery Controller REST API",
        families=tuple(f"{PREFIX}_site_{name}" for name in (
            "info", "out_of_box_grace_active", "supplemental_grace_active",
            "supplemental_grace_end_timestamp_seconds", "license_server_status", "alerts",
            "peak_concurrent_users", "unique_users", "licensed_sessions_active",
        )),
    )

    def families(self, data: ControllerData, result: ProbeResult) -> Iterator[Metric]:
        return controller_families(data, result)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, _HeldToken] = {}
        self._login_locks: dict[TokenKey, asyncio.Lock] = {}
        self._reported: set[tuple[str, str]] = set()

    # -- tokens ----------------------------------------------------------------------------

    def forget_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    async def token(self, session: _Session, stale: str | None) -> str:
        """A valid token for the session's controller and account: the held one, or a new one
        (one login at a time per key). ``stale``: a token the API just refused."""
        key = session.key
        with self._lock:
            held = self._tokens.get(key)
            if held is not None and held.value != stale and time.monotonic() < held.renew_at:
                return held.value
            login_lock = self._login_locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout(session.deadline.remaining()):
                await login_lock.acquire()
        except TimeoutError:
            raise CollectorError(
                f"POST {session.api}/Tokens: probe deadline reached while another probe was "
                "logging in", kind=FailureKind.TIMEOUT) from None
        try:
            with self._lock:
                held = self._tokens.get(key)
                if held is not None and held.value != stale and time.monotonic() < held.renew_at:
                    return held.value  # another probe logged in meanwhile
            value, renew_at = await self._login(session)
            with self._lock:
                if len(self._tokens) >= MAX_TOKENS:
                    self._tokens.clear()
                self._tokens[key] = _HeldToken(value, renew_at)
            return value
        finally:
            login_lock.release()

    @staticmethod
    async def _login(session: _Session) -> tuple[str, float]:
        config = session.config
        url = f"{session.api}/Tokens"
        what = f"POST {url}"
        if config.password is None:
            raise AuthenticationFailed(f"{what}: no password configured")
        try:
            answer = await request_json(
                session.client, "POST", url, deadline=session.deadline,
                max_bytes=config.max_response_bytes,
                auth=(config.username, config.password.reveal()),
            )
        except HTTPStatusError as exc:
            if exc.status in (401, 403):
                raise AuthenticationFailed(
                    f"{what}: HTTP {exc.status}: the controller rejected the credentials of "
                    f"{config.username}"
                ) from None
            raise
        try:
            token = parse_token(answer.body, answer.date, datetime.now(UTC))
        except APIFormatError as exc:
            raise CollectorError(f"{what}: {exc}", kind=FailureKind.PARSE) from None
        lifetime = token.lifetime.total_seconds()
        renew_at = time.monotonic() + lifetime - min(TOKEN_RENEW_MARGIN, max(lifetime, 0) / 10)
        log.debug("controller token obtained",
                  extra={"fields": {"controller": session.base,
                                    "lifetime_seconds": round(lifetime)}})
        return token.value, renew_at

    # -- collection ------------------------------------------------------------------------

    def collect(
        self, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> ControllerData:
        """For callers outside the event loop."""
        return asyncio.run(self.collect_async(target, module, deadline))

    async def collect_async(
        self, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> ControllerData:
        config = module.controller
        if config is None:
            raise CollectorError("the module has no controller section")
        if not target.controllers:
            raise CollectorError(
                "no Delivery Controllers configured for this target (target key controllers)"
            )
        failures: list[str] = []
        kinds: list[FailureKind] = []
        deadline = deadline.inner()  # the request's reason reaches the probe first
        async with new_client(config.tls) as client:
            for base in target.controllers:
                session = _Session(self, client, base, config, deadline)
                try:
                    return await self._collect(session, target)
                except AuthenticationFailed:
                    raise
                except CollectorError as exc:
                    failures.append(str(exc))
                    kinds.append(classify(exc))
                if deadline.expired():
                    break
        # The first controller's kind: the others are fallbacks.
        if len(failures) == 1:
            raise CollectorError(failures[0], kind=kinds[0])
        raise CollectorError(f"no controller answered ({len(failures)} tried): "
                             + "; ".join(failures), kind=kinds[0] if kinds else None)

    async def _collect(self, session: _Session, target: TargetConfig) -> ControllerData:
        try:
            refs = select_sites(parse_site_list(await session.get("/Sites")), target.site)
        except APIFormatError as exc:
            raise CollectorError(f"GET {session.api}/Sites: {exc}",
                                 kind=FailureKind.PARSE) from None
        except LookupError as exc:
            raise CollectorError(f"{session.base}: {exc.args[0]}",
                                 kind=FailureKind.PROTOCOL) from None
        sites = []
        for ref in refs:
            path = f"/Sites/{quote(ref.id, safe='')}"
            detail = await session.get(path)
            overview = await self._overview(session, ref.id)
            try:
                site = parse_site(detail, overview)
            except APIFormatError as exc:
                raise CollectorError(f"GET {session.api}{path}: {exc}",
                                     kind=FailureKind.PARSE) from None
            if site.unrecognised_status is not None:
                self._report_once(session.base, site.unrecognised_status)
            sites.append(site)
        return ControllerData(session.base, tuple(sites), datetime.now(UTC))

    async def _overview(self, session: _Session, site_id: str) -> Any:
        path = session.config.license_overview_path
        if not path:
            return None
        try:
            return await session.get(path, {"Citrix-InstanceId": site_id})
        except HTTPStatusError as exc:
            if exc.status in OVERVIEW_ABSENT:
                log.debug("controller has no license overview call",
                          extra={"fields": {"controller": session.base, "status": exc.status}})
                return None
            raise

    def _report_once(self, controller: str, value: str) -> None:
        with self._lock:
            if (controller, value) in self._reported:
                return
            self._reported.add((controller, value))
        log.warning(
            "unknown LicenseServerStatus value, shown as UnknownStatus",
            extra={"fields": {"controller": controller, "value": value}},
        )



# ---------------------------------------------------------------------------------------------
# Delivery Controller: the licensing state of the site(s) using this License Server


def controller_families(data: ControllerData, result: ProbeResult) -> Iterator[Metric]:
    labels = unique_site_labels(data.sites)
    info = gauge(
        "site_info",
        "A site using this License Server, with the License Server it is configured with "
        "(LicenseServerName:LicenseServerPort), as the Delivery Controller reports it (value 1)."
        + CACHED_NOTE,
        ["site", "license_server"],
    )
    out_of_box = gauge(
        "site_out_of_box_grace_active",
        "1 if the site is in the licensing out-of-box grace period "
        "(LicensingOutOfBoxGracePeriodActive)." + CACHED_NOTE,
        ["site"],
    )
    grace = gauge(
        "site_supplemental_grace_active",
        "1 if the site's licensing grace period is active (LicensingGracePeriodActive): "
        "connections beyond the installed licenses are allowed until it ends." + CACHED_NOTE,
        ["site"],
    )
    grace_end = gauge(
        "site_supplemental_grace_end_timestamp_seconds",
        "When the site's licensing grace period ends: the time of the fetch plus "
        "LicensingGraceHoursLeft. Absent when no grace period is active.",
        ["site"],
    )
    status = gauge(
        "site_license_server_status",
        "The License Server status as the site sees it (LicenseServerStatus): one series per "
        "state, 1 for the current state. Absent when the controller does not report it."
        + CACHED_NOTE,
        ["site", "status"],
    )
    alerts = gauge(
        "site_alerts",
        "Active licensing alerts of the site (LicensingAlerts), by AlertLevel." + CACHED_NOTE,
        ["site", "level"],
    )
    peak = gauge(
        "site_peak_concurrent_users",
        "Peak concurrent licensed users of the site (PeakConcurrentLicenseUsers; concurrent "
        "licensing model only)." + CACHED_NOTE,
        ["site"],
    )
    unique = gauge(
        "site_unique_users",
        "Unique licensed users of the site (TotalUniqueLicenseUsers)." + CACHED_NOTE,
        ["site"],
    )
    sessions = gauge(
        "site_licensed_sessions_active",
        "Active licensed sessions of the site (LicensedSessionsActive)." + CACHED_NOTE,
        ["site"],
    )
    for site, label in zip(data.sites, labels, strict=True):
        server = site.license_server_name or ""
        if server and site.license_server_port is not None:
            server = f"{server}:{site.license_server_port}"
        info.add_metric([label, server], 1.0)
        if site.out_of_box_grace_active is not None:
            out_of_box.add_metric([label], 1.0 if site.out_of_box_grace_active else 0.0)
        if site.grace_active is not None:
            grace.add_metric([label], 1.0 if site.grace_active else 0.0)
        end = site.grace_end(data.fetched_at)
        if end is not None:
            grace_end.add_metric([label], ts(end))
        if site.license_server_status is not None:
            for state in LICENSE_SERVER_STATUSES:
                status.add_metric(
                    [label, state], 1.0 if state == site.license_server_status else 0.0
                )
        for level, count in site.alerts.items():
            alerts.add_metric([label, level], float(count))
        for family, number in (
            (peak, site.peak_concurrent_users),
            (unique, site.unique_users),
            (sessions, site.licensed_sessions_active),
        ):
            if number is not None:
                family.add_metric([label], float(number))
    for family in (info, out_of_box, grace, grace_end, status, alerts, peak, unique, sessions):
        if family.samples:
            yield family
