"""The ``winrm`` collector: agentless reads from the License Server over WinRM (WS-Management).

Fetch only; it names no metric. What it does on the server, in this order:

1. WS-Management Enumerate (+ Pull) of the WMI classes ``root\\CitrixLicensing\\
   Citrix_GT_License_Pool`` and ``Citrix_GT_License``;
2. Enumerate of ``root\\cimv2`` with a WQL filter for the watched services (``winrm.services``;
   default the four of an 11.17.2 License Server), by name or display name;
3. one WinRS shell running one fixed, read-only PowerShell command (citrix/onbox.py) for the
   installed version, the end of the uploader log and the upload bundle names.

The WS-Management client is pypsrp (``WSMan`` and ``WinRS``/``Process``) with its NTLM, Kerberos
and Basic authentication and WinRM message encryption. Three small additions bound what a
server can make the exporter do (documented in docs/windows-setup.md):

- ``_BoundedAdapter``: the requests transport adapter under pypsrp. Every HTTP request gets a
  connect and read timeout within the probe deadline, every answer body is read with a size cap
  (``max_response_bytes``; a larger Content-Length fails before reading), and a watchdog shuts
  the sockets at the deadline, so a server dripping one byte at a time cannot hold the thread.
- ``_SafeWSMan.invoke``: parses every answer with defusedxml (no DTD, no entities) instead of
  the standard library parser, and never retries with sleeps.
- ``_BoundedAdapter`` also caps the authentication rounds per collection
  (``MAX_AUTH_ROUNDS``): pypsrp answers every 401 that carries a new challenge with a new
  token, so a hostile or broken server could draw thousands of logon attempts from one probe
  and lock the account out.
- error mapping: short, specific reasons without secrets, each with a failure kind; Kerberos
  reasons (KDC unreachable, clock skew, unknown principal, wrong password, no SPN, expired
  ticket) come from collectors/kerberos.py.
- enumerations are read page by page (``WinRMClient.enumerate`` is a generator the parsers
  consume) and stop past ``max_instances`` per class, so no answer is held whole.

The requests session under pypsrp's transport is built here (its public ``HTTPNegotiateAuth``
for NTLM and Kerberos, requests' Basic auth) and set as the transport's ``session``. One hook is
not pypsrp's public API: ``_create_header`` (the message id, to check RelatesTo). So pypsrp is
pinned to the minor version tested (pyproject.toml), and tests/unit/test_pypsrp_pin.py checks
that the hook still exists as used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import requests
import requests.adapters
import spnego
import spnego.exceptions
import urllib3
from pydantic import Field, PlainValidator, ValidationInfo, field_validator, model_validator
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.negotiate import HTTPNegotiateAuth
from pypsrp.shell import CommandState, Process, SignalCode, WinRS
from pypsrp.wsman import NAMESPACES, WSMan
from urllib3.exceptions import HTTPError as Urllib3Error

from ..citrix.licensing import (
    DEFAULT_SERVICES,
    SERVICE_STATES,
    License,
    LicensePool,
    ParseError,
    ServiceSpec,
    ServiceState,
    TelemetrySummary,
    WinRMData,
    excerpt,
    parse_service_specs,
    summarize_telemetry,
)
from ..citrix.onbox import OnBoxData, command_line, parse_output, stderr_summary
from ..citrix.uploader_log import compliance_attempts, parse_bundles, parse_uploader_log
from ..citrix.versions import VersionParseError, parse_version
from ..citrix.wmi import (
    CIMV2_ALL_URI,
    LICENSE_URI,
    NS,
    POOL_URI,
    WQL_DIALECT,
    Instance,
    WSManFault,
    enumeration_page,
    parse_fault,
    parse_licenses,
    parse_pools,
    parse_services,
    safe_fromstring,
    services_query,
)
from ..config import (
    Bool,
    Bytes,
    CacheInterval,
    ModuleConfig,
    OptionalStr,
    Secret,
    SecretValue,
    SectionModel,
    Str,
    TargetConfig,
    TLSConfig,
    choice,
    int_in,
    non_empty,
    optional_port,
    read_secrets,
    resolve_file,
)
from ..metrics import CACHED_NOTE, PREFIX, gauge, single, ts
from ..redaction import shorten
from ..settings.problems import Several, refusal
from . import kerberos
from .base import CollectorDocs, CollectorError, CollectorUnit, Deadline, FailureKind
from .failures import status_kind

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from ..probe import ProbeResult

log = logging.getLogger(__name__)

# pypsrp logs every message at debug level (256 KiB of Base64 per collection) and each transport
# failure at error level with a traceback; the collector reports its own short reason instead.
for _noisy in ("pypsrp", "spnego"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)

CONNECT_TIMEOUT = 10
#: WS-Man OperationTimeout upper bound (the server answers or faults within it).
MAX_OPERATION_TIMEOUT = 60
#: Pull requests allowed beyond max_instances (pages without instances, then the deadline).
MAX_PULLS = 50
#: Instances asked for per Enumerate/Pull answer.
MAX_ELEMENTS = 100
#: WinRS shells idle longer than this are closed by the server (if our Delete never arrives).
SHELL_IDLE_TIMEOUT = 120
AUTH_NAMES = {"ntlm": "NTLM", "basic": "Basic", "kerberos": "Kerberos"}
#: Requests carrying an NTLM or Kerberos token per collection, at most. A normal collection
#: needs one handshake: NTLM's NEGOTIATE and AUTHENTICATE, or one Kerberos AP-REQ.
MAX_AUTH_ROUNDS = 4
_TOKEN_SCHEMES = (b"negotiate ", b"ntlm ", b"kerberos ")


class WinRMCollectorError(CollectorError):
    pass


# ---------------------------------------------------------------------------------------------
# Bounding the transport


@dataclass
class _Budget:
    """The probe deadline, the size cap, and the sockets to shut when the deadline passes."""

    deadline: Deadline
    max_bytes: int
    phase: str = "starting"
    aborted: bool = False
    auth: str = "ntlm"
    #: Tokens sent so far (see MAX_AUTH_ROUNDS).
    auth_rounds: int = 0
    #: The last answer was a 401 carrying a server token: the next step reads that token.
    reading_token: bool = False
    _connections: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def left(self) -> float:
        left = self.deadline.remaining()
        if left <= 0.0 or self.aborted:
            raise WinRMCollectorError(f"probe deadline reached while {self.phase}",
                                      kind=FailureKind.TIMEOUT)
        return left

    def track(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)

    def abort(self) -> None:
        """Shut every socket (from the watchdog thread): blocked reads return at once."""
        with self._lock:
            self.aborted = True
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    # The plain socket method, also on an SSLSocket: it leaves the TLS object
                    # to the reading thread, which then sees end of stream.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    @contextlib.contextmanager
    def watchdog(self) -> Iterator[None]:
        timer = threading.Timer(self.deadline.remaining(), self.abort)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


class _ResponseTooLarge(WinRMCollectorError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind=FailureKind.LIMIT)


class _BoundedAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter whose every wait and every answer is bounded (see module doc)."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        budget = self.budget
        classes = dict(self.poolmanager.pool_classes_by_scheme)
        for scheme, base in classes.items():

            class TrackedPool(base):  # type: ignore[valid-type,misc]
                def _new_conn(self) -> Any:
                    connection = super()._new_conn()
                    budget.track(connection)
                    return connection

            classes[scheme] = TrackedPool
        self.poolmanager.pool_classes_by_scheme = classes

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        left = self.budget.left()
        self._count_auth_round(request)
        response = super().send(
            request,
            stream=True,
            timeout=(min(CONNECT_TIMEOUT, left), left),
            verify=verify,
            cert=cert,
            proxies=proxies,
        )
        challenge = response.headers.get("WWW-Authenticate", "").strip().encode("latin-1",
                                                                             "replace")
        self.budget.reading_token = (response.status_code == 401
                                     and challenge.lower().startswith(_TOKEN_SCHEMES))
        cap = self.budget.max_bytes
        length = response.headers.get("Content-Length")
        declared = int(length) if length and re.fullmatch(r"[0-9]{1,18}", length) else None
        if declared is not None and declared > cap:
            response.close()
            raise _ResponseTooLarge(
                f"WinRM answer of {declared} bytes exceeds max_response_bytes ({cap})"
            )
        if response.status_code == 401 and declared is not None:
            # Left unread for pypsrp's authentication hook, which needs the live socket for
            # channel binding (HTTPS); its size is already known to be within the cap.
            return response
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.raw.stream(64 * 1024, decode_content=False):
                total += len(chunk)
                if total > cap:
                    raise _ResponseTooLarge(f"WinRM answer exceeds max_response_bytes ({cap})")
                chunks.append(chunk)
        except _ResponseTooLarge:
            response.close()
            raise
        except (Urllib3Error, OSError) as exc:
            response.close()
            if self.budget.aborted:
                raise WinRMCollectorError(
                    f"probe deadline reached while {self.budget.phase}", kind=FailureKind.TIMEOUT
                ) from None
            raise WinRMCollectorError(
                f"connection lost while reading the answer ({type(exc).__name__}) while "
                f"{self.budget.phase}", kind=FailureKind.REFUSED
            ) from None
        # The body, read within the cap, becomes the answer's file object (``Response.raw``,
        # requests' documented hook), and the connection goes back to the pool: NTLM and
        # Kerberos authenticate the connection, not the request.
        original = response.raw
        original.release_conn()
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(b"".join(chunks)), status=original.status, preload_content=False,
            decode_content=False,
        )
        return response

    def _count_auth_round(self, request: requests.PreparedRequest) -> None:
        value = request.headers.get("Authorization", b"")
        header = value.encode("latin-1") if isinstance(value, str) else value
        if not header.lower().startswith(_TOKEN_SCHEMES):
            return
        budget = self.budget
        budget.auth_rounds += 1
        if budget.auth_rounds > MAX_AUTH_ROUNDS:
            raise WinRMCollectorError(
                f"{AUTH_NAMES[budget.auth]} authentication did not complete after "
                f"{MAX_AUTH_ROUNDS} rounds: the server keeps asking for credentials (stopped so "
                "the account is not locked out)",
                kind=FailureKind.AUTH,
            )


# ---------------------------------------------------------------------------------------------
# pypsrp, with safe parsing


class _Fault(WSManFaultError):
    """A WS-Man fault, parsed safely; ``.fault`` has the details."""

    def __init__(self, fault: WSManFault, http_status: int) -> None:
        super().__init__(fault.code, None, fault.reason, None, None, None)
        self.fault = fault
        self.http_status = http_status


class _SafeWSMan(WSMan):
    budget: _Budget

    def invoke(
        self,
        action: str,
        resource_uri: str,
        resource: ET.Element | None,
        option_set: Any = None,
        selector_set: Any = None,
        timeout: int | None = None,
        *,
        retries_on_read_timeout: int = 0,
    ) -> ET.Element:
        left = self.budget.left()
        operation_timeout = timeout or max(1, min(MAX_OPERATION_TIMEOUT, int(left) - 1))
        message_id, header = self._create_header(
            action, resource_uri, option_set, selector_set, operation_timeout
        )
        envelope = ET.Element(f"{{{NAMESPACES['s']}}}Envelope")
        envelope.append(header)
        body = ET.SubElement(envelope, f"{{{NAMESPACES['s']}}}Body")
        if resource is not None:
            body.append(resource)
        xml = ET.tostring(envelope, encoding="utf-8", method="xml")
        try:
            response = self.transport.send(xml)
        except WinRMTransportError as err:
            raise _http_error(err.code, err.response_text, self.budget.max_bytes) from None
        except UnicodeDecodeError:
            raise WinRMCollectorError("unreadable WinRM answer: not UTF-8 text",
                                      kind=FailureKind.PARSE) from None
        root = _parse(response, self.budget.max_bytes)
        fault = parse_fault(root)
        if fault is not None:
            raise _Fault(fault, 200)
        relates_to = root.find("s:Header/wsa:RelatesTo", NS)
        if relates_to is None or (relates_to.text or "").strip() != f"uuid:{message_id}":
            raise WinRMCollectorError("WinRM answer does not relate to the request sent",
                                      kind=FailureKind.PROTOCOL)
        return root


def _parse(data: bytes | str, max_bytes: int) -> ET.Element:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        return safe_fromstring(raw, max_bytes)
    except ParseError as exc:
        raise WinRMCollectorError(f"unreadable WinRM answer: {exc}",
                                  kind=FailureKind.PARSE) from None


def _http_error(status: int, text: str, max_bytes: int) -> Exception:
    if text.strip():
        try:
            fault = parse_fault(safe_fromstring(text.encode("utf-8"), max_bytes))
        except ParseError:
            fault = None
        if fault is not None:
            return _Fault(fault, status)
    return WinRMCollectorError(f"WinRM answered HTTP {status} without a WS-Management fault",
                               kind=status_kind(status))


# ---------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.path}"


def endpoint_for(target: TargetConfig, cfg: WinRMConfig) -> Endpoint:
    if target.winrm_url:
        parts = urlsplit(target.winrm_url)
        scheme = parts.scheme
        port = parts.port or (5986 if scheme == "https" else 5985)
        return Endpoint(scheme, parts.hostname or target.address, port,
                        (parts.path or "/wsman").lstrip("/"))
    return Endpoint(cfg.scheme, target.address, cfg.effective_port, cfg.path.lstrip("/"))


def service_principal(endpoint: Endpoint, cfg: WinRMConfig) -> tuple[str, str]:
    """(service, host) of the SPN: ``kerberos.spn``, else ``HTTP/<host of the WinRM URL>``, the
    name Windows' own WinRM client asks for (docs/windows-setup.md)."""
    spn = cfg.kerberos.spn if cfg.kerberos is not None else None
    if spn:
        service, _, host = spn.partition("/")
        return service, host
    return "HTTP", endpoint.host


def kerberos_credential(endpoint: Endpoint, cfg: WinRMConfig,
                        deadline: Deadline) -> spnego.KerberosCCache:
    k = cfg.kerberos or KerberosConfig()
    service, host = service_principal(endpoint, cfg)
    spn = f"{service}/{host}"
    if cfg.password is None and k.keytab is None:
        credential = kerberos.existing_cache(k.ccache, spn)
    else:
        principal = kerberos.principal_name(cfg.username, k.realm)
        ticket = kerberos.STORE.ticket(
            principal, password=cfg.password.reveal() if cfg.password is not None else None,
            keytab=k.keytab, deadline=deadline, spn=spn,
        )
        credential = spnego.KerberosCCache(ccache=ticket.ccache)
    kerberos.fetch_service_ticket(credential.ccache, service, host, deadline)
    return credential


class WinRMClient:
    """One collection's WS-Management conversation with one server (not thread-safe)."""

    def __init__(self, endpoint: Endpoint, cfg: WinRMConfig, budget: _Budget) -> None:
        self.endpoint = endpoint
        self.cfg = cfg
        self.budget = budget
        https = endpoint.scheme == "https"
        if cfg.auth == "basic":
            encryption = "auto" if https else "never"
        else:
            encryption = "auto" if https else "always"
        username: Any = cfg.username or None
        password = cfg.password.reveal() if cfg.password is not None else None
        negotiate: dict[str, Any] = {}
        if cfg.auth == "kerberos":
            budget.phase = "getting a Kerberos ticket"
            # spnego.client takes a credential object where a user name may go; pypsrp hands
            # the name through to it unchanged.
            username, password = kerberos_credential(endpoint, cfg, budget.deadline), None
            service, host = service_principal(endpoint, cfg)
            negotiate = {"negotiate_service": service, "negotiate_hostname_override": host}
            budget.phase = "starting"
        self.wsman = _SafeWSMan(
            endpoint.host,
            port=endpoint.port,
            path=endpoint.path,
            ssl=https,
            username=username,
            password=password,
            auth=cfg.auth,
            encryption=encryption,
            # pypsrp hands this to requests' ``verify``: True, False or a CA bundle path.
            cert_validation=cfg.tls.verify(),  # type: ignore[arg-type]
            no_proxy=True,
            connection_timeout=CONNECT_TIMEOUT,
            read_timeout=CONNECT_TIMEOUT,
            operation_timeout=20,
            reconnection_retries=0,
            **negotiate,
        )
        self.wsman.budget = budget
        transport = self.wsman.transport
        # The session is built here, not by pypsrp: nothing from the environment (proxies,
        # netrc, CA bundle variables), no redirects (credentials go nowhere else), and the
        # bounded adapter. pypsrp's transport uses the session it finds (``session``).
        session = requests.Session()
        session.trust_env = False
        session.max_redirects = 0
        session.headers["Accept-Encoding"] = "identity"  # WinRM answers are never compressed
        session.verify = cfg.tls.verify()
        if cfg.auth == "basic":
            session.auth = requests.auth.HTTPBasicAuth(username or "", password or "")
        else:
            session.auth = HTTPNegotiateAuth(
                username=username, password=password, auth_provider=cfg.auth,
                wrap_required=transport.wrap_required,
                service=negotiate.get("negotiate_service", "WSMAN"),
                hostname_override=negotiate.get("negotiate_hostname_override"),
            )
        adapter = _BoundedAdapter(budget)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        transport.session = session

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.wsman.close()

    def enumerate(self, resource_uri: str, wql: str | None = None) -> Iterator[Instance]:
        """The instances, page by page as the parsers consume them; past ``max_instances``
        the enumeration stops with a reason (a License Server has a few dozen pools)."""
        limit = self.cfg.max_instances
        count = 0
        for page in self._pages(resource_uri, wql):
            count += len(page)
            if count > limit:
                match = re.search(r"\bFROM\s+(\w+)", wql or "", re.IGNORECASE)
                name = match.group(1) if match else resource_uri.rsplit("/", 1)[-1]
                raise WinRMCollectorError(
                    f"WMI {name} has more than {limit} instances (winrm.max_instances); "
                    "stopped reading", kind=FailureKind.LIMIT)
            yield from page

    def _pages(self, resource_uri: str, wql: str | None) -> Iterator[tuple[Instance, ...]]:
        wsen, wsman = NAMESPACES["wsen"], NAMESPACES["wsman"]
        body = ET.Element(f"{{{wsen}}}Enumerate")
        ET.SubElement(body, f"{{{wsman}}}OptimizeEnumeration")
        ET.SubElement(body, f"{{{wsman}}}MaxElements").text = str(MAX_ELEMENTS)
        if wql is not None:
            filter_el = ET.SubElement(body, f"{{{wsman}}}Filter", Dialect=WQL_DIALECT)
            filter_el.text = wql
        page = enumeration_page(self.wsman.enumerate(resource_uri, body))
        yield page.instances
        pulls = 0
        # A server may send smaller pages than asked for: max_instances bounds what a page
        # with instances can bring; these are for pages that bring none and never end.
        max_pulls = MAX_PULLS + self.cfg.max_instances
        while not page.end_of_sequence and page.context:
            pulls += 1
            if pulls > max_pulls:
                raise WinRMCollectorError(f"enumeration did not end after {max_pulls} pulls",
                                          kind=FailureKind.LIMIT)
            pull = ET.Element(f"{{{wsen}}}Pull")
            ET.SubElement(pull, f"{{{wsen}}}EnumerationContext").text = page.context
            ET.SubElement(pull, f"{{{wsen}}}MaxElements").text = str(MAX_ELEMENTS)
            page = enumeration_page(self.wsman.pull(resource_uri, pull))
            yield page.instances

    def run_script(self, tail_bytes: int) -> tuple[int, bytes, bytes]:
        executable, arguments = command_line(tail_bytes)
        shell = WinRS(self.wsman, idle_time_out=SHELL_IDLE_TIMEOUT)
        shell.open()
        try:
            process = Process(shell, executable, arguments)
            process.begin_invoke()
            try:
                while process.state != CommandState.DONE:
                    left = self.budget.left()
                    process.poll_invoke(timeout=max(1, min(MAX_OPERATION_TIMEOUT, int(left) - 1)))
                    if len(process.stdout) + len(process.stderr) > self.budget.max_bytes:
                        raise _ResponseTooLarge(
                            f"on-box script output exceeds max_response_bytes "
                            f"({self.budget.max_bytes})"
                        )
            finally:
                if self.budget.deadline.remaining() > 0.2 and not self.budget.aborted:
                    with contextlib.suppress(WinRMError, CollectorError, requests.RequestException):
                        process.signal(SignalCode.TERMINATE)
            return process.rc if process.rc is not None else -1, process.stdout, process.stderr
        finally:
            if self.budget.deadline.remaining() > 0.2 and not self.budget.aborted:
                with contextlib.suppress(WinRMError, CollectorError, requests.RequestException):
                    shell.close()


# ---------------------------------------------------------------------------------------------
# Errors a user reads


def describe_fault(fault: WSManFault, what: str, namespace: str | None) -> str:
    if namespace and fault.is_missing_namespace():
        if namespace == "root\\CitrixLicensing":
            return "WMI namespace root\\CitrixLicensing not found (licensing not installed?)"
        return f"WMI namespace {namespace}: class not found while {what}"
    if fault.is_access_denied():
        if namespace:
            return (f"access denied while {what} (grant the account Enable Account and "
                    f"Remote Enable on WMI {namespace}; see docs/windows-setup.md)")
        return f"access denied while {what} (see docs/windows-setup.md)"
    code = f" (code {fault.code})" if fault.code is not None else ""
    reason = shorten(fault.reason, 160) or fault.subcode or "no reason given"
    return f"WS-Management fault while {what}{code}: {reason}"


def _describe(exc: BaseException, endpoint: Endpoint, cfg: WinRMConfig, budget: _Budget,
              namespace: str | None) -> tuple[str, FailureKind | None]:
    """The reason a user reads, and its failure kind (None: left to the probe's classifier)."""
    what = budget.phase
    name = AUTH_NAMES[cfg.auth]
    if isinstance(exc, CollectorError):
        return str(exc), exc.kind
    if budget.aborted:
        return f"probe deadline reached while {what}", FailureKind.TIMEOUT
    if isinstance(exc, spnego.exceptions.SpnegoError) and cfg.auth == "kerberos":
        code = getattr(exc.base_error, "min_code", None)
        known = kerberos.known(code, principal=_principal(cfg), spn=_spn(endpoint, cfg))
        if known is not None:
            return known
    if budget.reading_token and not isinstance(
        exc, requests.RequestException | Urllib3Error | OSError | WinRMError
    ):
        # pyspnego read the token of the server's 401 and choked on it (a KeyError on an
        # unknown NTLM message type, an ASN.1 error, ...): the token is what is wrong.
        which = "Kerberos answer" if cfg.auth == "kerberos" else "NTLM challenge"
        return (f"the server's {which} could not be read ({name} authentication at "
                f"{endpoint.url})"), FailureKind.PROTOCOL
    if isinstance(exc, _Fault):
        fault = exc.fault
        kind = FailureKind.AUTH if fault.is_access_denied() else FailureKind.PROTOCOL
        return describe_fault(fault, what, namespace), kind
    if isinstance(exc, AuthenticationError):
        return (f"{name} authentication failed (HTTP 401) for user "
                f"{cfg.username or _principal(cfg)} at {endpoint.url}"), FailureKind.AUTH
    if isinstance(exc, spnego.exceptions.SpnegoError):
        return (f"{name} authentication failed while {what} "
                f"({type(exc).__name__})"), FailureKind.AUTH
    if isinstance(exc, requests.exceptions.SSLError):
        return (f"TLS handshake with {endpoint.url} failed "
                "(certificate not trusted? see tls.ca_file)"), FailureKind.TLS
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connecting to {endpoint.url} timed out", FailureKind.TIMEOUT
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"WinRM did not answer in time while {what}", FailureKind.TIMEOUT
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return (f"connection to {endpoint.url} refused (WinRM listener not enabled?)",
                    FailureKind.REFUSED)
        return f"connection to {endpoint.url} failed while {what}", None
    if isinstance(exc, requests.RequestException | Urllib3Error):
        return f"HTTP error while {what} ({type(exc).__name__})", FailureKind.PROTOCOL
    if isinstance(exc, ParseError):
        return f"{exc} (while {what})", FailureKind.PARSE
    if isinstance(exc, WinRMError):
        # pypsrp's own messages hold no secret; keep them short.
        return f"WinRM error while {what}: {shorten(str(exc), 160)}", FailureKind.PROTOCOL
    raise exc


def _principal(cfg: WinRMConfig) -> str:
    if cfg.auth != "kerberos" or (cfg.password is None and (
            cfg.kerberos is None or cfg.kerberos.keytab is None)):
        return cfg.username or "the cached principal"
    return kerberos.principal_name(cfg.username, cfg.kerberos.realm if cfg.kerberos else None)


def _spn(endpoint: Endpoint, cfg: WinRMConfig) -> str:
    return "/".join(service_principal(endpoint, cfg))


# ---------------------------------------------------------------------------------------------
# The collector


def choose_version(registry: str | None, uninstall: str | None) -> tuple[str | None, str | None]:
    """The registry's Install\\Version, unless it lacks what the release policy needs (a
    build number) and the Uninstall entry's DisplayVersion has it. ASSUMPTION: both hold a
    version string such as "11.17.2.0 build 56200" (docs/windows-setup.md)."""
    for text, source in ((registry, "registry"), (uninstall, "uninstall")):
        if text:
            try:
                parse_version(text)
            except VersionParseError:
                continue
            return text, source
    if registry:
        return registry, "registry"  # reported as unparseable by the probe
    if uninstall:
        return uninstall, "uninstall"
    return None, None


# ---------------------------------------------------------------------------------------------
# The module section: ``modules.<module>.winrm``

#: The largest uploader log tail a module may ask for.
MAX_LOG_TAIL_BYTES = 64 * 1024 * 1024
_SPN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}/[A-Za-z0-9.-]{1,253}$")
_REALM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$")
#: WMI instances read per class at most (a License Server has a few dozen pools).
MAX_INSTANCES_LIMIT = 1_000_000


def _realm_name(value: object) -> str | None:
    if value is None:
        return None
    text = non_empty(value)
    if not _REALM.match(text):
        raise ValueError("expected a realm name such as CORP.EXAMPLE.COM")
    return text


def _spn_name(value: object) -> str | None:
    if value is None:
        return None
    text = non_empty(value)
    if not _SPN.match(text):
        raise ValueError("expected SERVICE/host, e.g. HTTP/ls01.corp.example.com")
    return text


class KerberosConfig(SectionModel):
    """``winrm.kerberos`` (auth kerberos): where the client's ticket comes from, and the SPN.

    The source is the module's password (the exporter runs kinit into a private credential
    cache), else ``keytab``, else an existing credential cache (``ccache``, or KRB5CCNAME).
    """

    #: The realm of ``username`` when it has no ``@REALM`` part.
    realm: Annotated[str | None, PlainValidator(_realm_name)] = None
    #: The service principal, ``SERVICE/host`` (default ``HTTP/<host of the WinRM URL>``).
    spn: Annotated[str | None, PlainValidator(_spn_name)] = None
    keytab: OptionalStr = None
    ccache: OptionalStr = None

    @field_validator("keytab")
    @classmethod
    def _keytab(cls, value: str | None, info: ValidationInfo) -> str | None:
        return resolve_file(value.removeprefix("FILE:") if value else value, info)


def _services(value: object) -> tuple[ServiceSpec, ...]:
    """``winrm.services`` as written (citrix/licensing.py's rules), or as code builds it."""
    if isinstance(value, tuple) and all(isinstance(s, ServiceSpec) for s in value):
        return value
    return parse_service_specs(value)


def _cross_checks(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """The Kerberos credential rules, on the keys as written."""
    if raw.get("auth") != "kerberos":
        return []
    found = raw.get("kerberos")
    kerberos: Mapping[str, Any] = found if isinstance(found, dict) else {}
    password = any(raw.get(k) is not None for k in ("password", "password_file", "password_env"))
    keytab = kerberos.get("keytab") is not None
    sources = [name for name, given in (
        ("password_file/password_env", password), ("kerberos.keytab", keytab),
        ("kerberos.ccache", kerberos.get("ccache") is not None)) if given]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if len(sources) > 1:
        problems.append(((), "auth kerberos takes one credential source, got "
                         + " and ".join(sources)))
    if (password or keytab) and not raw.get("username"):
        problems.append((("username",), "required for auth kerberos with a password or keytab "
                         "(the client principal, user or user@REALM)"))
    return problems


class WinRMConfig(SectionModel):
    input_keys: ClassVar[frozenset[str]] = frozenset({"password_file", "password_env"})

    scheme: Annotated[Literal["https", "http"], choice("https", "http")] = "https"
    auth: Annotated[
        Literal["ntlm", "basic", "kerberos"], choice("ntlm", "basic", "kerberos")
    ] = "ntlm"
    allow_unencrypted: Bool = False
    username: str = Field(default="", validate_default=True)
    password: SecretValue = Field(default=None, validate_default=True)
    port: Annotated[int | None, PlainValidator(optional_port)] = None
    path: Str = "/wsman"
    tls: TLSConfig = Field(default_factory=TLSConfig)
    cache_interval: CacheInterval = 900.0
    log_tail_bytes: Annotated[int, int_in(1, MAX_LOG_TAIL_BYTES)] = 256 * 1024
    max_response_bytes: Bytes = 8 * 1024 * 1024
    #: WMI instances read per class at most (a License Server has a few dozen pools).
    max_instances: Annotated[int, int_in(1, MAX_INSTANCES_LIMIT)] = 10_000
    kerberos: KerberosConfig | None = Field(default=None, validate_default=True)
    #: The Windows services watched (citrix/licensing.py DEFAULT_SERVICES: the four of 11.17.2).
    services: Annotated[tuple[ServiceSpec, ...], PlainValidator(_services)] = DEFAULT_SERVICES
    #: Whether WMI Count includes the overdraft allowance (docs/assumptions.md, Overdraft).
    count_includes_overdraft: Bool = True
    #: Rules across keys, judged on what was written (so that a bad value of one key does not
    #: hide them): see _cross_checks. Never set in a file.
    checks: None = Field(default=None, alias="__checks__", validate_default=True, repr=False)

    internal_keys: ClassVar[frozenset[str]] = frozenset({"__checks__"})

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = {**data, "__checks__": _cross_checks(data)}
        return read_secrets(data, info, ("password",))

    @field_validator("username", mode="plain")
    @classmethod
    def _username(cls, value: object, info: ValidationInfo) -> str:
        auth = info.data.get("auth")
        if value is None or value == "":
            if auth in ("ntlm", "basic"):
                raise refusal(f"required for auth {auth}")
            return ""
        return non_empty(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: Secret | None, info: ValidationInfo) -> Secret | None:
        auth = info.data.get("auth")
        if auth in ("ntlm", "basic") and value is None and info.context is not None:
            raise refusal(f"auth {auth} needs password_file or password_env", key=None)
        if auth == "basic" and info.data.get("scheme") == "http" \
                and info.data.get("allow_unencrypted") is False:
            raise refusal(
                "basic authentication over http sends the password in clear text; "
                "use scheme https, auth ntlm, or set allow_unencrypted: true", key="auth",
            )
        return value

    @field_validator("kerberos")
    @classmethod
    def _kerberos(
        cls, value: KerberosConfig | None, info: ValidationInfo
    ) -> KerberosConfig | None:
        auth = info.data.get("auth")
        if auth is None:
            return value
        if auth != "kerberos":
            if value is not None:
                raise refusal("only for auth kerberos")
            return None
        return value or KerberosConfig()

    @field_validator("checks", mode="plain")
    @classmethod
    def _raw_checks(cls, value: object) -> None:
        if value:
            raise Several(value)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _tail_fits(self, info: ValidationInfo) -> WinRMConfig:
        # The log tail travels Base64-encoded (4/3) inside the answer: a tail that cannot fit
        # would fail every collection. (Code may build tighter caps on purpose: file only.)
        if info.context is not None \
                and self.log_tail_bytes * 4 // 3 + 64 * 1024 > self.max_response_bytes:
            raise refusal(
                "log_tail_bytes does not fit in max_response_bytes (the tail travels "
                "Base64-encoded: raise max_response_bytes or lower log_tail_bytes)"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (5986 if self.scheme == "https" else 5985)


class WinRMCollector(CollectorUnit[WinRMData, WinRMConfig]):
    name = "winrm"
    data_type = WinRMData
    config_model = WinRMConfig
    cached = True
    credentials = True
    docs = CollectorDocs(
        summary="Licenses, pools, services, version and compliance uploads of the License "
        "Server, over WinRM (WMI, the registry, the uploader log)",
        families=tuple(f"{PREFIX}_{name}" for name in (
            "service_up", "service_state", "service_required", "installed", "in_use",
            "available", "overdraft", "purchased", "subscription_advantage_timestamp_seconds",
            "expiry_timestamp_seconds", "telemetry_manual",
            "telemetry_last_success_timestamp_seconds", "telemetry_last_attempt_timestamp_seconds",
            "telemetry_last_attempt_success", "telemetry_oldest_pending_bundle_timestamp_seconds",
            "telemetry_consecutive_failures", "telemetry_pending_bundles",
        )),
    )

    def families(self, data: WinRMData, result: ProbeResult) -> Iterator[Metric]:
        return winrm_families(data, result)

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> WinRMData:
        cfg = module.winrm
        if cfg is None:
            raise WinRMCollectorError(f"module {module.name} has no winrm section",
                                      kind=FailureKind.INTERNAL)
        endpoint = endpoint_for(target, cfg)
        budget = _Budget(deadline, cfg.max_response_bytes, auth=cfg.auth)
        namespace: str | None = None
        started = time.monotonic()

        def step(phase: str) -> None:
            budget.phase = phase
            log.debug("winrm step", extra={"fields": {
                "target": target.name, "step": phase,
                "after_seconds": round(time.monotonic() - started, 3)}})

        with budget.watchdog():
            client: WinRMClient | None = None
            try:
                budget.left()
                client = WinRMClient(endpoint, cfg, budget)
                namespace = "root\\CitrixLicensing"
                step("reading WMI Citrix_GT_License_Pool")
                pools = parse_pools(client.enumerate(POOL_URI))
                step("reading WMI Citrix_GT_License")
                licenses = parse_licenses(client.enumerate(LICENSE_URI))
                namespace = "root\\cimv2"
                step("reading WMI Win32_Service")
                services: tuple[ServiceState, ...] = ()
                if cfg.services:
                    services = parse_services(
                        client.enumerate(CIMV2_ALL_URI, services_query(cfg.services)),
                        cfg.services,
                    )
                if services and not any(s.installed for s in services):
                    # WMI root\CitrixLicensing answered, so licensing is installed: an empty
                    # answer here means the account may not list services.
                    raise WinRMCollectorError(
                        "Win32_Service lists none of the licensing services (the account needs "
                        "read access to the Service Control Manager; see docs/windows-setup.md)",
                        kind=FailureKind.AUTH,
                    )
                namespace = None
                step("running the on-box script")
                rc, stdout, stderr = client.run_script(cfg.log_tail_bytes)
                if rc != 0:
                    raise WinRMCollectorError(
                        f"on-box script failed (exit code {rc}): {stderr_summary(stderr)}",
                        kind=FailureKind.PROTOCOL,
                    )
                step("reading the on-box script output")
                onbox = parse_output(stdout, cfg.log_tail_bytes)
                data = self._data(target, pools, licenses, services, onbox,
                                  cfg.count_includes_overdraft)
                log.debug(
                    "winrm collection done",
                    extra={"fields": {"target": target.name, "pools": len(pools),
                                      "seconds": round(time.monotonic() - started, 3)}},
                )
            except Exception as exc:
                reason, kind = _describe(exc, endpoint, cfg, budget, namespace)
                raise WinRMCollectorError(reason, kind=kind) from None
            finally:
                if client is not None:
                    client.close()
        return data

    @staticmethod
    def _data(
        target: TargetConfig,
        pools: tuple[LicensePool, ...],
        licenses: tuple[License, ...],
        services: tuple[ServiceState, ...],
        onbox: OnBoxData,
        count_includes_overdraft: bool = True,
    ) -> WinRMData:
        if not onbox.ls_exists:
            raise WinRMCollectorError(
                f"License Server folder {excerpt(onbox.ls_path, 120)} not found (custom "
                "install path?)",
                kind=FailureKind.PROTOCOL,
            )
        attempts = (
            parse_uploader_log(onbox.log_tail, onbox.log_truncated)
            if onbox.log_size is not None
            else ()
        )
        bundles = parse_bundles(f.name for f in onbox.files)
        telemetry: TelemetrySummary = summarize_telemetry(compliance_attempts(attempts), bundles)
        version, source = choose_version(onbox.registry_version, onbox.uninstall_version)
        return WinRMData(
            license_server_version=version,
            version_source=source,
            services=services,
            pools=pools,
            licenses=licenses,
            attempts=attempts,
            bundles=bundles,
            telemetry=telemetry,
            telemetry_manual=target.telemetry == "manual",
            uploader_log_bytes=onbox.log_size,
            count_includes_overdraft=count_includes_overdraft,
        )


# ---------------------------------------------------------------------------------------------
# Metric families (docs/metrics.md "License Server over WinRM")


POOL_LABELS = ("feature", "product", "edition", "model", "license_type", "pool")


def service_families(data: WinRMData) -> Iterator[Metric]:
    """The watched Windows services: not installed is told apart from installed but not
    running (docs/metrics.md), and which of them the module requires."""
    service_up = gauge(
        "service_up",
        "1 if the watched Windows service is running, 0 if it is installed but not running; "
        "absent when it is not installed (see citrix_license_service_state)." + CACHED_NOTE,
        ["service"],
    )
    state = gauge(
        "service_state",
        "The watched Windows service's state (Win32_Service.State in snake case, or "
        "not_installed): one series per state, 1 for the current one." + CACHED_NOTE,
        ["service", "state"],
    )
    required = gauge(
        "service_required",
        "1 if the module lists the service as required (winrm.services), so that its absence "
        "alerts; 0 if it is watched only.",
        ["service"],
    )
    for service in data.services:
        if service.installed:
            service_up.add_metric([service.name], 1.0 if service.running else 0.0)
        current = service.state_label
        for name in SERVICE_STATES:
            state.add_metric([service.name, name], 1.0 if name == current else 0.0)
        required.add_metric([service.name], 1.0 if service.required else 0.0)
    yield service_up
    yield state
    yield required


def winrm_families(data: WinRMData, result: ProbeResult) -> Iterator[Metric]:
    """What the WinRM collector read (cached: every HELP says the data may be that old)."""
    yield from service_families(data)

    pool_metrics = {
        "installed": ("installed", "Licenses installed in the pool as the License Server "
                      "counts them (WMI Count; taken to include the overdraft allowance, see "
                      "citrix_license_purchased)."),
        "in_use": ("in_use", "Licenses of the pool in use (WMI InUseCount)."),
        "available": ("available", "Licenses of the pool available (WMI PooledAvailable)."),
        "overdraft": ("overdraft", "Overdraft licenses of the pool (WMI Overdraft)."),
    }
    families = {
        attr: gauge(name, doc + " One series per pool; sum by (feature) for totals." + CACHED_NOTE,
                    POOL_LABELS)
        for attr, (name, doc) in pool_metrics.items()
    }
    purchased = gauge(
        "purchased",
        "Licenses of the pool bought, without the overdraft allowance: WMI Count minus "
        "Overdraft when the module's winrm.count_includes_overdraft is true (the default, from "
        "public evidence: docs/assumptions.md), else Count. In use above this: overdraft in use."
        " One series per pool; sum by (feature) for totals." + CACHED_NOTE,
        POOL_LABELS,
    )
    sa = gauge(
        "subscription_advantage_timestamp_seconds",
        "Subscription Advantage / Customer Success Services date of the pool (absent when the "
        "pool has none)." + CACHED_NOTE,
        POOL_LABELS,
    )
    for pool in data.pools:
        feature = pool.feature
        labels = [feature.pld, feature.product, feature.edition, feature.model,
                  pool.license_type or "unknown", pool.pool]
        for attr, family in families.items():
            family.add_metric(labels, float(getattr(pool, attr)))
        purchased.add_metric(labels, float(pool.purchased(data.count_includes_overdraft)))
        if pool.subscription_advantage is not None:
            sa.add_metric(labels, ts(pool.subscription_advantage))
    yield from families.values()
    yield purchased
    yield sa

    expiry = gauge(
        "expiry_timestamp_seconds",
        "When the license expires (permanent licenses have no series)." + CACHED_NOTE,
        ["feature", "serial"],
    )
    for item in data.licenses:
        if item.expiry is not None:
            expiry.add_metric([item.feature, item.serial], ts(item.expiry))
    yield expiry

    tele = data.telemetry
    yield single(
        "telemetry_manual",
        "1 if the target is configured telemetry: manual (air-gapped, reported by hand); the "
        "upload metrics then describe the automatic uploader only (see docs/windows-setup.md).",
        1.0 if data.telemetry_manual else 0.0,
    )
    optional = (
        ("telemetry_last_success_timestamp_seconds", tele.last_success,
         "Last successful compliance telemetry upload in the uploader log tail (absent: none "
         "there)."),
        ("telemetry_last_attempt_timestamp_seconds", tele.last_attempt,
         "Last compliance telemetry upload attempt in the uploader log tail (absent: none "
         "there)."),
        ("telemetry_last_attempt_success",
         None if tele.last_attempt_success is None else float(tele.last_attempt_success),
         "1 if the last compliance telemetry upload attempt succeeded (absent: no attempt)."),
        ("telemetry_oldest_pending_bundle_timestamp_seconds", tele.oldest_pending_bundle,
         "Creation time of the oldest upload bundle waiting in the License Server's "
         "resource/usage folder (absent: none waiting)."),
    )
    for name, value, doc in optional:
        if value is not None:
            yield single(name, doc + CACHED_NOTE, float(value))
    yield single(
        "telemetry_consecutive_failures",
        "Failed compliance uploads since the last success in the uploader log tail (a lower "
        "bound when the tail holds no success)." + CACHED_NOTE,
        float(tele.consecutive_failures),
    )
    yield single(
        "telemetry_pending_bundles",
        "Upload bundles newer than the last successful upload, waiting in the License "
        "Server's resource/usage folder." + CACHED_NOTE,
        float(tele.pending_bundles),
    )
