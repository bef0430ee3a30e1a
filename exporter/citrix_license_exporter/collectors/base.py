"""The contract between the probe and the collectors.

A collector is one unit (``CollectorUnit``): its name, its section of a module (a settings
model), its fetch, the metric families it makes of what it fetched, and its docs entry. The
units the exporter runs are listed in ``registry.py``; the configuration, the prober and the
exposition find them there, so adding one touches no other module (docs/collectors.md).

The fetch returns a typed data object (``DataT``). The probe runs it on its event loop
(``collect_async``) or in a worker thread (``collect``) and gives it a ``Deadline``; a blocking
collector must keep every socket timeout within ``deadline.remaining()`` so that its thread
ends close to the deadline even when the probe has already answered.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from pydantic import BaseModel

    from ..config import ModuleConfig, TargetConfig
    from ..probe import ProbeResult


class FailureKind(StrEnum):
    """Why a collector failed, as a small fixed set that alerts and runbooks can branch on.

    The set is bounded on purpose: it becomes a label value in the exposition.
    """

    TIMEOUT = "timeout"  # the peer did not answer within the probe's deadline
    REFUSED = "refused"  # the connection was refused or reset
    DNS = "dns"  # the name did not resolve
    TLS = "tls"  # handshake or certificate verification failed
    AUTH = "auth"  # the peer refused the credentials
    # Kerberos, where "auth" would send the admin to the wrong place: the credentials may be
    # fine while the KDC cannot be reached or a clock is off (collectors/kerberos.py).
    KDC_UNREACHABLE = "kdc_unreachable"  # no KDC of the realm answered
    CLOCK_SKEW = "clock_skew"  # this host's clock and the KDC's or server's differ too much
    PROTOCOL = "protocol"  # the peer answered, but not as the protocol says (HTTP status, fault)
    LIMIT = "limit"  # the answer exceeded a configured size or count limit
    PARSE = "parse"  # the answer was well-formed transport but its content could not be read
    INTERNAL = "internal"  # a defect in the exporter itself (an unexpected exception)


class CollectorError(Exception):
    """A failure with a reason safe to log: it must never contain a secret.

    ``kind``: the failure's class (None: to be classified by the probe from the cause).
    ``logged=True``: the collector has already logged this failure itself (e.g. the cloud
    collector, once per interval for all targets), so the probe logs it at debug level only.
    """

    def __init__(
        self, message: str, *, kind: FailureKind | None = None, logged: bool = False
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.logged = logged


#: A collector ends its own waits this long (at most a quarter of the time left) before the
#: probe's deadline (``Deadline.inner``), so that its reason, naming what it was waiting for, or
#: its partial result reaches the probe before the probe's own cut at the deadline, which only
#: says "probe deadline exceeded".
REPORT_MARGIN = 0.1


@dataclass(frozen=True)
class Deadline:
    """An absolute point in ``time.monotonic()`` time."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def inner(self, margin: float = REPORT_MARGIN) -> Deadline:
        """This deadline less ``margin``, at most a quarter of the time left (REPORT_MARGIN)."""
        return Deadline(self.at - min(margin, self.remaining() / 4))

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def check(self, what: str) -> float:
        """The remaining seconds, or a CollectorError naming ``what`` when none are left."""
        left = self.remaining()
        if left <= 0.0:
            raise CollectorError(f"probe deadline reached before {what}", kind=FailureKind.TIMEOUT)
        return left


class VersionSource(Protocol):
    """Collector data that knows the License Server's version string hands it over here.

    The probe feeds the first version it finds into the release policy (citrix/policy.py).
    """

    @property
    def license_server_version(self) -> str | None: ...


class Collector(Protocol):
    """What the prober runs: a name, whether it is cached, and a fetch."""

    @property
    def name(self) -> str: ...
    #: Expensive collectors are cached per target for ``module.<name>.cache_interval``.
    @property
    def cached(self) -> bool: ...

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> object:
        """Fetch from ``target``; raise CollectorError (or any exception) on failure."""
        ...


@dataclass(frozen=True)
class CollectorDocs:
    """A collector's entry in the generated reference (docs/collectors.md) and what
    docs/metrics.md must describe (tests/unit/test_docs.py checks both)."""

    #: One sentence: what the collector reads, from where.
    summary: str
    #: Every metric family the collector may expose, full names (``citrix_license_port_up``).
    families: tuple[str, ...]


DataT = TypeVar("DataT")
SectionT = TypeVar("SectionT", bound="BaseModel")


class CollectorUnit(ABC, Generic[DataT, SectionT]):
    """Base of the registered collectors. A subclass sets the class attributes, implements
    ``collect`` (blocking) or ``collect_async`` (on the event loop) returning ``DataT``, and
    ``families``. It is registered with one line in ``registry.py``."""

    #: The name modules list under ``collectors:`` and the key of its module section.
    name: str
    #: The type ``collect`` returns; the exposition refuses anything else.
    data_type: type[DataT]
    #: The model of ``modules.<module>.<name>``; None: the collector takes no section.
    config_model: type[SectionT] | None = None
    #: True: an absent section means the model's defaults. False: a module that enables the
    #: collector must have the section.
    section_optional: bool = False
    #: Cached per target for the section's ``cache_interval`` (see probe.py).
    cached: bool = False
    #: The collector sends the section's credentials to the target (config.resolve).
    credentials: bool = False
    docs: CollectorDocs

    def settings(self, module: ModuleConfig) -> SectionT | None:
        """This collector's section of ``module``, typed (None: the module has none)."""
        section = module.section(self.name)
        if self.config_model is not None and isinstance(section, self.config_model):
            return section
        return None

    @abstractmethod
    def families(self, data: DataT, result: ProbeResult) -> Iterable[Metric]:
        """The metric families of one fetch's data (no I/O)."""

    def exposition(self, data: object, result: ProbeResult) -> Iterable[Metric]:
        """``families`` of what the prober handed on, checked to be this collector's data."""
        if not isinstance(data, self.data_type):
            raise TypeError(
                f"the {self.name} collector handed on {type(data).__name__}, "
                f"not {self.data_type.__name__}"
            )
        return self.families(data, result)
