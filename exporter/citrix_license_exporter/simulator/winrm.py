"""A SIMULATED WinRM (WS-Management) endpoint of a License Server, on 127.0.0.1.

It implements, after Microsoft's MS-WSMV, exactly the operations the exporter's client uses:
WS-Enumeration Enumerate and Pull of the WMI classes ``Citrix_GT_License_Pool``,
``Citrix_GT_License`` and (WQL-filtered) ``Win32_Service``; and the WinRS shell operations
Create, Command, Receive, Signal and Delete. Authentication is real: HTTP Basic, or NTLM through
an NTLM acceptor from pyspnego, or Kerberos through pyspnego's GSSAPI acceptor with the service's
keytab (from a real KDC: tests start one with k5test), with WinRM message encryption
(``multipart/encrypted``) over plain HTTP and channel binding (Extended Protection) over HTTPS.
The only command it runs is the exporter's own on-box script (citrix/onbox.py), recognised by
exact match; anything else fails the way cmd.exe fails on an unknown command.

Scenario section (all keys optional)::

    winrm:
      auth: ntlm              # ntlm | basic | kerberos: the one method the endpoint accepts
                              # (kerberos: WinRMSimulator(keytab=...) holds the service key)
      scheme: http            # http | https
      telemetry: automatic    # the target's exporter setting: automatic | manual
      fault: none             # see FAULTS below
      version: "11.17.2.0 build 56200"          # registry Install\\Version (null: absent)
      display_version: "11.17.2.0 build 56200"  # Uninstall DisplayVersion (default: version)
      services: {Citrix Licensing: Stopped}     # Win32_Service.State; NotInstalled: absent
                              # unlisted: Running. The four services of 11.17.2 (name and
                              # display name, citrix/licensing.py SERVICE_DISPLAY_NAMES) are
                              # always there; other names listed here are added.
      pools:                  # Citrix_GT_License_Pool instances
        - {pld: XDT_PLT_UD, purchased: 500, overdraft: 50, in_use: 412,
           license_type: Retail, sa_days: 200}  # SA date: now + sa_days (or sa: "2027.0115")
        # WMI Count: `count` as given, or from `purchased`: purchased + overdraft (as the
        # License Server's console counts them: docs/assumptions.md, Overdraft)
      count_includes_overdraft: true  # false: Count = purchased; the exporter module of
                              # this server is then configured the same way
      licenses:               # Citrix_GT_License instances
        - {serial: LA-0001, pld: XDT_PLT_UD, expires_days: 200}  # or expires: permanent
      uploads: {days: 30, failing_days: 0, hour_offset: 1}  # daily compliance uploads
      uploader_log: null      # literal log text instead of the generated one
      page_size: 32000        # the server's MaxBatchItems: instances per Enumerate/Pull
                              # answer, at most the MaxElements asked for and what fits in
                              # the MaxEnvelopeSize (Windows' default, MS-WSMV 2.2.4.10)

Times in scenarios are relative to the moment the simulator starts (``now``), so tests can
compute what the exporter must show.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import spnego
import spnego.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..citrix.licensing import SERVICE_DISPLAY_NAMES
from ..citrix.onbox import HEADER, match_script
from ..citrix.wmi import CIMV2_ALL_URI, LICENSE_URI, POOL_URI, WMI_BASE
from .scenario import Scenario, ScenarioError

HOST = "127.0.0.1"
USERNAME = "CORP\\svc-citrix-monitor"
#: The password of the simulated account. SIMULATED: not a secret of any real system.
PASSWORD = "Simulated-Password-1!"  # noqa: S105 (simulated account)
WRONG_PASSWORD = "Not-The-Password-2?"  # noqa: S105 (simulated account)
LS_PATH = "C:\\Program Files (x86)\\Citrix\\Licensing\\LS"
MACHINE = "ls-simulated.example.invalid"

FAULTS = (
    "none",
    "wrong_password",     # the exporter's module is given a wrong password
    "access_denied",      # WMI root\CitrixLicensing denies the account
    "namespace_missing",  # WMI root\CitrixLicensing does not exist (licensing not installed)
    "garbage_xml",        # the pool enumeration answers with broken XML
    "huge_answer",        # ... with a 50 MB body (Content-Length declared)
    "huge_chunked",       # ... with a 50 MB chunked body (no Content-Length)
    "slow_drip",          # ... one byte every 0.2 s
    "reset",              # ... half an answer, then a TCP reset
    "xml_bomb",           # ... an entity-expansion document
    "auth_loop",          # every authentication token is answered with 401 and a new token
    "garbage_token",      # the first 401 carries a token that is not NTLM or Kerberos at all
)
#: What ``garbage_token`` sends: an NTLM signature, then a message type no NTLM has ("garb").
GARBAGE_TOKEN = b"NTLMSSP\x00garbage, not a token"
HUGE_BYTES = 50 * 1024 * 1024

# Namespaces (prefixes as Windows uses them)
S = "http://www.w3.org/2003/05/soap-envelope"
A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
N = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
#: How many instances one Enumerate or Pull answer carries, as a Windows WinRM service decides
#: it (MS-WSMV 2.2.4.10 ConfigType and 3.1.4.1.7; DMTF DSP0226 8.2.3): at most the client's
#: MaxElements (1 when the request names none), at most the service's MaxBatchItems (default
#: 32000) and no more than fit in the client's MaxEnvelopeSize (itself capped by
#: MaxEnvelopeSizekb, default 500). An Enumerate without OptimizeEnumeration carries none.
#: Whether a real License Server fills its answers this far is docs/assumptions.md's item
#: "WMI answer pages".
MAX_BATCH_ITEMS = 32000
MAX_ENVELOPE_SIZE = 500 * 1024
#: What the SOAP envelope around the items takes, kept free of the client's MaxEnvelopeSize.
ENVELOPE_OVERHEAD = 4096
X = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
F = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CIM = "http://schemas.dmtf.org/wbem/wscim/1/common"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"

ENUMERATE = f"{N}/Enumerate"
PULL = f"{N}/Pull"
CREATE = f"{X}/Create"
DELETE = f"{X}/Delete"
COMMAND = f"{RSP}/Command"
RECEIVE = f"{RSP}/Receive"
SIGNAL = f"{RSP}/Signal"
DONE = f"{RSP}/CommandState/Done"


# ---------------------------------------------------------------------------------------------
# The scenario section


@dataclass(frozen=True)
class PoolSpec:
    pld: str
    count: int
    in_use: int
    available: int
    overdraft: int
    license_type: str
    sa: str | None  # literal SubscriptionDate text
    sa_days: float | None


@dataclass(frozen=True)
class LicenseSpec:
    serial: str
    pld: str | None
    expires: str | None  # literal ExpirationDate text ("permanent", "20270115")
    expires_days: float | None


@dataclass(frozen=True)
class WinRMScenario:
    auth: str = "ntlm"
    scheme: str = "http"
    telemetry: str = "automatic"
    fault: str = "none"
    version: str | None = "11.17.2.0 build 56200"
    display_version: str | None = "11.17.2.0 build 56200"
    services: Mapping[str, str] = field(default_factory=dict)
    pools: tuple[PoolSpec, ...] = ()
    licenses: tuple[LicenseSpec, ...] = ()
    upload_days: int = 0
    failing_days: int = 0
    hour_offset: float = 1.0
    uploader_log: str | None = None
    page_size: int = MAX_BATCH_ITEMS
    count_includes_overdraft: bool = True


_SECTION_KEYS = {
    "auth", "scheme", "telemetry", "fault", "version", "display_version", "services", "pools",
    "licenses", "uploads", "uploader_log", "page_size", "count_includes_overdraft",
}


def parse_winrm_section(raw: object, source: str) -> WinRMScenario:
    where = f"{source}: winrm"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be a mapping")
    unknown = set(raw) - _SECTION_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")

    def choice(key: str, options: tuple[str, ...], default: str) -> str:
        value = raw.get(key, default)
        if value not in options:
            raise ScenarioError(f"{where}.{key}: {value!r} (one of {', '.join(options)})")
        return str(value)

    version = raw.get("version", WinRMScenario.version)
    includes = raw.get("count_includes_overdraft", True)
    if not isinstance(includes, bool):
        raise ScenarioError(f"{where}.count_includes_overdraft: true or false")
    pools = tuple(
        _pool(p, f"{where}.pools[{i}]", includes) for i, p in enumerate(raw.get("pools") or [])
    )
    licenses = tuple(
        _license(x, f"{where}.licenses[{i}]") for i, x in enumerate(raw.get("licenses") or [])
    )
    services = raw.get("services") or {}
    if not isinstance(services, dict) or not all(isinstance(v, str) for v in services.values()):
        raise ScenarioError(f"{where}.services: a mapping of service name to state")
    uploads = raw.get("uploads") or {}
    if not isinstance(uploads, dict) or set(uploads) - {"days", "failing_days", "hour_offset"}:
        raise ScenarioError(f"{where}.uploads: keys days, failing_days, hour_offset")
    return WinRMScenario(
        auth=choice("auth", ("ntlm", "basic", "kerberos"), "ntlm"),
        scheme=choice("scheme", ("http", "https"), "http"),
        telemetry=choice("telemetry", ("automatic", "manual"), "automatic"),
        fault=choice("fault", FAULTS, "none"),
        version=None if version is None else str(version),
        display_version=(
            str(raw["display_version"]) if raw.get("display_version") is not None
            else (None if "display_version" in raw else (None if version is None else str(version)))
        ),
        services={str(k): str(v) for k, v in services.items()},
        pools=pools,
        licenses=licenses,
        upload_days=int(uploads.get("days", 0)),
        failing_days=int(uploads.get("failing_days", 0)),
        hour_offset=float(uploads.get("hour_offset", 1.0)),
        uploader_log=raw.get("uploader_log"),
        page_size=max(1, int(raw.get("page_size", MAX_BATCH_ITEMS))),
        count_includes_overdraft=includes,
    )


def _pool(raw: object, where: str, count_includes_overdraft: bool = True) -> PoolSpec:
    if not isinstance(raw, dict) or "pld" not in raw or ("count" in raw) == ("purchased" in raw):
        raise ScenarioError(f"{where}: needs pld and one of count, purchased")
    overdraft, in_use = int(raw.get("overdraft", 0)), int(raw.get("in_use", 0))
    if "count" in raw:
        count = int(raw["count"])
    else:  # WMI Count includes the overdraft allowance, as the evidence suggests (by default)
        count = int(raw["purchased"]) + (overdraft if count_includes_overdraft else 0)
    return PoolSpec(
        pld=str(raw["pld"]),
        count=count,
        in_use=in_use,
        available=int(raw.get("available", max(0, count - in_use))),
        overdraft=overdraft,
        license_type=str(raw.get("license_type", "Retail")),
        sa=None if raw.get("sa") is None else str(raw["sa"]),
        sa_days=None if raw.get("sa_days") is None else float(raw["sa_days"]),
    )


def _license(raw: object, where: str) -> LicenseSpec:
    if not isinstance(raw, dict) or "serial" not in raw:
        raise ScenarioError(f"{where}: needs serial")
    return LicenseSpec(
        serial=str(raw["serial"]),
        pld=None if raw.get("pld") is None else str(raw["pld"]),
        expires=None if raw.get("expires") is None else str(raw["expires"]),
        expires_days=None if raw.get("expires_days") is None else float(raw["expires_days"]),
    )


# ---------------------------------------------------------------------------------------------
# What the server holds, at a fixed "now"


def _day(now: float, days: float) -> dt.datetime:
    moment = dt.datetime.fromtimestamp(now + days * 86400, dt.UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Upload:
    time: int
    success: bool
    bundle: str


class ServerState:
    """The simulated License Server's data, derived from the scenario at ``now``."""

    def __init__(self, scenario: WinRMScenario, now: float) -> None:
        self.scenario = scenario
        self.now = now
        self.uploads = self._uploads()

    # WMI ------------------------------------------------------------------------------------

    def sa_date(self, pool: PoolSpec) -> str | None:
        if pool.sa is not None:
            return pool.sa
        if pool.sa_days is not None:
            return _day(self.now, pool.sa_days).strftime("%Y.%m%d")
        return None

    def expiry(self, spec: LicenseSpec) -> str:
        if spec.expires is not None:
            return spec.expires
        if spec.expires_days is not None:
            return _day(self.now, spec.expires_days).strftime("%Y%m%d")
        return "permanent"

    def pool_instances(self) -> list[dict[str, str | None]]:
        return [
            {
                "Count": str(p.count), "DUP_GROUP": "UD" if p.pld.endswith("_UD") else "",
                "FLOAT_OK": "true", "HOST_BASED": "", "HOSTID": "",
                "InUseCount": str(p.in_use), "LicenseType": p.license_type,
                "Overdraft": str(p.overdraft), "PLATFORMS": "", "PLD": p.pld,
                "PLDFullName": f"SIMULATED {p.pld}", "PooledAvailable": str(p.available),
                "SubscriptionDate": self.sa_date(p), "USER_BASED": "",
                "VendorString": f";LT={p.license_type};GP=720;CL=VP,ENT,ADV,STD,AST;SA=1;",
            }
            for p in self.scenario.pools
        ]

    def license_instances(self) -> list[dict[str, str | None]]:
        return [
            {"ExpirationDate": self.expiry(x), "PLD": x.pld, "SerialNumber": x.serial}
            for x in self.scenario.licenses
        ]

    def service_instances(self, names: Iterable[str]) -> list[dict[str, str | None]]:
        """The services whose Name or DisplayName the WQL filter names (case-insensitive)."""
        wanted = {n.lower() for n in names}
        installed = dict(SERVICE_DISPLAY_NAMES)
        for extra in self.scenario.services:
            if extra not in installed and extra.lower() not in {
                d.lower() for d in SERVICE_DISPLAY_NAMES.values()
            }:
                installed[extra] = extra
        result: list[dict[str, str | None]] = []
        for name, display in installed.items():
            state = self.scenario.services.get(name, "Running")
            if not {name.lower(), display.lower()} & wanted or state == "NotInstalled":
                continue
            result.append({
                "AcceptPause": "false", "AcceptStop": str(state == "Running").lower(),
                "Caption": display, "DisplayName": display, "Name": name,
                "StartMode": "Auto", "Started": str(state == "Running").lower(),
                "State": state, "Status": "OK",
            })
        return result

    # Files ----------------------------------------------------------------------------------

    def _uploads(self) -> list[Upload]:
        s = self.scenario
        uploads = []
        for k in range(s.upload_days - 1, -1, -1):
            t = int(self.now - k * 86400 - s.hour_offset * 3600)
            uploads.append(
                Upload(time=t, success=k >= s.failing_days, bundle=f"upload_{t - 2}.zip")
            )
        return uploads

    def bundles(self) -> list[str]:
        """After a success only its bundle stays; failed ones pile up until the next success."""
        names: list[str] = []
        for upload in self.uploads:
            if upload.success:
                names = [upload.bundle]
            else:
                names.append(upload.bundle)
        return names

    def uploader_log(self) -> bytes:
        if self.scenario.uploader_log is not None:
            return self.scenario.uploader_log.encode("utf-8")
        lines = ["SIMULATED log_ctxuploader.log (format beyond the result block is invented)"]
        for upload in self.uploads:
            stamp = dt.datetime.fromtimestamp(upload.time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"[{stamp}] Uploading {LS_PATH}\\resource\\usage\\{upload.bundle}")
            if upload.success:
                code, msg = "CTX_UPLOADER_SUCCESS", ""
                lines.append(f"[{stamp}] Upload successful")
            else:
                code, msg = "CTX_UPLOADER_ERROR_CONNECT", "Could not connect to cis.citrix.com"
                lines.append(f"[{stamp}] Upload failed: {msg}")
            lines.append(
                f"<CtxUploaderResult><Code>{code}</Code><Msg>{msg}</Msg><t>{upload.time}</t>"
                "<UploadType>CTX_UPLOAD_TYPE_COMPLIANCE</UploadType></CtxUploaderResult>"
            )
            lines.append(f"Finish time UTC={stamp}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def onbox_stdout(self, tail_bytes: int) -> bytes:
        def b64(text: str | None) -> str:
            return "-" if not text else base64.b64encode(text.encode("utf-8")).decode("ascii")

        log = self.uploader_log()
        tail = log[-tail_bytes:]
        out = [
            HEADER,
            f"registry_version {b64(self.scenario.version)}",
            f"uninstall_version {b64(self.scenario.display_version)}",
            f"ls {b64(LS_PATH)} 1",
            f"log {len(log)} {base64.b64encode(tail).decode('ascii')}",
        ]
        out += [f"file {b64(name)} 48213" for name in self.bundles()]
        out.append("end")
        return ("\r\n".join(out) + "\r\n").encode("ascii")


# ---------------------------------------------------------------------------------------------
# NTLM accounts: pyspnego's acceptor reads them from the file named by NTLM_USER_FILE.


class _NTLMAccounts:
    _lock = threading.Lock()
    _path: str | None = None

    @classmethod
    def ensure(cls) -> None:
        """Write the simulated account once per process and point NTLM_USER_FILE at it."""
        with cls._lock:
            if cls._path is None:
                fd, path = tempfile.mkstemp(prefix="sim-ntlm-users-", suffix=".txt")
                domain, user = USERNAME.split("\\", 1)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(f"{domain}:{user}:{PASSWORD}\n")
                cls._path = path
                atexit.register(_remove_quietly, path)
            os.environ["NTLM_USER_FILE"] = cls._path


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# ---------------------------------------------------------------------------------------------
# TLS: one certificate per process for 127.0.0.1


_CERT_LOCK = threading.Lock()
_CERT: tuple[bytes, bytes, bytes] | None = None  # cert PEM, key PEM, cert DER


def certificate() -> tuple[bytes, bytes, bytes]:
    global _CERT
    with _CERT_LOCK:
        if _CERT is None:
            key = ec.generate_private_key(ec.SECP256R1())
            now = dt.datetime.now(dt.UTC)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SIMULATED WinRM")])
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.SubjectAlternativeName([
                        x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost"),
                    ]),
                    critical=False,
                )
                .sign(key, hashes.SHA256())
            )
            _CERT = (
                cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
                cert.public_bytes(serialization.Encoding.DER),
            )
        return _CERT


# ---------------------------------------------------------------------------------------------
# SOAP


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{S}" xmlns:a="{A}" xmlns:x="{X}" xmlns:w="{W}" '
        f'xmlns:n="{N}" xmlns:rsp="{RSP}" xmlns:xsi="{XSI}" xmlns:cim="{CIM}">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault_body(subcode: str, code: int, message: str, provider_code: int | None = None) -> str:
    inner = escape(message)
    if provider_code is not None:
        inner = (
            '<f:ProviderFault provider="WMI Provider" '
            'path="%systemroot%\\system32\\WsmWmiPl.dll">'
            f'<f:WSManFault xmlns:f="{F}" Code="{provider_code}" Machine="{MACHINE}">'
            f"<f:Message>{escape(message)}</f:Message></f:WSManFault></f:ProviderFault>"
        )
    return (
        f"<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>{subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escape(message)}</s:Text>'
        f'</s:Reason><s:Detail><f:WSManFault xmlns:f="{F}" Code="{code}" Machine="{MACHINE}">'
        f"<f:Message>{inner}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )


def _instance_xml(class_uri: str, cls: str, props: Mapping[str, str | None]) -> str:
    parts = [f'<p:{cls} xmlns:p="{class_uri}" xsi:type="p:{cls}_Type">']
    for key, value in props.items():
        if value is None:
            parts.append(f'<p:{key} xsi:nil="true"/>')
        else:
            parts.append(f"<p:{key}>{escape(value)}</p:{key}>")
    parts.append(f"</p:{cls}>")
    return "".join(parts)


class _SoapFault(Exception):
    def __init__(self, body: str, status: int = 500) -> None:
        super().__init__("fault")
        self.body = body
        self.status = status


@dataclass
class _Request:
    action: str
    resource_uri: str
    message_id: str
    selectors: dict[str, str]
    body: Element
    max_envelope_size: int = MAX_ENVELOPE_SIZE


def _parse_request(data: bytes) -> _Request:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except Exception:
        raise _SoapFault(fault_body("w:InvalidMessage", 2150858817,
                                    "The request is not a valid SOAP envelope."), 400) from None

    def text(path: str) -> str:
        el = root.find(path, {"s": S, "a": A, "w": W})
        return (el.text or "").strip() if el is not None else ""

    selectors = {
        el.get("Name", ""): (el.text or "").strip()
        for el in root.iterfind("s:Header/w:SelectorSet/w:Selector", {"s": S, "w": W})
    }
    body = root.find(f"{{{S}}}Body")
    return _Request(
        action=text("s:Header/a:Action"),
        resource_uri=text("s:Header/w:ResourceURI"),
        message_id=text("s:Header/a:MessageID"),
        selectors=selectors,
        body=body if body is not None else Element("empty"),
        max_envelope_size=min(_count(text("s:Header/w:MaxEnvelopeSize"), MAX_ENVELOPE_SIZE),
                              MAX_ENVELOPE_SIZE),
    )


def _count(text: str, default: int) -> int:
    """A positive count from a request element, or ``default`` if absent or unreadable."""
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else default


# ---------------------------------------------------------------------------------------------
# The endpoint


@dataclass
class _Command:
    stdout: bytes
    stderr: bytes
    exit_code: int
    sent: int = 0


class WinRMSimulator:
    """One simulated WinRM listener. ``url`` is what the exporter's ``winrm_url`` points at."""

    def __init__(self, scenario: WinRMScenario, name: str = "simulated",
                 now: float | None = None, keytab: str | None = None) -> None:
        self.scenario = scenario
        self.name = name
        self.state = ServerState(scenario, time.time() if now is None else now)
        self._lock = threading.Lock()
        self._enumerations: dict[str, list[str]] = {}
        self._shells: dict[str, dict[str, _Command]] = {}
        self.requests: list[str] = []  # actions received, for tests
        self.transports: list[str] = []  # "encrypted" or "plain" per SOAP message, for tests
        self.auth_tokens = 0  # authentication tokens received (Authorization headers), for tests
        self.principals: list[str] = []  # Kerberos client principals accepted, for tests
        self.stopped = threading.Event()
        self._tls: ssl.SSLContext | None = None
        self._channel_bindings: bytes | None = None
        if scenario.auth == "ntlm":
            _NTLMAccounts.ensure()
        if scenario.auth == "kerberos":
            if keytab is None:
                raise ValueError("a Kerberos endpoint needs the service's keytab")
            # MIT's acceptor reads the default keytab, named by this variable (per process, as
            # NTLM_USER_FILE is): one realm per test session.
            os.environ["KRB5_KTNAME"] = f"FILE:{keytab}"
        if scenario.scheme == "https":
            cert_pem, key_pem, cert_der = certificate()
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "c.pem").write_bytes(cert_pem)
                Path(tmp, "k.pem").write_bytes(key_pem)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(str(Path(tmp, "c.pem")), str(Path(tmp, "k.pem")))
            self._tls = context
            # RFC 5929 tls-server-end-point: the hash of the certificate (SHA-256 here).
            self._channel_bindings = b"tls-server-end-point:" + hashlib.sha256(cert_der).digest()
        self._server = _Server((HOST, 0), _Handler, self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"sim-winrm-{name}", daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scenario.scheme}://{HOST}:{self.port}/wsman"

    def reconfigure(self, **changes: Any) -> None:
        """Answer from now on as ``dataclasses.replace(scenario, **changes)`` would, with times
        relative to now (e.g. ``version="11.17.2.0 build 56200"``, ``failing_days=0``)."""
        scenario = dataclasses.replace(self.scenario, **changes)
        state = ServerState(scenario, time.time())
        # Requests read both attributes once each; assigning them together is atomic enough.
        self.scenario, self.state = scenario, state

    @property
    def open_shells(self) -> int:
        with self._lock:
            return len(self._shells)

    def close(self) -> None:
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()

    # -- authentication -----------------------------------------------------------------------

    def new_context(self) -> Any:
        """An acceptor for the scenario's method (NTLM or Kerberos), bound to the TLS channel."""
        bindings = None
        if self._channel_bindings is not None:
            bindings = spnego.channel_bindings.GssChannelBindings(
                application_data=self._channel_bindings
            )
        protocol = "kerberos" if self.scenario.auth == "kerberos" else "ntlm"
        return spnego.server(protocol=protocol, channel_bindings=bindings)

    def kerberos_error_token(self, token: bytes) -> bytes | None:
        """MIT's KRB-ERROR for a refused AP-REQ (clock skew, expired ticket, ...), which the
        401 carries as Windows does, so the client can tell why. python-gssapi's step returns
        the acceptor's error token and defers the error (its documented default). The AP-REQ
        is checked again without a replay cache: the first check already recorded it."""
        import gssapi
        import gssapi.raw

        bindings = None
        if self._channel_bindings is not None:
            bindings = gssapi.raw.ChannelBindings(application_data=self._channel_bindings)
        try:
            creds = gssapi.Credentials(usage="accept", store={"rcache": "none:"})
            out: bytes | None = gssapi.SecurityContext(
                usage="accept", creds=creds, channel_bindings=bindings).step(token)
        except gssapi.raw.GSSError:
            return None
        return out

    def basic_ok(self, header: str) -> bool:
        try:
            user, _, password = base64.b64decode(header).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user.lower() == USERNAME.lower() and password == PASSWORD

    # -- operations ---------------------------------------------------------------------------

    def fault_for_pools(self) -> str | None:
        """The connection-level fault this scenario injects into the pool enumeration."""
        fault = self.scenario.fault
        return fault if fault in ("garbage_xml", "huge_answer", "huge_chunked", "slow_drip",
                                  "reset", "xml_bomb") else None

    def handle(self, request: _Request) -> tuple[str, str]:
        """(response action, body XML) for one request, or raise _SoapFault."""
        with self._lock:
            self.requests.append(request.action.rsplit("/", 1)[-1])
        if request.action == ENUMERATE:
            return f"{N}/EnumerateResponse", self._enumerate(request)
        if request.action == PULL:
            return f"{N}/PullResponse", self._pull(request)
        if request.resource_uri == SHELL_URI:
            return self._shell(request)
        raise _SoapFault(fault_body("w:ActionNotSupported", 2150858776,
                                    "The action is not supported by the service."))

    def _wmi_namespace_faults(self) -> None:
        if self.scenario.fault == "access_denied":
            raise _SoapFault(fault_body("w:AccessDenied", 5, "Access is denied. "))
        if self.scenario.fault == "namespace_missing":
            raise _SoapFault(fault_body(
                "w:InternalError", 2150858752,
                "The WS-Management service cannot process the request. "
                "The WMI service returned an 'invalid namespace' error. ",
                provider_code=0x8004100E,
            ))

    def _enumerate(self, request: _Request) -> str:
        uri = request.resource_uri
        if uri == POOL_URI:
            self._wmi_namespace_faults()
            items = [_instance_xml(POOL_URI, "Citrix_GT_License_Pool", i)
                     for i in self.state.pool_instances()]
        elif uri == LICENSE_URI:
            self._wmi_namespace_faults()
            items = [_instance_xml(LICENSE_URI, "Citrix_GT_License", i)
                     for i in self.state.license_instances()]
        elif uri == CIMV2_ALL_URI:
            filter_el = request.body.find(f"{{{N}}}Enumerate/{{{W}}}Filter")
            query = (filter_el.text or "") if filter_el is not None else ""
            if not re.match(r"^\s*SELECT \* FROM Win32_Service WHERE ", query, re.IGNORECASE):
                raise _SoapFault(fault_body("w:CannotProcessFilter", 2150858804,
                                            "The filter is not supported by the simulator."))
            # Name = '...' and DisplayName = '...' conditions alike.
            names = re.findall(r"\b(?:Display)?Name\s*=\s*'([^']*)'", query)
            class_uri = f"{WMI_BASE}/root/cimv2/Win32_Service"
            items = [_instance_xml(class_uri, "Win32_Service", i)
                     for i in self.state.service_instances(names)]
        else:
            raise _SoapFault(fault_body(
                "w:InvalidResourceURI", 2150858778,
                "The WS-Management service cannot process the request because the resource "
                "URI is not valid.",
            ))
        enumerate_el = request.body.find(f"{{{N}}}Enumerate")
        optimized = (enumerate_el is not None
                     and enumerate_el.find(f"{{{W}}}OptimizeEnumeration") is not None)
        if optimized:
            first, rest = self._page(items, request, f"{{{N}}}Enumerate/{{{W}}}MaxElements")
        else:
            first, rest = [], items
        context = f"uuid:{uuid.uuid4()}"
        end = "<w:EndOfSequence/>" if not rest else ""
        if rest:
            with self._lock:
                self._enumerations[context] = rest
        return (
            f"<n:EnumerateResponse><n:EnumerationContext>{context}</n:EnumerationContext>"
            f"<w:Items>{''.join(first)}</w:Items>{end}</n:EnumerateResponse>"
        )

    def _page(self, items: list[str], request: _Request,
              max_elements_path: str) -> tuple[list[str], list[str]]:
        """The instances of one answer and the rest (see MAX_BATCH_ITEMS)."""
        el = request.body.find(max_elements_path)
        limit = min(_count((el.text or "").strip() if el is not None else "", 1),
                    self.scenario.page_size)
        budget = request.max_envelope_size - ENVELOPE_OVERHEAD
        taken = used = 0
        for item in items[:limit]:
            used += len(item.encode("utf-8"))
            if taken and used > budget:
                break
            taken += 1
        return items[:taken], items[taken:]

    def _pull(self, request: _Request) -> str:
        context_el = request.body.find(f"{{{N}}}Pull/{{{N}}}EnumerationContext")
        context = (context_el.text or "").strip() if context_el is not None else ""
        with self._lock:
            rest = self._enumerations.pop(context, None)
        if rest is None:
            raise _SoapFault(fault_body("n:InvalidEnumerationContext", 2150858752,
                                        "The enumeration context is not valid."))
        first, rest = self._page(rest, request, f"{{{N}}}Pull/{{{N}}}MaxElements")
        new_context = f"uuid:{uuid.uuid4()}"
        if rest:
            with self._lock:
                self._enumerations[new_context] = rest
            tail = f"<n:EnumerationContext>{new_context}</n:EnumerationContext>"
        else:
            tail = ""
        end = "" if rest else "<n:EndOfSequence/>"
        return f"<n:PullResponse>{tail}<n:Items>{''.join(first)}</n:Items>{end}</n:PullResponse>"

    def _shell(self, request: _Request) -> tuple[str, str]:
        action = request.action
        if action == CREATE:
            shell_id = str(uuid.uuid4()).upper()
            with self._lock:
                self._shells[shell_id] = {}
            return f"{X}/CreateResponse", (
                f"<x:ResourceCreated><a:Address>{self.url}</a:Address><a:ReferenceParameters>"
                f"<w:ResourceURI>{SHELL_URI}</w:ResourceURI><w:SelectorSet>"
                f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
                f"</a:ReferenceParameters></x:ResourceCreated>"
                f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
                f"<rsp:ResourceUri>{SHELL_URI}</rsp:ResourceUri>"
                f"<rsp:Owner>{escape(USERNAME)}</rsp:Owner><rsp:ClientIP>{HOST}</rsp:ClientIP>"
                "<rsp:IdleTimeOut>PT120.000S</rsp:IdleTimeOut>"
                "<rsp:InputStreams>stdin</rsp:InputStreams>"
                "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
            )
        shell_id = request.selectors.get("ShellId", "")
        with self._lock:
            commands = self._shells.get(shell_id)
        if commands is None:
            raise _SoapFault(fault_body("w:InvalidSelectors", 2150858843,
                                        "The request for the Windows Remote Shell with ShellId "
                                        f"{shell_id} failed because the shell was not found."))
        if action == DELETE:
            with self._lock:
                self._shells.pop(shell_id, None)
            return f"{X}/DeleteResponse", ""
        if action == COMMAND:
            line = request.body.find(f"{{{RSP}}}CommandLine")
            if line is None:
                raise _SoapFault(fault_body("w:InvalidMessage", 2150858817, "No CommandLine."))
            executable = (line.findtext(f"{{{RSP}}}Command") or "").strip()
            arguments = [(a.text or "") for a in line.findall(f"{{{RSP}}}Arguments")]
            command_id = str(uuid.uuid4()).upper()
            tail = match_script(executable, arguments)
            if tail is None:
                shown = executable.split()[0] if executable.split() else executable
                command = _Command(
                    b"",
                    f"'{shown}' is not recognized as an internal or external command,\r\n"
                    "operable program or batch file.\r\n".encode(),
                    9009,
                )
            else:
                command = _Command(self.state.onbox_stdout(tail), b"", 0)
            with self._lock:
                commands[command_id] = command
            return f"{RSP}/CommandResponse", (
                f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
                "</rsp:CommandResponse>"
            )
        if action == RECEIVE:
            stream = request.body.find(f"{{{RSP}}}Receive/{{{RSP}}}DesiredStream")
            command_id = stream.get("CommandId", "") if stream is not None else ""
            running = commands.get(command_id)
            if running is None:
                raise _SoapFault(fault_body("w:InvalidSelectors", 2150858843,
                                            "The command was not found."))
            return f"{RSP}/ReceiveResponse", self._receive(command_id, running)
        if action == SIGNAL:
            return f"{RSP}/SignalResponse", "<rsp:SignalResponse/>"
        raise _SoapFault(fault_body("w:ActionNotSupported", 2150858776,
                                    "The action is not supported by the service."))

    @staticmethod
    def _receive(command_id: str, command: _Command) -> str:
        # Answers stay under the default MaxEnvelopeSize (150 KiB) the client announces.
        chunk = 96 * 1024
        out = command.stdout[command.sent: command.sent + chunk]
        command.sent += len(out)
        done = command.sent >= len(command.stdout)
        parts = ["<rsp:ReceiveResponse>"]
        if out:
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{command_id}">'
                         f"{base64.b64encode(out).decode()}</rsp:Stream>")
        if done:
            if command.stderr:
                parts.append(f'<rsp:Stream Name="stderr" CommandId="{command_id}">'
                             f"{base64.b64encode(command.stderr).decode()}</rsp:Stream>")
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"/>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{command_id}" End="true"/>')
            parts.append(f'<rsp:CommandState CommandId="{command_id}" State="{DONE}">'
                         f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>")
        else:
            parts.append(f'<rsp:CommandState CommandId="{command_id}" '
                         f'State="{RSP}/CommandState/Running"/>')
        parts.append("</rsp:ReceiveResponse>")
        return "".join(parts)


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 sim: WinRMSimulator) -> None:
        self.sim = sim
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is part of the fault scenarios

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        if self.sim._tls is not None:
            # The handshake runs in the connection's own thread (see _Handler.setup).
            conn = self.sim._tls.wrap_socket(conn, server_side=True,
                                              do_handshake_on_connect=False)
        return conn, addr


BOUNDARY = "Encrypted Boundary"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.security: Any = None  # the NTLM or Kerberos acceptor of this connection
        self.authenticated = False
        self.reply_token: bytes | None = None  # Kerberos: the AP-REP for the next answer
        self.loop_first: bytes | None = None  # fault auth_loop: the first token of the client
        self.loop_answer: bytes | None = None
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(10)
            self.connection.do_handshake()
            self.connection.settimeout(self.timeout)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the exporter's log, not the simulator's

    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            super().handle()

    # -- HTTP plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
              content_type: str | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.reply_token is not None and status != 401:
            # Mutual authentication: the answer carries the server's last token (AP-REP).
            self.send_header("WWW-Authenticate",
                             f"Negotiate {base64.b64encode(self.reply_token).decode()}")
            self.reply_token = None
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _unauthorized(self, token: bytes | None = None, close: bool = False) -> None:
        sim = self.server.sim
        scheme = 'Basic realm="WSMAN"' if sim.scenario.auth == "basic" else "Negotiate"
        value = f"Negotiate {base64.b64encode(token).decode()}" if token else scheme
        headers = {"WWW-Authenticate": value}
        if close:
            headers["Connection"] = "close"
            self.close_connection = True
        self._send(401, b"", headers)

    def do_POST(self) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        if length > 4 * 1024 * 1024:
            self._send(413, b"", {"Connection": "close"})
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        if not self._authenticate():
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.startswith("multipart/encrypted")
        if sim.scenario.auth != "basic" and not encrypted and sim.scenario.scheme == "http":
            if not raw:
                self._send(200)  # the empty request that sets up the encryption context
                return
            # AllowUnencrypted=false (the Windows default): plain messages are refused.
            self._send(401, b"", {"WWW-Authenticate": "Negotiate"})
            return
        with sim._lock:
            sim.transports.append("encrypted" if encrypted else "plain")
        try:
            data = self._unwrap(raw) if encrypted else raw
        except (ValueError, spnego.exceptions.SpnegoError):
            self._send(400, b"", {"Connection": "close"})
            self.close_connection = True
            return
        request: _Request | None = None
        try:
            request = _parse_request(data)
            if request.resource_uri == POOL_URI and request.action == ENUMERATE:
                fault = sim.fault_for_pools()
                if fault is not None:
                    self._inject(fault, request, encrypted)
                    return
            action, body = sim.handle(request)
            self._reply(200, _envelope(action, request.message_id, body), encrypted)
        except _SoapFault as fault:
            message_id = request.message_id if request is not None else ""
            envelope = _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
                                 message_id, fault.body)
            self._reply(fault.status, envelope, encrypted)

    def _authenticate(self) -> bool:
        sim = self.server.sim
        header = self.headers.get("Authorization", "")
        if sim.scenario.auth == "basic":
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "basic" and sim.basic_ok(value.strip()):
                return True
            self._unauthorized()
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("negotiate", "ntlm", "kerberos") and value.strip():
            with sim._lock:
                sim.auth_tokens += 1
            if sim.scenario.fault == "garbage_token":
                self._unauthorized(GARBAGE_TOKEN)
                return False
            try:
                token = base64.b64decode(value.strip())
                if sim.scenario.fault == "auth_loop":
                    self._unauthorized(self._loop_token(token))
                    return False
                if self.security is None or self.authenticated:
                    self.security, self.authenticated = sim.new_context(), False
                out = self.security.step(token)
            # AttributeError: pyspnego's GSSAPI acceptor, when MIT refuses an AP-REQ, reads the
            # flags of the context that never started (pyspnego 0.12).
            except (ValueError, AttributeError, spnego.exceptions.SpnegoError):
                self.security, self.authenticated = None, False
                error_token = None
                if sim.scenario.auth == "kerberos" and token:
                    error_token = sim.kerberos_error_token(token)
                self._unauthorized(error_token, close=True)
                return False
            if not self.security.complete:
                self._unauthorized(out)
                return False
            self.authenticated = True
            if sim.scenario.auth == "kerberos":
                self.reply_token = out
                with sim._lock:
                    sim.principals.append(str(self.security.client_principal))
            return True
        if self.authenticated:
            return True
        self._unauthorized()
        return False

    def _loop_token(self, token: bytes) -> bytes:
        """``auth_loop``: a fresh valid NTLM challenge for every token (from the connection's
        first NEGOTIATE), or the first Kerberos answer again (an AP-REQ cannot be replayed)."""
        sim = self.server.sim
        if self.loop_first is None:
            self.loop_first = token
            self.loop_answer = sim.new_context().step(token)
        elif sim.scenario.auth == "ntlm":
            self.loop_answer = sim.new_context().step(self.loop_first)
        return self.loop_answer or b""

    def _unwrap(self, raw: bytes) -> bytes:
        if not self.authenticated or self.security is None:
            raise ValueError("no security context")
        parts = raw.split(f"--{BOUNDARY}\r\n".encode())
        # [b"", header part, octet-stream part + closing boundary]
        if len(parts) < 3:
            raise ValueError("not a WinRM encrypted message")
        match = re.search(rb"Length=(\d+)", parts[1])
        if not match:
            raise ValueError("no Length")
        payload = parts[2].split(b"\tContent-Type: application/octet-stream\r\n", 1)[-1]
        payload = payload.removesuffix(f"--{BOUNDARY}--\r\n".encode())
        header_length = struct.unpack("<i", payload[:4])[0]
        header = payload[4:4 + header_length]
        message = bytes(self.security.unwrap_winrm(header, payload[4 + header_length:]))
        if len(message) != int(match.group(1)):
            raise ValueError("length mismatch")
        return message

    def _wrap(self, message: bytes) -> bytes:
        result = self.security.wrap_winrm(message)
        wrapped: bytes = (
            f"--{BOUNDARY}\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message)}\r\n"
            f"--{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n"
        ).encode() + struct.pack("<i", len(result.header)) + result.header + result.data + (
            f"--{BOUNDARY}--\r\n".encode()
        )
        return wrapped

    def _reply(self, status: int, envelope: bytes, encrypted: bool) -> None:
        if encrypted:
            content_type = (f'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-'
                            f'encrypted";boundary="{BOUNDARY}"')
            self._send(status, self._wrap(envelope), content_type=content_type)
        else:
            self._send(status, envelope, content_type="application/soap+xml;charset=UTF-8")

    # -- faults on the wire -------------------------------------------------------------------

    def _inject(self, fault: str, request: _Request, encrypted: bool) -> None:
        sim = self.server.sim
        if fault == "garbage_xml":
            body = (b"<s:Envelope xmlns:s='" + S.encode() + b"'><s:Body><n:Enumerate"
                    b"Response>\x00\xff garbage <<<</s:Envelope")
            self._reply(200, body, encrypted)
        elif fault == "xml_bomb":
            body = (b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">'
                    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                    b"<s:Envelope xmlns:s='" + S.encode() + b"'><s:Body>&c;</s:Body></s:Envelope>")
            self._reply(200, body, encrypted)
        elif fault == "huge_answer":
            self._stream(200, HUGE_BYTES, chunked=False)
        elif fault == "huge_chunked":
            self._stream(200, HUGE_BYTES, chunked=True)
        elif fault == "slow_drip":
            self.send_response(200)
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            for _ in range(100000):
                if sim.stopped.wait(0.2):
                    break
                self.wfile.write(b" ")
                self.wfile.flush()
            self.close_connection = True
        elif fault == "reset":
            envelope = _envelope(f"{N}/EnumerateResponse", request.message_id,
                                 sim._enumerate(request))
            self.send_response(200)
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
            self.send_header("Content-Length", str(len(envelope)))
            self.end_headers()
            self.wfile.write(envelope[: len(envelope) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

    def _stream(self, status: int, size: int, chunked: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"<a>" + b"x" * (1024 * 1024 - 7) + b"</a>"
        sent = 0
        self.close_connection = True
        while sent < size and not self.server.sim.stopped.is_set():
            if chunked:
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            else:
                self.wfile.write(block)
            sent += len(block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


# ---------------------------------------------------------------------------------------------
# In the fleet


class SimulatedWinRM:
    """The fleet's view of one simulated WinRM endpoint (see simulator/fleet.py)."""

    def __init__(self, scenario: Scenario, section: WinRMScenario) -> None:
        self.section = section
        self.simulator = WinRMSimulator(section, scenario.name)

    @property
    def module_name(self) -> str:
        s = self.section
        suffix = "-wrong-password" if s.fault == "wrong_password" else ""
        if not s.count_includes_overdraft:
            suffix += "-count-without-overdraft"
        return f"winrm-{s.auth}-{s.scheme}{suffix}"

    def module_config(self, secrets_dir: Path) -> dict[str, Any]:
        s = self.section
        secret = "winrm-wrong-password" if s.fault == "wrong_password" else "winrm-password"
        password = WRONG_PASSWORD if s.fault == "wrong_password" else PASSWORD
        secrets_dir.mkdir(parents=True, exist_ok=True)
        path = secrets_dir / secret
        path.write_text(password + "\n", encoding="utf-8")
        path.chmod(0o600)
        winrm: dict[str, Any] = {
            "scheme": s.scheme,
            "auth": s.auth,
            "username": USERNAME,
            "password_file": secret,
            "cache_interval": "15m",
        }
        if not s.count_includes_overdraft:
            winrm["count_includes_overdraft"] = False
        if s.scheme == "https":
            ca = secrets_dir / "winrm-simulator-ca.pem"
            ca.write_bytes(certificate()[0])
            winrm["tls"] = {"ca_file": ca.name}
        elif s.auth == "basic":
            winrm["allow_unencrypted"] = True
        return {"collectors": ["probe", "winrm"], "primary": "winrm", "winrm": winrm}

    def target_fields(self) -> dict[str, Any]:
        return {"winrm_url": self.simulator.url, "telemetry": self.section.telemetry}

    def reconfigure(self, **changes: Any) -> None:
        """See WinRMSimulator.reconfigure (auth, scheme and telemetry are fixed at start)."""
        self.simulator.reconfigure(**changes)
        self.section = self.simulator.scenario

    def close(self) -> None:
        self.simulator.close()


def from_scenario(scenario: Scenario) -> SimulatedWinRM | None:
    raw = scenario.sections.get("winrm")
    if raw is None:
        return None
    return SimulatedWinRM(scenario, parse_winrm_section(raw, scenario.source or scenario.name))
