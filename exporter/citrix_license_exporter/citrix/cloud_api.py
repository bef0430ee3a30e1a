"""Citrix Cloud's licensing API JSON, given a meaning. Pure: no I/O. EXPERIMENTAL.

Not a documented API for every customer: the shapes come from public partner scripts
(``StuartP-CSP/csp-lui-scripts``):

- ``POST https://trust.citrixworkspacesapi.net/root/tokens/clients`` with
  ``{"ClientId", "ClientSecret"}`` answers ``{"token": ..., "expiresIn": ...}`` (the scripts read
  ``token``; ``expiresIn``, seconds as a number or a string, is used when present).
- ``GET https://licensing.citrixworkspacesapi.net/{customerId}/licenseservers`` answers
  ``{"licenseServersStatus": [{"fqdn", "isPhoningHome", "lastPhoningHomeTime", "isCompliant",
  "isExpired", "daysToExpire", ...}]}``.

ASSUMED (no public schema): ``lastPhoningHomeTime`` is ISO 8601 (UTC when it has no offset);
the booleans are JSON booleans; property names match case-insensitively (PowerShell, which the
scripts use, does not care about case either).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
        last = entry.get("lastphoninghometime")
        if last is not None and not isinstance(last, str):
            raise APIFormatError(
                f"{what}.lastPhoningHomeTime: expected a time or null, got {_kind(last)}"
            )
        try:
            last_time = parse_timestamp(last) if last and last.strip() else None
        except APIFormatError as exc:
            raise APIFormatError(f"{what}.lastPhoningHomeTime: {exc}") from None
        status = CloudServerStatus(
            fqdn=fqdn.strip(),
            phoning_home=_opt_bool(entry, "isPhoningHome", what),
            last_phoning_home=last_time,
            compliant=_opt_bool(entry, "isCompliant", what),
            expired=_opt_bool(entry, "isExpired", what),
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
