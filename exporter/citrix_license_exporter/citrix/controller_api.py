"""The Delivery Controller REST API's JSON (``/cvad/manage``), given a meaning. Pure: no I/O.

Field names follow the public OpenAPI models in ``citrix/citrix-daas-rest-go``
(``citrixorchestration``, API version ``devportal-onprem-ga``):

- ``POST /Tokens`` answers ``{"Token", "Principal", "UserId", "CustomerId", "ExpiresAt"}``
  (the shape community clients parse; the token model itself is not in the public models).
- ``GET /Sites`` answers a collection ``{"Items": [SiteResponseModel{Id, Name}], ...}``.
- ``GET /Sites/{id}`` answers ``SiteDetailResponseModel``: ``LicenseServerName``,
  ``LicenseServerPort``, ``LicensingGracePeriodActive``, ``LicensingGraceHoursLeft``,
  ``LicensingOutOfBoxGracePeriodActive``, ``PeakConcurrentLicenseUsers``,
  ``TotalUniqueLicenseUsers``, ``LicensedSessionsActive``, ``LicensingAlerts[]``
  (``LicensingAlertResponseModel``: ``Priority``, ``AlertLevel``, ``TypeCode``, ``Title``, ...).
- The ``LicenseServerStatus`` enum is **not** a field of the site. In the public models it is
  ``LicenseInformationModel.LicenseServerStatus``, reached as ``LicenseInformation`` of
  ``LicenseSummaryResponseModel``, the answer of the "license overview" call (tech preview path
  ``/{customerid}/{siteid}/Licensing/LicenseOverview``). See ``license_server_status()`` for
  what is assumed about it.

Every nullable field stays ``None`` when the controller sends null or leaves it out, so a
metric can be left out instead of showing a made-up 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from ..redaction import shorten
from .peer_values import MAX_COUNT, add_hours, clean_text, count_in_range

#: ``LicenseServerStatus`` (citrix-daas-rest-go ``model_license_server_status.go``), in order.
LICENSE_SERVER_STATUSES: tuple[str, ...] = (
    "Compatible",
    "Incompatible",
    "Inaccessible",
    "InternalError",
    "LSVersionIncompatible",
    "CloudNotRegistered",
    "LasNotOnboarded",
    "InternetNotConnected",
    "LasCompatible",
    "NoInventory",
    "UnknownStatus",
)
#: ``LicensingAlertLevel`` values; anything else is counted as ``Unknown``.
ALERT_LEVELS: tuple[str, ...] = ("Unknown", "Info", "Alert", "Alarm")
#: Used when the token answer carries no (readable) ``ExpiresAt``: re-login after this long,
#: or earlier on a 401.
DEFAULT_TOKEN_LIFETIME = timedelta(minutes=15)
#: Longer stated lifetimes are cut to this (the 401 path re-logs in anyway).
MAX_TOKEN_LIFETIME = timedelta(hours=24)
#: LicensingGraceHoursLeft beyond this (ten years; the grace periods last days, 30 at most)
#: is no remaining time but a sentinel, such as .NET's int.MaxValue: the end is unknown.
MAX_GRACE_HOURS = 10 * 366 * 24


class APIFormatError(ValueError):
    """An answer that does not have the documented shape. The message names the field and
    never quotes more than a short excerpt, so it is safe as a logged failure reason."""


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    #: How long the token stays valid, measured on the controller's own clock when its
    #: ``Date`` header is known (so a skewed exporter clock does not matter).
    lifetime: timedelta


@dataclass(frozen=True)
class SiteRef:
    id: str
    name: str


@dataclass(frozen=True)
class SiteLicensing:
    """One site's licensing state as the site sees it."""

    id: str
    name: str
    license_server_name: str | None = None
    license_server_port: int | None = None
    #: LicensingGracePeriodActive: the (supplemental) licensing grace period is active.
    grace_active: bool | None = None
    grace_hours_left: int | None = None
    out_of_box_grace_active: bool | None = None
    peak_concurrent_users: int | None = None
    unique_users: int | None = None
    licensed_sessions_active: int | None = None
    #: Active licensing alerts, counted per level (every level of ALERT_LEVELS present).
    alerts: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(ALERT_LEVELS, 0))
    #: One of LICENSE_SERVER_STATUSES, or None when the controller does not say.
    license_server_status: str | None = None
    #: The status as sent, when it is not one of LICENSE_SERVER_STATUSES (then the status
    #: above is UnknownStatus).
    unrecognised_status: str | None = None

    def grace_end(self, fetched_at: datetime) -> datetime | None:
        """When the grace period ends: the fetch time plus LicensingGraceHoursLeft; None when
        no grace period is active or the hours are not given."""
        if not self.grace_active or self.grace_hours_left is None:
            return None
        return add_hours(fetched_at, self.grace_hours_left)


# ---------------------------------------------------------------------------------------------
# Field readers


def _object(doc: object, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise APIFormatError(f"{what}: expected a JSON object, got {_kind(doc)}")
    return doc


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _opt_bool(doc: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = doc.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise APIFormatError(f"{what}.{key}: expected true, false or null, got {_kind(value)}")


def _opt_int(
    doc: Mapping[str, Any], key: str, what: str, low: int = 0, high: int = MAX_COUNT
) -> int | None:
    """A whole number, or None when null or outside ``low``..``high``: a number outside its
    domain (a count of 10**400, a sentinel such as -1 or int.MaxValue) is left out like a null,
    never turned into a sample or a date it cannot be."""
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (
        # (an int is never converted to float here: 10**400 would overflow)
        isinstance(value, float) and (not math.isfinite(value) or value != int(value))
    ):
        raise APIFormatError(f"{what}.{key}: expected an integer or null, got {_kind(value)}")
    number = int(value)
    return number if count_in_range(number, low, high) else None


def _opt_str(doc: Mapping[str, Any], key: str, what: str) -> str | None:
    value = doc.get(key)
    if value is None or isinstance(value, str):
        return value
    raise APIFormatError(f"{what}.{key}: expected a string or null, got {_kind(value)}")


def _req_str(doc: Mapping[str, Any], key: str, what: str) -> str:
    value = _opt_str(doc, key, what)
    if not value:
        raise APIFormatError(f"{what}.{key}: required, missing or empty")
    return value


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 as .NET writes it (``2025-01-31T10:00:00Z``, ``...+01:00``, 7-digit fractions);
    a time without an offset is taken as UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Python before 3.11 accepted only 3 or 6 fraction digits; .NET writes up to 7.
    head, dot, rest = value.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise APIFormatError(f"not an ISO 8601 time in range: {shorten(text, 40)!r}") from None


# ---------------------------------------------------------------------------------------------
# Answers


def parse_token(doc: object, server_date: str | None, now: datetime) -> Token:
    """The answer of ``POST /Tokens``. ``server_date`` is the HTTP ``Date`` header (if any),
    ``now`` the exporter's UTC time when the answer arrived."""
    body = _object(doc, "token answer")
    value = body.get("Token")
    if not isinstance(value, str) or not value.strip():
        raise APIFormatError("token answer: Token missing or not a string")
    lifetime = DEFAULT_TOKEN_LIFETIME
    expires = body.get("ExpiresAt")
    if isinstance(expires, str) and expires.strip():
        reference = now
        if server_date:
            try:
                reference = parsedate_to_datetime(server_date).astimezone(UTC)
            except (TypeError, ValueError, IndexError, OverflowError):
                reference = now
        lifetime = min(parse_timestamp(expires) - reference, MAX_TOKEN_LIFETIME)
    elif expires is not None:
        raise APIFormatError(f"token answer: ExpiresAt: expected a time, got {_kind(expires)}")
    return Token(value=value.strip(), lifetime=lifetime)


def parse_site_list(doc: object) -> list[SiteRef]:
    """The answer of ``GET /Sites``: a collection ``{"Items": [...]}``."""
    body = _object(doc, "site list")
    items = body.get("Items")
    if not isinstance(items, list):
        raise APIFormatError(f"site list: Items: expected an array, got {_kind(items)}")
    sites = []
    for i, item in enumerate(items):
        what = f"site list.Items[{i}]"
        entry = _object(item, what)
        site_id = _req_str(entry, "Id", what)
        if not site_id.isascii():
            try:
                site_id.encode("utf-8")  # it goes into the next request's path
            except UnicodeEncodeError:
                raise APIFormatError(
                    f"{what}.Id: not valid Unicode (a lone UTF-16 surrogate)"
                ) from None
        sites.append(SiteRef(id=site_id, name=clean_text(_req_str(entry, "Name", what))))
    return sites


def select_sites(sites: Sequence[SiteRef], wanted: str | None) -> list[SiteRef]:
    """The target's site (by name or Id, case-insensitive), or every site when none is set.
    Raises LookupError naming the sites there are."""
    if wanted is None:
        return list(sites)
    key = wanted.casefold()
    chosen = [s for s in sites if key in (s.name.casefold(), s.id.casefold())]
    if not chosen:
        there = ", ".join(s.name for s in sites) or "none"
        raise LookupError(f"site {wanted!r} not found (the controller reports: {there})")
    return chosen


def count_alerts(alerts: object, what: str) -> dict[str, int]:
    counts = dict.fromkeys(ALERT_LEVELS, 0)
    if alerts is None:
        return counts
    if not isinstance(alerts, list):
        raise APIFormatError(f"{what}: expected an array or null, got {_kind(alerts)}")
    for i, alert in enumerate(alerts):
        entry = _object(alert, f"{what}[{i}]")
        level = entry.get("AlertLevel")
        counts[level if isinstance(level, str) and level in counts else "Unknown"] += 1
    return counts


def license_server_status(
    site: Mapping[str, Any], overview: Mapping[str, Any] | None
) -> tuple[str | None, str | None]:
    """The site's ``LicenseServerStatus``: (one of LICENSE_SERVER_STATUSES or None, the raw
    value when it was not recognised).

    THE ASSUMPTION, in this one place: the public models carry the status only as
    ``LicenseInformation.LicenseServerStatus`` of the license overview answer
    (``LicenseSummaryResponseModel``); the exporter reads it from there. As a fallback it also
    accepts a ``LicenseServerStatus`` field directly on the site detail, in case a controller
    version puts it there. Neither present: None (the metric is left out, nothing is made up).
    A value outside the documented set counts as ``UnknownStatus``; the raw value is returned
    so the collector can log it.
    """
    raw: object = None
    if overview is not None:
        information = overview.get("LicenseInformation")
        if information is not None:
            raw = _object(information, "license overview.LicenseInformation").get(
                "LicenseServerStatus"
            )
    if raw is None:
        raw = site.get("LicenseServerStatus")
    if raw is None:
        return None, None
    if not isinstance(raw, str):
        raise APIFormatError(f"LicenseServerStatus: expected a string, got {_kind(raw)}")
    for status in LICENSE_SERVER_STATUSES:
        if raw.casefold() == status.casefold():
            return status, None
    return "UnknownStatus", clean_text(raw, 64)


def parse_site(detail: object, overview: object = None) -> SiteLicensing:
    """``GET /Sites/{id}`` (SiteDetailResponseModel) plus, when read, the site's license
    overview (LicenseSummaryResponseModel)."""
    site = _object(detail, "site")
    what = "site"
    info: Mapping[str, Any] | None = None
    summary: Mapping[str, Any] | None = None
    if overview is not None:
        summary = _object(overview, "license overview")
        raw_info = summary.get("LicenseInformation")
        if raw_info is not None:
            info = _object(raw_info, "license overview.LicenseInformation")
    status, unrecognised = license_server_status(site, summary)
    out_of_box = _opt_bool(site, "LicensingOutOfBoxGracePeriodActive", what)
    if out_of_box is None and info is not None:
        out_of_box = _opt_bool(info, "OutOfBoxGracePeriodActive", "license overview")
    server = _opt_str(site, "LicenseServerName", what)
    return SiteLicensing(
        # Label text: valid UTF-8 (JSON allows lone surrogates) and bounded in length.
        id=clean_text(_req_str(site, "Id", what)),
        name=clean_text(_req_str(site, "Name", what)),
        license_server_name=None if server is None else clean_text(server),
        license_server_port=_opt_int(site, "LicenseServerPort", what, 1, 65535),
        grace_active=_opt_bool(site, "LicensingGracePeriodActive", what),
        grace_hours_left=_opt_int(site, "LicensingGraceHoursLeft", what, 0, MAX_GRACE_HOURS),
        out_of_box_grace_active=out_of_box,
        peak_concurrent_users=_opt_int(site, "PeakConcurrentLicenseUsers", what),
        unique_users=_opt_int(site, "TotalUniqueLicenseUsers", what),
        licensed_sessions_active=_opt_int(site, "LicensedSessionsActive", what),
        alerts=count_alerts(site.get("LicensingAlerts"), "site.LicensingAlerts"),
        license_server_status=status,
        unrecognised_status=unrecognised,
    )


def unique_site_labels(sites: Sequence[SiteLicensing]) -> list[str]:
    """The ``site`` label per site: its name, or ``name (id)`` where names repeat (site names
    are not guaranteed unique; duplicate label sets would break the exposition)."""
    names = [s.name for s in sites]
    labels = [s.name if names.count(s.name) == 1 else clean_text(f"{s.name} ({s.id})")
              for s in sites]
    # A controller that repeats a site (same name and Id) must not repeat a series either.
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique
