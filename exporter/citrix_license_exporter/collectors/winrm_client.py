"""The WinRM collector's client: pypsrp's WS-Management conversation with one License Server,
bounded, and its failures in words a user reads.

collectors/winrm.py (the collector unit: config, steps, data, metric families) imports this
module inside ``WinRMCollector.collect``, never at module scope: pypsrp, requests, urllib3,
pyspnego and the MIT Kerberos bindings hold 14-15 MB of RSS, which an exporter whose modules
never use WinRM should not pay (docs/performance.md "What RSS holds";
tests/e2e/test_winrm_lazy_import.py checks it).

The WS-Management client is pypsrp (``WSMan`` and ``WinRS``/``Process``) with its NTLM, Kerberos
and Basic authentication and WinRM message encryption. Three small additions bound what a
server can make the exporter do (documented in docs/windows-setup.md):

- ``_BoundedAdapter``: the requests transport adapter under pypsrp. Every HTTP request gets a
  connect and read timeout within the probe deadline, every answer body is read with a size cap
  (``max_response_bytes``; a larger Content-Length fails before reading), and a watchdog shuts
  the sockets at the deadline, so a server dripping one byte at a time cannot hold the thread.
  The pools know their connections through urllib3's public ``ConnectionCls`` attribute (a
  connection class that tells the ``Budget`` of each connection made).
- ``_SafeWSMan.invoke``: parses every answer with defusedxml (no DTD, no entities) instead of
  the standard library parser, and never retries with sleeps.
- ``_BoundedAdapter`` also caps the authentication rounds per collection
  (``MAX_AUTH_ROUNDS``): pypsrp answers every 401 that carries a new challenge with a new
  token, so a hostile or broken server could draw thousands of logon attempts from one probe
  and lock the account out.
- error mapping (``describe``): short, specific reasons without secrets, each with a failure
  kind; Kerberos reasons (KDC unreachable, clock skew, unknown principal, wrong password, no
  SPN, expired ticket) come from collectors/kerberos.py.
- enumerations are read page by page (``WinRMClient.enumerate`` is a generator the parsers
  consume) and stop past ``max_instances`` per class, so no answer is held whole.

The requests session under pypsrp's transport is built here (its public ``HTTPNegotiateAuth``
for NTLM and Kerberos, requests' Basic auth) and set as the transport's ``session``. The only
hook left that is not public API is pypsrp's ``WSMan._create_header`` (the message id, to check
RelatesTo). So pypsrp is pinned to the minor version tested (pyproject.toml), and
tests/unit/test_pypsrp_pin.py checks that the hook still exists as used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters
import spnego
import spnego.exceptions
import urllib3
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.negotiate import HTTPNegotiateAuth
from pypsrp.shell import CommandState, Process, SignalCode, WinRS
from pypsrp.wsman import NAMESPACES, WSMan
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from ..citrix.licensing import ParseError
from ..citrix.onbox import command_line
from ..citrix.wmi import (
    NS,
    WQL_DIALECT,
    Instance,
    WSManFault,
    enumeration_page,
    parse_fault,
    safe_fromstring,
)
from ..redaction import shorten
from . import kerberos
from .base import CollectorError, Deadline, FailureKind
from .failures import status_kind
from .winrm import (
    Endpoint,
    KerberosConfig,
    WinRMCollectorError,
    describe_fault,
    service_principal,
)

if TYPE_CHECKING:
    from .winrm import WinRMConfig

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


# ---------------------------------------------------------------------------------------------
# Bounding the transport


@dataclass
class Budget:
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


def _tracked_pools(budget: Budget) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3's two pool classes, making connections that ``budget`` knows (so its watchdog
    can shut their sockets): through the pools' public ``ConnectionCls`` attribute."""

    class Connection(HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            budget.track(self)

    class SecureConnection(HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            budget.track(self)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    return {"http": Pool, "https": SecurePool}


class _BoundedAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter whose every wait and every answer is bounded (see module doc)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _tracked_pools(self.budget)

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
    budget: Budget

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

    def __init__(self, endpoint: Endpoint, cfg: WinRMConfig, budget: Budget) -> None:
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


def describe(exc: BaseException, endpoint: Endpoint, cfg: WinRMConfig, budget: Budget,
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


