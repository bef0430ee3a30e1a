"""Citrix Cloud's licensing API JSON, given a meaning. Pure: no I/O. EXPERIMENTAL.

Not a documented API for every customer: the shapes come from public partner scripts
(``StuartP-CSP/csp-lui-scripts``):

- ``POST https://trust.citrixworkspacesapi.net/root/tokens/clients`` with
  ``{"ClientId", "ClientSecret"}`` answers ``{"token": ..., "expiresIn": ...}`` (the scripts read
  ``token``; ``expiresIn``, seconds as a number or a string, is used when present).
- ``GET https://licensing.citrixworkspacesapi.net/{customerId}/licenseservers`` answers
  ``{"licenseServersStatus": [{"fqdn", "isPhoningHome", "lastPhoningHomeTime", "isCompliant",
  "isExpired", "daysToExpire", ...}]}``.

``lastPhoningHomeTime`` appears in two forms in Citrix's own mock data (reference file,
"Evidence of 2026-12", Delivery Controller and Citrix Cloud): the US form ``12/30/2015
12:21:15`` and ISO 8601 ``2018-03-27T11:12:04.00+00:00``; both are read (``parse_cloud_time``).
The community scripts check ``isEverReported`` before they read it; so does the exporter: a
server that never reported has no last report time, whatever the field holds.

ASSUMED (no public schema): a time without an offset (the US form always) is UTC; the US form
may carry ``AM``/``PM`` (.NET's en-US format does); the booleans are JSON booleans; property
names match case-insensitively (PowerShell, which the scripts use, does not care about case).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .controller_api import MAX_TOKEN_LIFETIME, APIFormatError, parse_timestamp

DEFAULT_TOKEN_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class CloudToken:
    value: str = field(repr=False)
    lifetime: timedelta


@dataclass(frozen=True)
class CloudServerStatus:
    fqdn: str
    phoning_home: bool | None = None
    last_phoning_home: datetime | None = None
    compliant: bool | None = None
    expired: bool | None = None
    #: isEverReported: None when the list does not say.
    ever_reported: bool | None = None


def normalise_fqdn(name: str) -> str:
    return name.strip().rstrip(".").casefold()


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _folded(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {key.casefold(): value for key, value in doc.items() if isinstance(key, str)}


def _opt_bool(doc: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = doc.get(key.casefold())
    if value is None or isinstance(value, bool):
        return value
    raise APIFormatError(f"{what}.{key}: expected true, false or null, got {_kind(value)}")


_US_TIME = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d{1,7})?)?(?:\s*([AaPp])\.?[Mm]\.?)?)?$"
)


def parse_cloud_time(text: str) -> datetime:
    """``lastPhoningHomeTime``: ISO 8601 (``2018-03-27T11:12:04.00+00:00``) or the US form
    ``MM/DD/YYYY HH:MM:SS`` (``12/30/2015 12:21:15``, optionally with AM/PM), as aware UTC.
    Raises APIFormatError for anything else, or a date that does not exist."""
    value = text.strip()
    match = _US_TIME.match(value)
    if match is None:
        return parse_timestamp(value)
    month, day, year = (int(g) for g in match.groups()[:3])
    hour, minute, second = (int(g) if g else 0 for g in match.groups()[3:6])
    half = (match.group(7) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            raise APIFormatError(f"not a US date and time in range: {text[:40]!r}")
        hour = hour % 12 + (12 if half == "p" else 0)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise APIFormatError(f"not a US date and time in range: {text[:40]!r}") from None


def parse_cloud_token(doc: object) -> CloudToken:
    if not isinstance(doc, dict):
        raise APIFormatError(f"token answer: expected a JSON object, got {_kind(doc)}")
    body = _folded(doc)
    value = body.get("token")
    if not isinstance(value, str) or not value.strip():
        raise APIFormatError("token answer: token missing or not a string")
    lifetime = DEFAULT_TOKEN_LIFETIME
    raw = body.get("expiresin")
    if raw is not None:
        try:
            seconds = float(raw) if not isinstance(raw, bool) else float("nan")
        except (TypeError, ValueError):
            seconds = float("nan")
        if not 0 < seconds < float("inf"):  # also rejects NaN
            raise APIFormatError(f"token answer: expiresIn: expected seconds, got {_kind(raw)}")
        lifetime = timedelta(seconds=min(seconds, MAX_TOKEN_LIFETIME.total_seconds()))
    return CloudToken(value=value.strip(), lifetime=lifetime)


def parse_license_servers(doc: object) -> dict[str, CloudServerStatus]:
    """The ``licenseservers`` answer, by normalised FQDN. Entries without an FQDN cannot be
    matched to a target and are skipped; a repeated FQDN keeps the most recent report."""
    if not isinstance(doc, dict):
        raise APIFormatError(f"license server list: expected a JSON object, got {_kind(doc)}")
    items = _folded(doc).get("licenseserversstatus")
    if not isinstance(items, list):
        raise APIFormatError(
            f"license server list: licenseServersStatus: expected an array, got {_kind(items)}"
        )
    servers: dict[str, CloudServerStatus] = {}
    for i, item in enumerate(items):
        what = f"licenseServersStatus[{i}]"
        if not isinstance(item, dict):
            raise APIFormatError(f"{what}: expected an object, got {_kind(item)}")
        entry = _folded(item)
        fqdn = entry.get("fqdn")
        if fqdn is None or (isinstance(fqdn, str) and not fqdn.strip()):
            continue
        if not isinstance(fqdn, str):
            raise APIFormatError(f"{what}.fqdn: expected a string, got {_kind(fqdn)}")
        ever = _opt_bool(entry, "isEverReported", what)
        last = entry.get("lastphoninghometime")
        if ever is False:
            # The scripts look at the time only when isEverReported says there is one: a
            # server that never reported may carry a placeholder (e.g. .NET's MinValue).
            last = None
        if last is not None and not isinstance(last, str):
            raise APIFormatError(
                f"{what}.lastPhoningHomeTime: expected a time or null, got {_kind(last)}"
            )
        try:
            last_time = parse_cloud_time(last) if last and last.strip() else None
        except APIFormatError as exc:
            raise APIFormatError(f"{what}.lastPhoningHomeTime: {exc}") from None
        if last_time is not None and last_time.year == 1:
            last_time = None  # .NET DateTime.MinValue: "never", not a time in year 1
        status = CloudServerStatus(
            fqdn=fqdn.strip(),
            phoning_home=_opt_bool(entry, "isPhoningHome", what),
            last_phoning_home=last_time,
            compliant=_opt_bool(entry, "isCompliant", what),
            expired=_opt_bool(entry, "isExpired", what),
            ever_reported=ever,
        )
        key = normalise_fqdn(fqdn)
        previous = servers.get(key)
        if (
            previous is None
            or previous.last_phoning_home is None
            or (last_time is not None and last_time > previous.last_phoning_home)
        ):
            servers[key] = status
    return servers
