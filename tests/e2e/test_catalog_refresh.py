"""Following a published release catalog: the real exporter process, a real HTTPS catalog server
on 127.0.0.1 with a generated CA (passed as ca_file, so verification stays on), a 1 s refresh
interval, and polling with deadlines."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citrix_license_exporter.catalog_sources import SourceError, fetch_url
from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.config import CatalogSource

from ..conftest import scenario
from ..support.exposition import value

T = TypeVar("T")
BUNDLED = load_bundled()
assert BUNDLED.generated is not None
G = BUNDLED.generated  # sources older than the bundled catalog are refused
RELEASES = "citrix_license_release_catalog_releases"
SUCCESS = "citrix_license_release_catalog_last_refresh_success"
LAST_OK = "citrix_license_release_catalog_last_refresh_timestamp_seconds"
LATEST = "citrix_license_release_catalog_latest_release_timestamp_seconds"


def day_ts(d: dt.date) -> float:
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()


def catalog_doc(generated: dt.date, *releases: tuple[int, dt.date]) -> bytes:
    lines = ["schema_version: 1", f"generated: {generated.isoformat()}", "releases:"]
    for build, released in releases:
        lines += [
            '  - version: "11.17.2.0"',
            f"    build: {build}",
            f"    released: {released.isoformat()}",
            "    source: test catalog server",
        ]
    return ("\n".join(lines) + "\n").encode()


R56200 = (56200, dt.date(2026, 8, 17))
R57000 = (57000, G + dt.timedelta(days=3))
R58000 = (58000, G + dt.timedelta(days=10))
R59000 = (59000, G + dt.timedelta(days=20))
DOC_A = catalog_doc(G + dt.timedelta(days=1), R56200, R57000)
DOC_B = catalog_doc(G + dt.timedelta(days=2), R56200, R57000, R58000)
DOC_OLDER = catalog_doc(G + dt.timedelta(days=1), R56200, R57000, R58000, R59000)
DOC_MALFORMED = b'schema_version: 1\ngenerated: 2999-01-01\nreleases:\n  - {build: "x"}\n'


# ---------------------------------------------------------------------------------------------
# A catalog server with a CA of its own


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test catalog CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


@dataclass
class CatalogServer:
    """Answers every GET with the current ``mode``: ``("body", bytes)``, ``("status", code)``,
    ``("slow", bytes)`` (one byte every 0.2 s), ``("endless", b"")`` (chunked, never ends),
    ``("redirect", (location, body))`` (``body`` at the location; with ``b""`` every path
    redirects) or ``("gzip", bytes)``."""

    ca_file: Path
    mode: tuple[str, Any] = ("status", 503)
    #: Every request: path, headers (lower-case names) and "done" once the answer ended.
    requests: list[dict[str, Any]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def set(self, mode: str, payload: Any) -> int:
        """Switch the answer; return the number of requests seen so far."""
        self.mode = (mode, payload)
        return len(self.requests)

    def url(self, path: str = "/releases.yaml", userinfo: str = "", query: str = "") -> str:
        return f"https://{userinfo}127.0.0.1:{self.port}{path}{query}"


def _handler(server: CatalogServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            record: dict[str, Any] = {k.lower(): v for k, v in self.headers.items()}
            record.update(path=self.path, done=False)
            server.requests.append(record)
            mode, payload = server.mode
            try:
                if mode == "status":
                    self.send_response(payload)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif mode == "redirect" and not (payload[1] and payload[0].endswith(self.path)):
                    self.send_response(302)
                    self.send_header("Location", payload[0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif mode == "redirect":  # the target of the redirect
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload[1])))
                    self.end_headers()
                    self.wfile.write(payload[1])
                elif mode == "gzip":
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                elif mode == "body":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                elif mode == "slow":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    for i in range(len(payload)):
                        if server.stopping.wait(0.2):
                            return
                        self.wfile.write(payload[i : i + 1])
                        self.wfile.flush()
                elif mode == "endless":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"# padding " * 6500
                    while not server.stopping.is_set():
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True
            finally:
                record["done"] = True

    return Handler


@pytest.fixture
def catalog_server(tmp_path: Path) -> Iterator[CatalogServer]:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    state = CatalogServer(ca_file=ca_file)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.stopping.set()
    httpd.shutdown()
    httpd.server_close()


# ---------------------------------------------------------------------------------------------
# Helpers


def poll(check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """Call ``check`` until it returns something true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def metric(exporter: Any, name: str, **labels: str) -> float | None:
    return value(exporter.get("/metrics").text, name, **labels)


def log_after(exporter: Any, start: int, pattern: str) -> str:
    """The first log line after the first ``start`` lines that matches ``pattern``."""
    regex = re.compile(pattern)
    return poll(
        lambda: next((line for line in exporter.lines[start:] if regex.search(line)), ""),
        f"a log line matching {pattern!r}",
    )


# ---------------------------------------------------------------------------------------------
# Tests


def test_url_source_good_update_taken_bad_ones_refused(
    catalog_server: CatalogServer, fleet_of: Any, make_exporter: Any
) -> None:
    fleet = fleet_of(scenario("ls-ok"))
    config = fleet.exporter_config(Path("."), timeout="5s")
    secret, token = "s3cret-pw", "t0ken-xyz"
    url = catalog_server.url(userinfo=f"reader:{secret}@", query=f"?token={token}")
    label = f"https://***@127.0.0.1:{catalog_server.port}/releases.yaml?token=***"
    config["catalog"] = {
        "sources": [{"url": url, "ca_file": str(catalog_server.ca_file)}],
        "refresh_interval": "1s",
        "timeout": "3s",
        "max_bytes": 4000,
    }
    catalog_server.set("body", DOC_A)
    exporter = make_exporter(config)

    # A good update is taken: the source's releases count, the newest release moves.
    poll(lambda: metric(exporter, RELEASES, source=label) == 2, "catalog A to be taken")
    assert metric(exporter, RELEASES, source="bundled") == len(BUNDLED.releases) - 1
    assert metric(exporter, LATEST) == day_ts(R57000[1])
    assert metric(exporter, SUCCESS) == 1
    assert metric(exporter, LAST_OK) == pytest.approx(time.time(), abs=30)
    exporter.wait_for_log(r"msg=\"catalog source refreshed\".*releases=2")
    # Credentials are used (basic auth from the URL) but never shown.
    auth = catalog_server.requests[-1]["authorization"]
    assert auth == "Basic " + base64.b64encode(f"reader:{secret}".encode()).decode()
    assert catalog_server.requests[-1]["accept-encoding"] == "identity"

    def take_b() -> None:
        catalog_server.set("body", DOC_B)
        poll(lambda: metric(exporter, SUCCESS) == 1 and metric(exporter, RELEASES, source=label)
             == 3, "catalog B to be taken")
        assert metric(exporter, LATEST) == day_ts(R58000[1])

    take_b()
    kept_b = 'kept="generated ' + (G + dt.timedelta(days=2)).isoformat() + '"'
    cases = [
        ("body", DOC_MALFORMED, r"invalid catalog: .*releases\[0\]\.version: required"),
        ("body", DOC_OLDER, r"generated \S+ is older than the catalog in use"),
        ("endless", b"", r"response is larger than 4000 bytes; stopped"),
        ("slow", DOC_B, r"response took longer than 3s; stopped"),
        ("status", 404, r"HTTP 404 Not Found"),
    ]
    for mode, payload, reason in cases:
        lines = len(exporter.lines)
        seen = catalog_server.set(mode, payload)
        if mode == "slow":
            # The refresh runs in the background: a probe is answered while a fetch of the
            # source is still trickling in.
            def in_flight(first: int = seen) -> dict[str, Any] | None:
                return next((r for r in catalog_server.requests[first:] if not r["done"]), None)

            fetch = poll(in_flight, "a slow fetch to start")
            assert value(exporter.get("/probe?target=ls-ok").text, "citrix_license_up") == 1
            assert metric(exporter, RELEASES, source=label) == 3
            assert not fetch["done"], "the slow fetch ended before the probe was answered"
        poll(lambda: metric(exporter, SUCCESS) == 0, f"the {mode} answer to be refused")
        assert len(catalog_server.requests) > seen
        line = log_after(exporter, lines, r"msg=\"catalog source refused, keeping the last good "
                                          r"catalog\".*reason=\"" + reason)
        assert kept_b in line
        # The last good catalog (B) is still in use.
        assert metric(exporter, RELEASES, source=label) == 3
        assert metric(exporter, LATEST) == day_ts(R58000[1])
        if mode != "status":
            take_b()

    # While the source keeps failing, the time of the last success stays put.
    last_ok = metric(exporter, LAST_OK)
    seen = len(catalog_server.requests)
    poll(lambda: len(catalog_server.requests) >= seen + 2, "two more failed attempts")
    assert metric(exporter, SUCCESS) == 0
    assert metric(exporter, LAST_OK) == last_ok
    metrics = exporter.get("/metrics").text
    for text in (metrics, exporter.log()):
        assert secret not in text and token not in text


def test_file_source_read_at_start_on_the_interval_and_on_reload(
    catalog_server: CatalogServer, make_exporter: Any, tmp_path: Path
) -> None:
    path = tmp_path / "mirror" / "releases.yaml"
    path.parent.mkdir()
    path.write_bytes(DOC_A)
    config: dict[str, Any] = {
        "modules": {"default": {}},
        "catalog": {"sources": [{"file": str(path)}], "refresh_interval": "1s"},
    }
    exporter = make_exporter(config)
    label = str(path.resolve())
    # Read before the exporter listens: the first scrape already has it.
    metrics = exporter.get("/metrics").text
    assert value(metrics, RELEASES, source=label) == 2
    assert value(metrics, SUCCESS) == 1

    path.write_bytes(DOC_B)  # edited by hand: re-read on the interval
    poll(lambda: metric(exporter, RELEASES, source=label) == 3, "the edited file to be read")

    path.unlink()  # a missing file is refused, the last good copy kept
    poll(lambda: metric(exporter, SUCCESS) == 0, "the missing file to be refused")
    exporter.wait_for_log(r"reason=\"cannot read .*releases\.yaml: No such file")
    assert metric(exporter, RELEASES, source=label) == 3

    # On reload: the file is re-read at once (the interval is now an hour), and a new URL
    # source is followed.
    path.write_bytes(catalog_doc(G + dt.timedelta(days=3), R56200, R57000, R58000, R59000))
    catalog_server.set("body", DOC_A)
    url = catalog_server.url("/mirror.yaml")
    config["catalog"] = {
        "sources": [{"file": str(path)}, {"url": url, "ca_file": str(catalog_server.ca_file)}],
        "refresh_interval": "1h",
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert exporter.post("/-/reload").status_code == 200
    assert metric(exporter, RELEASES, source=label) == 4
    assert metric(exporter, LATEST) == day_ts(R59000[1])
    # The file comes first: the URL source only contributes builds the file lacks (none).
    poll(lambda: any(r["path"] == "/mirror.yaml" for r in catalog_server.requests),
         "the new URL source to be fetched")
    poll(lambda: metric(exporter, SUCCESS) == 1, "both sources to be read")
    assert metric(exporter, RELEASES, source=url) is None
    exporter.wait_for_log(r"msg=\"catalog source refreshed\" source=" + re.escape(url))


# ---------------------------------------------------------------------------------------------
# One fetch, in this process


def test_fetch_checks_tls_redirects_encoding_and_size(catalog_server: CatalogServer) -> None:
    def fetch(url: str, ca: bool = True, max_bytes: int = 4000) -> bytes:
        source = CatalogSource(url=url, ca_file=str(catalog_server.ca_file) if ca else None)
        return fetch_url(source, max_bytes=max_bytes, timeout=5)

    catalog_server.set("body", DOC_A)
    assert fetch(catalog_server.url()) == DOC_A
    # Verification stays on: without the test CA the server's certificate is not trusted.
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(catalog_server.url(), ca=False)
    # The announced size is refused before the body is read.
    with pytest.raises(SourceError, match=f"response is {len(DOC_A)} bytes, the limit is 100"):
        fetch(catalog_server.url(), max_bytes=100)
    catalog_server.set("gzip", DOC_A)
    with pytest.raises(SourceError, match=r"compressed response \(gzip\) refused"):
        fetch(catalog_server.url())
    # Redirects: followed to https (at most 5), refused to http.
    catalog_server.set("redirect", (catalog_server.url("/moved.yaml"), DOC_B))
    assert fetch(catalog_server.url()) == DOC_B
    catalog_server.set("redirect", (catalog_server.url("/elsewhere.yaml"), b""))
    with pytest.raises(SourceError, match="more than 5 redirects"):
        fetch(catalog_server.url())  # the target redirects again, and again
    plain = f"http://127.0.0.1:{catalog_server.port}/plain.yaml"
    catalog_server.set("redirect", (plain, b""))
    with pytest.raises(SourceError, match="redirected to a URL that is not https"):
        fetch(catalog_server.url())
    assert not any(r["path"] == "/plain.yaml" for r in catalog_server.requests)
    catalog_server.set("status", 500)
    with pytest.raises(SourceError, match="HTTP 500 Internal Server Error"):
        fetch(catalog_server.url())


def test_tls_context_built_once_per_ca_file_across_fetches_and_sources(
    catalog_server: CatalogServer,
) -> None:
    """Every outbound source takes its TLS context from tlscontext: the CA file is loaded once,
    however many fetches, catalog sources and controller/Cloud clients use it."""
    from citrix_license_exporter import tlscontext
    from citrix_license_exporter.collectors.httpjson import new_client
    from citrix_license_exporter.config import TLSConfig

    ca = str(catalog_server.ca_file)
    assert tlscontext.build_count(ca) == 0  # a fresh file of this test's own tmp_path
    catalog_server.set("body", b"hello")
    for source in (CatalogSource(url=catalog_server.url(), ca_file=ca),
                   CatalogSource(url=catalog_server.url("/feed.xml"), ca_file=ca,
                                 format="citrix_feed")):
        for _ in range(3):
            assert fetch_url(source, max_bytes=4000, timeout=5) == b"hello"
    async def controller_client_get() -> bytes:
        async with new_client(TLSConfig(ca_file=ca)) as client:
            return (await client.get(catalog_server.url())).content

    for _ in range(3):
        assert asyncio.run(controller_client_get()) == b"hello"
    assert tlscontext.build_count(ca) == 1
    # A changed CA file is loaded again (once), without a restart.
    catalog_server.ca_file.write_bytes(catalog_server.ca_file.read_bytes() + b"\n")
    for _ in range(2):
        assert fetch_url(CatalogSource(url=catalog_server.url(), ca_file=ca),
                         max_bytes=4000, timeout=5) == b"hello"
    assert tlscontext.build_count(ca) == 2
