"""What the WinRM collector learns about a License Server, as plain data, and the Citrix naming
and date conventions needed to read it.

Pure: no I/O. The formats that no public source pins down are ASSUMPTIONS, each kept in one
function here or in ``wmi.py`` / ``uploader_log.py`` / ``onbox.py`` and listed in
docs/windows-setup.md ("What to check on your first real server").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from .peer_values import clean_text


class ParseError(ValueError):
    """Input from the License Server that does not have the expected shape.

    The message is short, names the field and quotes at most a short excerpt of the value, so
    it can be logged as the collector's failure reason.
    """


def excerpt(text: str, limit: int = 40) -> str:
    """A short, printable quote of untrusted text for an error message."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return repr(cleaned + ("..." if len(text) > limit else ""))


# ---------------------------------------------------------------------------------------------
# The licensing Windows services

@dataclass(frozen=True)
class ServiceSpec:
    """A Windows service the WinRM collector watches: matched by Win32_Service ``Name`` or
    ``DisplayName`` (case-insensitive). ``required``: a server without it is broken (alert)."""

    name: str
    required: bool = True


#: The services of an 11.17.2 License Server (Win32_Service.Name -> DisplayName), as the
#: reference's "Evidence of 2026-12" (Services) gives them: the Licensing 11.17.2 build 44000
#: docs home page names "Citrix Web Services for Licensing, Citrix Licensing Support Service,
#: Citrix Licensing WMI, CITRIX vendor daemon"; community health-check scripts run against real
#: servers check CtxLSPortSvc, Citrix Licensing, Citrix_GTLicensingProv and
#: CitrixWebServicesForLicensing; an 11.14 install script gives the display names. Not here:
#: CitrixLicensingSupportService and CitrixLicensingConfigService, which appear only in old or
#: unverified scripts (docs/assumptions.md).
SERVICE_DISPLAY_NAMES: Mapping[str, str] = {
    "Citrix Licensing": "Citrix Licensing",
    "CitrixWebServicesforLicensing": "Citrix Web Services for Licensing",
    "Citrix_GTLicensingProv": "Citrix Licensing WMI",
    "CtxLSPortSvc": "Citrix Licensing Support Service",
}
DEFAULT_SERVICES: tuple[ServiceSpec, ...] = tuple(ServiceSpec(n) for n in SERVICE_DISPLAY_NAMES)
#: Service names of the default list, in the order they are reported.
LICENSING_SERVICES: tuple[str, ...] = tuple(SERVICE_DISPLAY_NAMES)

#: Win32_Service.State values (Microsoft's Win32_Service class docs) as label values, plus
#: ``not_installed`` for a service Windows does not list. One 0/1 series per state.
SERVICE_STATES: tuple[str, ...] = (
    "running", "stopped", "start_pending", "stop_pending", "continue_pending", "pause_pending",
    "paused", "unknown", "not_installed",
)
NOT_FOUND = "NotFound"
#: Windows service names are at most 256 characters (CreateService); display names too.
MAX_SERVICE_NAME = 256
_SERVICE_NAME = re.compile(r"^[^'\\\x00-\x1f\x7f]{1,256}$")


def parse_service_specs(raw: object) -> tuple[ServiceSpec, ...]:
    """The ``winrm.services`` setting: a list of names (required) or ``{name, required}``.

    Names go into a WQL string literal, so quotes, backslashes and control characters are
    refused rather than escaped. An empty list watches no service.
    """
    if not isinstance(raw, list):
        raise ValueError("expected a list of service names or {name, required} mappings")
    specs: list[ServiceSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"[{index}]"
        if isinstance(item, dict):
            unknown = set(item) - {"name", "required"}
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))} "
                                 "(allowed: name, required)")
            name, required = item.get("name"), item.get("required", True)
            if not isinstance(required, bool):
                raise ValueError(f"{where}.required: expected true or false")
        else:
            name, required = item, True
        if (not isinstance(name, str) or not _SERVICE_NAME.match(name) or not name.strip()
                or not name.isprintable()):
            raise ValueError(
                f"{where}: expected a service name or display name of 1-{MAX_SERVICE_NAME} "
                "characters without quotes, backslashes or control characters"
            )
        if name.lower() in seen:
            raise ValueError(f"{where}: service {name!r} is listed twice")
        seen.add(name.lower())
        specs.append(ServiceSpec(name, required))
    return tuple(specs)


@dataclass(frozen=True)
class ServiceState:
    name: str  # as configured (the ``service`` label)
    #: Win32_Service.State ("Running", "Stopped", ...), or "NotFound" when no such service.
    state: str
    start_mode: str | None = None
    required: bool = True

    @property
    def running(self) -> bool:
        return self.state == "Running"

    @property
    def installed(self) -> bool:
        return self.state != NOT_FOUND

    @property
    def state_label(self) -> str:
        """The state as one of SERVICE_STATES (anything Windows may add later: unknown)."""
        if not self.installed:
            return "not_installed"
        label = self.state.strip().lower().replace(" ", "_")
        return label if label in SERVICE_STATES else "unknown"


# ---------------------------------------------------------------------------------------------
# Feature names (PLD): PRODUCT_EDITION_MODEL, e.g. XDT_PLT_UD, MPS_ENT_CCU

PRODUCTS = {"XDT": "virtual_apps_desktops", "MPS": "virtual_apps"}
EDITIONS = {"PLT": "premium", "ENT": "advanced", "ADV": "advanced", "STD": "standard"}
MODELS = {"UD": "user_device", "CCU": "concurrent", "CCS": "concurrent"}


@dataclass(frozen=True)
class Feature:
    pld: str
    product: str
    edition: str
    model: str


def parse_pld(pld: str) -> Feature:
    """Split a PLD into product, edition and model; unknown codes are kept as they are.

    A PLD with other than three parts keeps its first part as product and its last as model
    (two or more parts), leaving the rest in edition.
    """
    parts = pld.strip().split("_")
    if len(parts) >= 3:
        product, edition, model = parts[0], "_".join(parts[1:-1]), parts[-1]
    elif len(parts) == 2:
        product, edition, model = parts[0], "", parts[1]
    else:
        product, edition, model = parts[0], "", ""
    return Feature(
        pld=pld,
        product=PRODUCTS.get(product, product),
        edition=EDITIONS.get(edition, edition),
        model=MODELS.get(model, model),
    )


# ---------------------------------------------------------------------------------------------
# Dates. ASSUMPTION (see docs/windows-setup.md): the formats accepted here.

PERMANENT: Literal["permanent"] = "permanent"

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_COMPACT = re.compile(r"^(\d{4})\.?(\d{2})(\d{2})$")  # 20270115 or 2027.0115
_CIM = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.\d{6}([+-])(\d{3})$")
_FLEX = re.compile(r"^(\d{1,2})-([a-z]{3})-(\d{1,4})$", re.IGNORECASE)  # FlexNet: 15-jan-2027
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def parse_citrix_date(text: str, field_name: str) -> datetime | Literal["permanent"] | None:
    """A date from WMI as an aware UTC datetime; ``PERMANENT``; or None when empty.

    Accepted: ``YYYYMMDD``, ``YYYY.MMDD`` (the SA date style of license files), ISO 8601
    (``xs:dateTime`` / ``xs:date`` as WS-Man renders CIM datetimes), CIM DMTF datetimes
    (``yyyymmddHHMMSS.mmmmmm+UUU``) and FlexNet ``d-mmm-yyyy``. ``permanent``, a FlexNet year 0
    (``1-jan-0``) and years from 9999 mean permanent. Anything else raises ParseError naming the
    field, so a format the exporter does not know yet is reported, not silently dropped.
    """
    value = text.strip()
    if not value:
        return None
    if value.lower() in ("permanent", "perm", "never"):
        return PERMANENT
    try:
        if match := _COMPACT.match(value):
            year, month, day = (int(g) for g in match.groups())
            return _day(year, month, day)
        if match := _ISO.match(value):
            year, month, day = (int(g) for g in match.groups()[:3])
            hh, mm, ss = (int(g) if g else 0 for g in match.groups()[3:6])
            moment = _day(year, month, day)
            if moment == PERMANENT:
                return PERMANENT
            assert isinstance(moment, datetime)
            offset = _offset_minutes(match.group(7))
            return moment.replace(hour=hh, minute=mm, second=ss) - timedelta(minutes=offset)
        if match := _CIM.match(value):
            year, month, day, hh, mm, ss = (int(g) for g in match.groups()[:6])
            moment = _day(year, month, day)
            if moment == PERMANENT:
                return PERMANENT
            assert isinstance(moment, datetime)
            offset = int(match.group(8)) * (1 if match.group(7) == "+" else -1)
            return moment.replace(hour=hh, minute=mm, second=ss) - timedelta(minutes=offset)
        if match := _FLEX.match(value):
            day_s, month_s, year_s = match.groups()
            flex_month = _MONTHS.get(month_s.lower())
            if flex_month is not None:
                year = int(year_s)
                if year == 0:
                    return PERMANENT
                if year < 100:  # FlexNet two-digit years
                    year += 2000
                return _day(year, flex_month, int(day_s))
    except (ValueError, OverflowError):  # day 31 of February; year 1 minus an offset
        pass
    raise ParseError(f"{field_name}: date {excerpt(value)} not understood")


def _day(year: int, month: int, day: int) -> datetime | Literal["permanent"]:
    if year >= 9999 or year == 0:
        return PERMANENT
    return datetime(year, month, day, tzinfo=UTC)


def _offset_minutes(zone: str | None) -> int:
    if not zone or zone == "Z":
        return 0
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:]))


# ---------------------------------------------------------------------------------------------
# License pools and licenses


@dataclass(frozen=True)
class LicensePool:
    """One Citrix_GT_License_Pool instance."""

    feature: Feature
    license_type: str
    installed: int
    in_use: int
    available: int
    overdraft: int
    subscription_advantage: datetime | None
    #: Other properties that tell pools of one feature apart (VendorString, HOSTID, ...).
    discriminator: tuple[str, ...] = ()
    #: A stable id, unique within one server: see assign_pool_ids().
    pool: str = ""

    def purchased(self, count_includes_overdraft: bool) -> int:
        """Licenses bought: Count without the overdraft allowance when Count includes it (the
        evidence-based default, docs/assumptions.md), else Count. Never below 0, and a negative
        Overdraft is no allowance (it must not raise the purchased count and hide overdraft)."""
        if not count_includes_overdraft:
            return self.installed
        return max(0, self.installed - max(0, self.overdraft))


def _pool_base(pool: LicensePool) -> str:
    sa = pool.subscription_advantage.strftime("%Y-%m-%d") if pool.subscription_advantage else "none"
    return f"{pool.feature.pld}/{pool.license_type or 'unknown'}/{sa}"


def assign_pool_ids(pools: Iterable[LicensePool]) -> tuple[LicensePool, ...]:
    """Give every pool a ``pool`` id that is unique and stable across scrapes.

    The id is ``PLD/license type/SA date``; pools that share all three get a short hash of the
    other distinguishing properties appended, and pools identical in all of those a counter in
    a deterministic (sorted) order. Nothing depends on the order WMI returns instances in.
    """
    items = sorted(pools, key=lambda p: (_pool_base(p), p.discriminator, p.installed, p.in_use))
    by_base: dict[str, list[LicensePool]] = {}
    for pool in items:
        by_base.setdefault(_pool_base(pool), []).append(pool)
    result: list[LicensePool] = []
    for base, group in by_base.items():
        if len(group) == 1:
            result.append(replace(group[0], pool=clean_text(base)))
            continue
        seen: dict[str, int] = {}
        for pool in group:
            digest = hashlib.sha256("\x1f".join(pool.discriminator).encode()).hexdigest()[:8]
            ident = f"{base}/{digest}"
            seen[ident] = seen.get(ident, 0) + 1
            if seen[ident] > 1:
                ident = f"{ident}-{seen[ident]}"
            result.append(replace(pool, pool=clean_text(ident)))
    return tuple(result)


@dataclass(frozen=True)
class License:
    """One Citrix_GT_License instance (a license file entry)."""

    serial: str
    feature: str  # the PLD when the instance carries one, else ""
    expiry: datetime | None  # None: permanent


# ---------------------------------------------------------------------------------------------
# Telemetry uploads


@dataclass(frozen=True)
class UploadAttempt:
    time: float  # Unix seconds
    code: str
    upload_type: str
    message: str = ""

    @property
    def success(self) -> bool:
        return self.code == "CTX_UPLOADER_SUCCESS"


@dataclass(frozen=True)
class Bundle:
    name: str
    time: float  # Unix seconds from the file name


@dataclass(frozen=True)
class TelemetrySummary:
    """Upload health from the end of log_ctxuploader.log and the waiting bundles."""

    last_success: float | None
    last_attempt: float | None
    last_attempt_success: bool | None
    #: Failed compliance uploads after the last success seen in the log tail (a lower bound when
    #: the tail holds no success at all).
    consecutive_failures: int
    pending_bundles: int
    oldest_pending_bundle: float | None


def summarize_telemetry(
    attempts: Sequence[UploadAttempt], bundles: Sequence[Bundle]
) -> TelemetrySummary:
    """ASSUMPTION: a bundle is pending when its name's time is later than the last success
    (after a success, the server keeps that upload's bundle, which is older than the success)."""
    ordered = sorted(attempts, key=lambda a: a.time)
    successes = [a.time for a in ordered if a.success]
    last_success = successes[-1] if successes else None
    last = ordered[-1] if ordered else None
    failures = sum(
        1 for a in ordered if not a.success and (last_success is None or a.time > last_success)
    )
    pending = [b for b in bundles if last_success is None or b.time > last_success]
    return TelemetrySummary(
        last_success=last_success,
        last_attempt=last.time if last else None,
        last_attempt_success=last.success if last else None,
        consecutive_failures=failures,
        pending_bundles=len(pending),
        oldest_pending_bundle=min((b.time for b in pending), default=None),
    )


# ---------------------------------------------------------------------------------------------
# Everything the WinRM collector returns


@dataclass(frozen=True)
class WinRMData:
    license_server_version: str | None
    #: Where the version came from: "registry", "uninstall" or None.
    version_source: str | None
    services: tuple[ServiceState, ...]
    pools: tuple[LicensePool, ...]
    licenses: tuple[License, ...]
    attempts: tuple[UploadAttempt, ...]
    bundles: tuple[Bundle, ...]
    telemetry: TelemetrySummary
    telemetry_manual: bool
    #: Whether the uploader log existed; its size in bytes (None: no log file).
    uploader_log_bytes: int | None = None
    #: The module's winrm.count_includes_overdraft: how citrix_license_purchased is derived.
    count_includes_overdraft: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
