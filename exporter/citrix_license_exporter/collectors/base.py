"""The contract between the probe and the collectors.

A collector fetches from one target and returns a plain data object. It names no metric:
``metrics.py`` turns the data into metric families. The probe runs each collector in a worker
thread and gives it a ``Deadline``; the collector must keep every socket timeout within
``deadline.remaining()`` so that its thread ends close to the deadline even when the probe has
already answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import ModuleConfig, TargetConfig


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


@dataclass(frozen=True)
class Deadline:
    """An absolute point in ``time.monotonic()`` time."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

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
    name: str
    #: Expensive collectors are cached per target for ``module.<name>.cache_interval``.
    cached: bool

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> Any:
        """Fetch from ``target``; raise CollectorError (or any exception) on failure."""
        ...
