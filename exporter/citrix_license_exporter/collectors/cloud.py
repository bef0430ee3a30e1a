"""The ``cloud`` collector (EXPERIMENTAL): what Citrix Cloud knows about this License Server's
reporting, from the licensing API used in public partner scripts.

Fetch only; it names no metric. The License Server list covers the whole Citrix Cloud
customer, so it is fetched once per ``cloud.cache_interval`` for all targets (one shared cache
per customer and API client; the fetch runs as one task on the event loop, and concurrent
probes await that one fetch in flight) and each probe only looks its target up in it:

1. ``POST {trust_url}/root/tokens/clients`` with ``{"ClientId", "ClientSecret"}``, only when no
   token is held or it is about to expire (``expiresIn``), or the list call answered 401;
2. ``GET {licensing_url}/{customerId}/licenseservers`` with
   ``Authorization: CwsAuth bearer=<token>``.

A failed fetch is logged once, at warning level, and is then remembered for the same interval:
every target reports ``citrix_license_collector_success{collector="cloud"} 0`` with the same
reason, but the log gets one line per interval, not one per target and scrape. Customers whose
organisation cannot use this API (it is not documented for every customer) see that one line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import Field, PlainValidator, ValidationInfo, field_validator, model_validator

from ..citrix.cloud_api import (
    CloudServerStatus,
    normalise_fqdn,
    parse_cloud_token,
    parse_license_servers,
)
from ..citrix.controller_api import APIFormatError
from ..config import (
    Bytes,
    HttpsBaseURL,
    ModuleConfig,
    PositiveCacheInterval,
    Secret,
    SecretValue,
    SectionModel,
    TargetConfig,
    TLSConfig,
    non_empty,
    read_secrets,
)
from ..metrics import PREFIX, single, ts
from ..settings.problems import refusal
from ..transport import HTTPStatusError
from .base import (
    REPORT_MARGIN,
    CollectorDocs,
    CollectorError,
    CollectorUnit,
    Deadline,
    FailureKind,
)
from .failures import classify
from .httpjson import new_client, request_json

if TYPE_CHECKING:
    import httpx  # imported by transport.new_client (transport.py's module doc)
    from prometheus_client.core import Metric

    from ..probe import ProbeResult

log = logging.getLogger(__name__)

TOKEN_RENEW_MARGIN = 60.0
MAX_ENTRIES = 100


@dataclass(frozen=True)
class CloudData:
    fqdn: str  # the name looked up (normalised)
    #: The target's entry in the list; None when Citrix Cloud does not list it.
    server: CloudServerStatus | None
    listed_servers: int
    fetched_at: datetime  # UTC, when the shared list was fetched
    license_server_version: str | None = None


@dataclass(frozen=True)
class _Fetched:
    servers: dict[str, CloudServerStatus] | None
    error: str | None
    fetched_at: datetime
    fetched_mono: float
    kind: FailureKind | None = None


ListKey = tuple[str, str, str, Secret | None, Secret | None]


class _Entry:
    """The shared list of one customer (and API client), with single-flight fetching."""

    __slots__ = ("in_flight", "last", "token", "token_renew_at")

    def __init__(self) -> None:
        #: The fetch every probe of this customer awaits while it runs (on the event loop).
        self.in_flight: asyncio.Task[_Fetched] | None = None
        self.last: _Fetched | None = None
        self.token: str | None = None
        self.token_renew_at = 0.0


def _customer_id(value: object) -> str:
    text = non_empty(value)
    if not re.match(r"^[A-Za-z0-9_.-]{1,128}$", text):
        raise ValueError("expected the Citrix Cloud customer ID (letters, digits, '.', '_', '-')")
    return text


class CloudConfig(SectionModel):
    """Citrix Cloud's licensing API (experimental): one License Server list per customer."""

    input_keys: ClassVar[frozenset[str]] = frozenset(
        {"client_id_file", "client_id_env", "client_secret_file", "client_secret_env"}
    )

    customer_id: Annotated[str, PlainValidator(_customer_id)]
    client_id: SecretValue = Field(default=None, validate_default=True)
    client_secret: SecretValue = Field(default=None, validate_default=True)
    trust_url: HttpsBaseURL = "https://trust.citrixworkspacesapi.net"
    licensing_url: HttpsBaseURL = "https://licensing.citrixworkspacesapi.net"
    tls: TLSConfig = Field(default_factory=TLSConfig)
    cache_interval: PositiveCacheInterval = 900.0
    max_response_bytes: Bytes = 8 * 1024 * 1024

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        return read_secrets(data, info, ("client_id", "client_secret"))

    @field_validator("client_id", "client_secret")
    @classmethod
    def _required(cls, value: Secret | None, info: ValidationInfo) -> Secret | None:
        if value is None and info.context is not None:
            name = info.field_name
            raise refusal(f"Citrix Cloud API access needs {name}_file or {name}_env", key=None)
        return value


class CloudCollector(CollectorUnit[CloudData, CloudConfig]):
    name = "cloud"
    data_type = CloudData
    config_model = CloudConfig
    # Not cached per target by the probe: the shared list below is the cache.
    cached = False
    credentials = True
    docs = CollectorDocs(
        summary="Whether Citrix Cloud lists the License Server and hears from it, from one "
        "License Server list per customer (experimental)",
        families=tuple(f"{PREFIX}_cloud_{name}" for name in (
            "list_fetch_timestamp_seconds", "listed", "reporting", "ever_reported",
            "last_report_timestamp_seconds", "compliant",
        )),
    )

    def families(self, data: CloudData, result: ProbeResult) -> Iterator[Metric]:
        return cloud_families(data, result)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[ListKey, _Entry] = {}
        #: Fetches still running, referenced so that they are not garbage-collected.
        self._fetches: set[asyncio.Task[_Fetched]] = set()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> CloudData:
        """For callers outside the event loop."""
        return asyncio.run(self.collect_async(target, module, deadline))

    async def collect_async(
        self, target: TargetConfig, module: ModuleConfig, deadline: Deadline
    ) -> CloudData:
        config = module.cloud
        if config is None:
            raise CollectorError("the module has no cloud section", kind=FailureKind.INTERNAL)
        fetched = await self._shared_list(config, module.timeout, deadline)
        if fetched.servers is None:
            left = max(0.0, config.cache_interval - (time.monotonic() - fetched.fetched_mono))
            raise CollectorError(
                f"{fetched.error} (next attempt in {left:.0f}s)", kind=fetched.kind, logged=True
            )
        fqdn = normalise_fqdn(target.cloud_fqdn or target.address)
        return CloudData(
            fqdn=fqdn,
            server=fetched.servers.get(fqdn),
            listed_servers=len(fetched.servers),
            fetched_at=fetched.fetched_at,
        )

    # -- the shared list -------------------------------------------------------------------

    def _entry(self, config: CloudConfig) -> _Entry:
        key: ListKey = (config.trust_url, config.licensing_url, config.customer_id,
                        config.client_id, config.client_secret)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                entry = self._entries[key] = _Entry()
            return entry

    async def _shared_list(
        self, config: CloudConfig, timeout: float, deadline: Deadline
    ) -> _Fetched:
        entry = self._entry(config)
        loop = asyncio.get_running_loop()
        task = entry.in_flight
        if task is not None and task.get_loop() is not loop:
            task = None  # left by another loop (``collect`` outside the exporter's loop)
        started = task is None
        if task is None:
            last = entry.last
            if last is not None and time.monotonic() - last.fetched_mono < config.cache_interval:
                return last
            # This probe starts the fetch for everyone, as a task of its own: it goes on when
            # this probe's deadline passes and fills the list for the next probes. Like the
            # probe's own cache, it gets the module's whole timeout even if this scrape's
            # deadline is shorter.
            fetch_deadline = Deadline(max(deadline.at, time.monotonic() + timeout))
            task = entry.in_flight = loop.create_task(
                self._fetch_for_all(entry, config, fetch_deadline))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
        try:
            # Half the margin: a fetch cut at this probe's deadline reports first, with its
            # own reason.
            return await asyncio.wait_for(
                asyncio.shield(task), deadline.inner(REPORT_MARGIN / 2).remaining())
        except TimeoutError:
            # Logged (by the probe) for the probe that started the fetch only: the others
            # would repeat it once per target.
            raise CollectorError(
                "probe deadline reached while the Citrix Cloud list was being fetched (the "
                "fetch goes on for the next probes)", kind=FailureKind.TIMEOUT,
                logged=not started,
            ) from None

    async def _fetch_for_all(
        self, entry: _Entry, config: CloudConfig, deadline: Deadline
    ) -> _Fetched:
        try:
            servers = await self._fetch(entry, config, deadline.inner())
            fetched = _Fetched(servers, None, datetime.now(UTC), time.monotonic())
            log.info(
                "Citrix Cloud License Server list fetched",
                extra={"fields": {"customer_id": config.customer_id, "servers": len(servers)}},
            )
        except CollectorError as exc:
            fetched = _Fetched(None, str(exc), datetime.now(UTC), time.monotonic(), classify(exc))
            log.warning(
                "Citrix Cloud License Server list unavailable; retried after cache_interval",
                extra={"fields": {"customer_id": config.customer_id, "reason": str(exc),
                                  "retry_seconds": round(config.cache_interval)}},
            )
        except Exception as exc:  # never leave waiters without an answer
            fetched = _Fetched(None, f"{type(exc).__name__}: {exc}", datetime.now(UTC),
                               time.monotonic(), FailureKind.INTERNAL)
            log.warning("Citrix Cloud License Server list fetch crashed",
                        extra={"fields": {"customer_id": config.customer_id,
                                          "reason": fetched.error}})
            log.debug("details", exc_info=True)
        finally:
            if entry.in_flight is asyncio.current_task():
                entry.in_flight = None
        entry.last = fetched
        return fetched

    async def _fetch(
        self, entry: _Entry, config: CloudConfig, deadline: Deadline
    ) -> dict[str, CloudServerStatus]:
        url = f"{config.licensing_url}/{quote(config.customer_id, safe='')}/licenseservers"
        what = f"GET {url}"
        async with new_client(config.tls) as client:
            for attempt in (1, 2):
                token = await self._token(entry, client, config, deadline, renew=attempt == 2)
                try:
                    answer = await request_json(
                        client, "GET", url, deadline=deadline,
                        max_bytes=config.max_response_bytes,
                        headers={"Authorization": f"CwsAuth bearer={token}"},
                    )
                    break
                except HTTPStatusError as exc:
                    if exc.status == 401 and attempt == 1:
                        continue
                    if exc.status in (401, 403, 404):
                        raise CollectorError(
                            f"{exc}: Citrix Cloud does not give this API client the License "
                            "Server list (the licensing API is not documented for every "
                            "customer; see docs/controller-and-cloud.md)",
                            kind=FailureKind.AUTH,
                        ) from None
                    raise
            else:  # pragma: no cover - the loop always breaks or raises
                raise AssertionError("unreachable")
        try:
            return parse_license_servers(answer.body)
        except APIFormatError as exc:
            raise CollectorError(f"{what}: {exc}", kind=FailureKind.PARSE) from None

    @staticmethod
    async def _token(
        entry: _Entry, client: httpx.AsyncClient, config: CloudConfig, deadline: Deadline, *,
        renew: bool,
    ) -> str:
        # Only the one fetch in flight per entry gets here, so no further locking is needed.
        if not renew and entry.token is not None and time.monotonic() < entry.token_renew_at:
            return entry.token
        url = f"{config.trust_url}/root/tokens/clients"
        what = f"POST {url}"
        if config.client_id is None or config.client_secret is None:
            raise CollectorError(f"{what}: no API client configured", kind=FailureKind.AUTH)
        try:
            answer = await request_json(
                client, "POST", url, deadline=deadline,
                max_bytes=config.max_response_bytes,
                json_body={"ClientId": config.client_id.reveal(),
                           "ClientSecret": config.client_secret.reveal()},
            )
        except HTTPStatusError as exc:
            if exc.status in (400, 401, 403):
                raise CollectorError(
                    f"{what}: HTTP {exc.status}: Citrix Cloud rejected the API client",
                    kind=FailureKind.AUTH,
                ) from None
            raise
        try:
            token = parse_cloud_token(answer.body)
        except APIFormatError as exc:
            raise CollectorError(f"{what}: {exc}", kind=FailureKind.PARSE) from None
        lifetime = token.lifetime.total_seconds()
        entry.token = token.value
        entry.token_renew_at = time.monotonic() + lifetime - min(TOKEN_RENEW_MARGIN, lifetime / 10)
        return token.value



# ---------------------------------------------------------------------------------------------
# Citrix Cloud (experimental)

CLOUD_NOTE = (
    " From Citrix Cloud's License Server list, fetched once per cloud.cache_interval for all"
    " targets (see citrix_license_cloud_list_fetch_timestamp_seconds)."
)


def cloud_families(data: CloudData, result: ProbeResult) -> Iterator[Metric]:
    yield single(
        "cloud_list_fetch_timestamp_seconds",
        "When the exporter fetched the Citrix Cloud License Server list the cloud metrics of "
        "this target come from.",
        ts(data.fetched_at),
    )
    yield single(
        "cloud_listed",
        "1 if Citrix Cloud lists this License Server (matched by FQDN: the target's cloud_fqdn "
        "or address)." + CLOUD_NOTE,
        1.0 if data.server is not None else 0.0,
    )
    server = data.server
    if server is None:
        return
    if server.phoning_home is not None:
        yield single(
            "cloud_reporting",
            "1 if Citrix Cloud sees this License Server reporting (isPhoningHome)." + CLOUD_NOTE,
            1.0 if server.phoning_home else 0.0,
        )
    if server.ever_reported is not None:
        yield single(
            "cloud_ever_reported",
            "1 if Citrix Cloud has ever received data from this License Server "
            "(isEverReported; absent when the list does not say)." + CLOUD_NOTE,
            1.0 if server.ever_reported else 0.0,
        )
    if server.last_phoning_home is not None:
        yield single(
            "cloud_last_report_timestamp_seconds",
            "When Citrix Cloud last received data from this License Server "
            "(lastPhoningHomeTime, ISO 8601 or the US form; read only when isEverReported is "
            "not false). Absent when it never did." + CLOUD_NOTE,
            ts(server.last_phoning_home),
        )
    if server.compliant is not None:
        yield single(
            "cloud_compliant",
            "1 if Citrix Cloud considers this License Server compliant (isCompliant)."
            + CLOUD_NOTE,
            1.0 if server.compliant else 0.0,
        )
