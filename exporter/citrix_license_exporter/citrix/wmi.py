"""WS-Management (MS-WSMV) answers about WMI, turned into licensing data. Pure: bytes in, data out.

XML from the wire is parsed with defusedxml (no DTDs, no entity expansion) and only after a size
check, so a hostile or broken server cannot make the exporter expand entities or build a huge
tree. WMI instances arrive as ``<p:Class>`` elements whose children are the properties
(``xsi:nil="true"`` for null; CIM datetimes wrapped in ``<cim:Datetime>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..redaction import shorten
from .licensing import (
    DEFAULT_SERVICES,
    NOT_FOUND,
    PERMANENT,
    License,
    LicensePool,
    ParseError,
    ServiceSpec,
    ServiceState,
    assign_pool_ids,
    excerpt,
    parse_citrix_date,
    parse_pld,
)
from .peer_values import MAX_COUNT, clean_text, count_in_range

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsen": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
XSI_NIL = f"{{{NS['xsi']}}}nil"

WMI_BASE = "http://schemas.microsoft.com/wbem/wsman/1/wmi"
POOL_URI = f"{WMI_BASE}/root/CitrixLicensing/Citrix_GT_License_Pool"
LICENSE_URI = f"{WMI_BASE}/root/CitrixLicensing/Citrix_GT_License"
#: With a WQL filter, WinRM takes the namespace URI ending in ``/*``.
CIMV2_ALL_URI = f"{WMI_BASE}/root/cimv2/*"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"


def services_query(services: Iterable[ServiceSpec] = DEFAULT_SERVICES) -> str:
    """The WQL filter for the watched services, by name or display name. The names carry no
    quote or backslash (``parse_service_specs`` refuses them), so they need no escaping."""
    conditions = " OR ".join(
        f"Name = '{spec.name}' OR DisplayName = '{spec.name}'" for spec in services
    )
    return f"SELECT * FROM Win32_Service WHERE {conditions}"  # noqa: S608 (checked names)


# ---------------------------------------------------------------------------------------------
# Safe XML


def safe_fromstring(data: bytes, max_bytes: int) -> Element:
    """Parse an XML document from the wire: size-capped, no DTD, no entities."""
    if len(data) > max_bytes:
        raise ParseError(f"XML answer of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise ParseError("XML answer contains a DTD or entities (refused)") from None
    except SafeET.ParseError as exc:
        raise ParseError(f"XML answer is not well-formed ({exc})") from None
    return root


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# ---------------------------------------------------------------------------------------------
# Faults


@dataclass(frozen=True)
class WSManFault:
    subcode: str | None  # e.g. "w:AccessDenied"
    code: int | None  # WSManFault Code attribute (Win32 / HRESULT as unsigned decimal)
    reason: str
    provider_codes: tuple[int, ...] = ()

    #: WBEM_E_INVALID_NAMESPACE and WBEM_E_INVALID_CLASS (unsigned), as WMI reports them.
    INVALID_NAMESPACE = 0x8004100E
    INVALID_CLASS = 0x80041010
    ACCESS_DENIED_CODES = (5, 0x80070005, 0x80041003)

    @property
    def codes(self) -> tuple[int, ...]:
        return ((self.code,) if self.code is not None else ()) + self.provider_codes

    def is_access_denied(self) -> bool:
        return (self.subcode or "").endswith("AccessDenied") or any(
            c in self.ACCESS_DENIED_CODES for c in self.codes
        )

    def is_missing_namespace(self) -> bool:
        """ASSUMPTION: WinRM reports a missing namespace or class with WMI's own code in the
        fault (0x8004100E / 0x80041010) or the words "invalid namespace"/"invalid class"."""
        text = self.reason.lower()
        return (
            any(c in (self.INVALID_NAMESPACE, self.INVALID_CLASS) for c in self.codes)
            or "invalid namespace" in text
            or "invalid class" in text
        )


def _code(text: str | None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
    return number & 0xFFFFFFFF if number < 0 else number


def parse_fault(envelope: Element) -> WSManFault | None:
    """The SOAP/WS-Man fault in ``envelope``, or None when it carries none."""
    fault = envelope.find("s:Body/s:Fault", NS)
    if fault is None:
        return None
    subcode_el = fault.find("s:Code/s:Subcode/s:Value", NS)
    reason_el = fault.find("s:Reason/s:Text", NS)
    reason = (reason_el.text or "").strip() if reason_el is not None else ""
    detail = fault.find("s:Detail/wsmanfault:WSManFault", NS)
    code = None
    provider_codes: list[int] = []
    if detail is not None:
        code = _code(detail.get("Code"))
        message = detail.find("wsmanfault:Message", NS)
        if message is not None:
            texts = [t.strip() for t in message.itertext() if t.strip()]
            if texts:
                reason = " ".join(texts)
        for inner in detail.iter(f"{{{NS['wsmanfault']}}}WSManFault"):
            if inner is not detail and (inner_code := _code(inner.get("Code"))) is not None:
                provider_codes.append(inner_code)
    # WMI errors are also quoted as hex in the text: "...HRESULT 0x8004100e".
    for match in re.finditer(r"0x8004[0-9a-f]{4}", reason, re.IGNORECASE):
        provider_codes.append(int(match.group(0), 16))
    return WSManFault(
        subcode=subcode_el.text.strip() if subcode_el is not None and subcode_el.text else None,
        code=code,
        reason=shorten(reason, 300),
        provider_codes=tuple(provider_codes),
    )


# ---------------------------------------------------------------------------------------------
# Enumeration


Instance = Mapping[str, str | None]


@dataclass(frozen=True)
class EnumerationPage:
    instances: tuple[Instance, ...]
    context: str | None
    end_of_sequence: bool


def enumeration_page(envelope: Element) -> EnumerationPage:
    """The instances of an EnumerateResponse (with OptimizeEnumeration) or a PullResponse.

    ``envelope`` is the whole SOAP envelope or just its Body.
    """
    body = envelope if envelope.tag == f"{{{NS['s']}}}Body" else envelope.find("s:Body", NS)
    if body is None:
        raise ParseError("WS-Man answer has no SOAP Body")
    response = body.find("wsen:EnumerateResponse", NS)
    if response is None:
        response = body.find("wsen:PullResponse", NS)
    if response is None:
        found = local(body[0].tag) if len(body) else "nothing"
        raise ParseError(f"expected an EnumerateResponse or PullResponse, got {found}")
    context_el = response.find("wsen:EnumerationContext", NS)
    context = (context_el.text or "").strip() or None if context_el is not None else None
    end = (
        response.find("wsman:EndOfSequence", NS) is not None
        or response.find("wsen:EndOfSequence", NS) is not None
    )
    items = response.find("wsman:Items", NS)
    if items is None:
        items = response.find("wsen:Items", NS)
    instances = tuple(_instance(item) for item in items) if items is not None else ()
    return EnumerationPage(instances, context, end)


def _instance(item: Element) -> dict[str, str | None]:
    properties: dict[str, str | None] = {}
    for prop in item:
        name = local(prop.tag)
        if prop.get(XSI_NIL) == "true":
            value: str | None = None
        elif len(prop):
            # CIM datetime/interval wrappers: <cim:Datetime>2027-01-15T00:00:00Z</cim:Datetime>
            value = "".join(prop.itertext()).strip()
        else:
            value = (prop.text or "").strip()
        if name in properties and properties[name] is not None and value is not None:
            properties[name] = f"{properties[name]}\n{value}"  # array property: keep every value
        else:
            properties[name] = value
    return properties


# ---------------------------------------------------------------------------------------------
# Instances to licensing data


def _required(instance: Instance, name: str, where: str) -> str:
    value = instance.get(name)
    if value is None or value == "":
        raise ParseError(f"{where}: property {name} is missing")
    return value


def _count(instance: Instance, name: str, where: str) -> int:
    value = _required(instance, name, where)
    try:
        number = int(value)
    except ValueError:
        raise ParseError(f"{where}: {name} {excerpt(value)} is not an integer") from None
    if number < 0 and name != "Overdraft":
        raise ParseError(f"{where}: {name} is negative ({excerpt(str(number))})")
    # A sample is a float: a count beyond 2**53 (10**400 overflows) is no licence count.
    if not count_in_range(abs(number)):
        raise ParseError(f"{where}: {name} {excerpt(str(number))} is out of range "
                         f"(at most {MAX_COUNT})")
    return number


POOL_DISCRIMINATORS = ("VendorString", "DUP_GROUP", "HOST_BASED", "USER_BASED", "HOSTID",
                       "PLATFORMS", "FLOAT_OK")


def parse_pools(instances: Iterable[Instance]) -> tuple[LicensePool, ...]:
    pools = []
    for instance in instances:
        pld = clean_text(_required(instance, "PLD", "Citrix_GT_License_Pool"))
        where = f"Citrix_GT_License_Pool {excerpt(pld)}"
        sa = parse_citrix_date(instance.get("SubscriptionDate") or "", f"{where}: SubscriptionDate")
        pools.append(
            LicensePool(
                feature=parse_pld(pld),
                license_type=clean_text((instance.get("LicenseType") or "").strip()),
                installed=_count(instance, "Count", where),
                in_use=_count(instance, "InUseCount", where),
                available=_count(instance, "PooledAvailable", where),
                overdraft=_count(instance, "Overdraft", where),
                subscription_advantage=sa if isinstance(sa, datetime) else None,
                discriminator=tuple(instance.get(k) or "" for k in POOL_DISCRIMINATORS),
            )
        )
    return assign_pool_ids(pools)


def parse_licenses(instances: Iterable[Instance]) -> tuple[License, ...]:
    """License entries; permanent ones carry no expiry. Entries sharing feature and serial are
    merged, keeping the earliest expiry (one series per feature and serial)."""
    merged: dict[tuple[str, str], License] = {}
    for instance in instances:
        serial = clean_text(_required(instance, "SerialNumber", "Citrix_GT_License"))
        where = f"Citrix_GT_License {excerpt(serial)}"
        expiry_raw = parse_citrix_date(
            instance.get("ExpirationDate") or "", f"{where}: ExpirationDate"
        )
        if expiry_raw is None:
            raise ParseError(f"{where}: property ExpirationDate is missing")
        expiry = None if expiry_raw == PERMANENT else expiry_raw
        assert expiry is None or isinstance(expiry, datetime)
        item = License(serial=serial, feature=clean_text((instance.get("PLD") or "").strip()),
                       expiry=expiry)
        key = (item.feature, item.serial)
        previous = merged.get(key)
        if previous is None or (
            item.expiry is not None and (previous.expiry is None or item.expiry < previous.expiry)
        ):
            merged[key] = item
    return tuple(sorted(merged.values(), key=lambda x: (x.feature, x.serial)))


def parse_services(
    instances: Iterable[Instance], services: Iterable[ServiceSpec] = DEFAULT_SERVICES
) -> tuple[ServiceState, ...]:
    """The state of each watched service, matched by ``Name`` first, then by ``DisplayName``
    (both case-insensitive, as Windows compares them); a service WMI does not list is
    ``NotFound`` (not installed)."""
    by_name: dict[str, Instance] = {}
    by_display: dict[str, Instance] = {}
    for instance in instances:
        for key, index in (("Name", by_name), ("DisplayName", by_display)):
            value = instance.get(key)
            if value:
                index.setdefault(value.lower(), instance)
    result = []
    for spec in services:
        found = by_name.get(spec.name.lower()) or by_display.get(spec.name.lower())
        if found is None:
            result.append(ServiceState(spec.name, NOT_FOUND, required=spec.required))
            continue
        state = found.get("State")
        if not state:
            raise ParseError(f"Win32_Service {excerpt(spec.name)}: property State is missing")
        result.append(ServiceState(spec.name, state, found.get("StartMode"), spec.required))
    return tuple(result)
