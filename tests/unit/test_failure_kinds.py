"""The central failure classifier (collectors/failures.py) on real errors: real sockets on
127.0.0.1, real httpx and requests errors, an unresolvable name, an untrusted certificate."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import httpx
import pytest
import requests

from citrix_license_exporter.collectors.base import CollectorError, FailureKind
from citrix_license_exporter.collectors.failures import classify
from citrix_license_exporter.simulator.https import certificate
from citrix_license_exporter.transport import HTTPStatusError

INVALID = "ls-retired.example.invalid"  # RFC 6761: never resolves


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # bound and released: nothing listens there now
    return port


@pytest.fixture
def tls_port(tmp_path) -> Iterator[int]:
    """A TLS server with the simulators' certificate, which no system store trusts."""
    cert, key = certificate()
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def caught(call) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


def test_socket_errors(closed_port: int) -> None:
    refused = caught(lambda: socket.create_connection(("127.0.0.1", closed_port), timeout=5))
    assert classify(refused) is FailureKind.REFUSED
    dns = caught(lambda: socket.create_connection((INVALID, 27000), timeout=5))
    assert classify(dns) is FailureKind.DNS
    assert classify(TimeoutError("timed out")) is FailureKind.TIMEOUT


def test_httpx_errors(closed_port: int, tls_port: int) -> None:
    assert classify(caught(lambda: httpx.get(f"http://127.0.0.1:{closed_port}/"))) is (
        FailureKind.REFUSED)
    assert classify(caught(lambda: httpx.get(f"http://{INVALID}/"))) is FailureKind.DNS
    assert classify(caught(lambda: httpx.get(f"https://127.0.0.1:{tls_port}/"))) is (
        FailureKind.TLS)


def test_requests_errors(closed_port: int, tls_port: int) -> None:
    assert classify(caught(lambda: requests.get(f"http://127.0.0.1:{closed_port}/",
                                                timeout=5))) is FailureKind.REFUSED
    assert classify(caught(lambda: requests.get(f"http://{INVALID}/", timeout=5))) is (
        FailureKind.DNS)
    assert classify(caught(lambda: requests.get(f"https://127.0.0.1:{tls_port}/",
                                                timeout=5))) is FailureKind.TLS


def test_a_hidden_cause_is_still_found(closed_port: int) -> None:
    def wrapped() -> None:
        try:
            socket.create_connection(("127.0.0.1", closed_port), timeout=5)
        except OSError:
            raise CollectorError("port: failed") from None  # the message hides the cause

    assert classify(caught(wrapped)) is FailureKind.REFUSED


@pytest.mark.parametrize(("status", "kind"), [
    (401, FailureKind.AUTH), (403, FailureKind.AUTH), (404, FailureKind.PROTOCOL),
    (500, FailureKind.PROTOCOL), (503, FailureKind.PROTOCOL),
])
def test_http_statuses(status: int, kind: FailureKind) -> None:
    assert classify(HTTPStatusError(f"GET x: HTTP {status}", status)) is kind


def test_explicit_kind_wins_and_unknown_is_internal() -> None:
    assert classify(CollectorError("x", kind=FailureKind.LIMIT)) is FailureKind.LIMIT
    assert classify(RuntimeError("a bug")) is FailureKind.INTERNAL
    assert classify(CollectorError("no idea")) is FailureKind.INTERNAL
