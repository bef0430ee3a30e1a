"""A peer's odd value or an odd target name ends a probe with up 0 and a reason that says
what happened, in one log line (issue 16, defect 14): never a raw traceback, never "probe
deadline exceeded" for a probe that did not run out of time."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..support.exposition import value

HOST = "127.0.0.1"


def month_13_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate whose notAfter says month 13: OpenSSL serves it, cryptography refuses
    to read it (ValueError)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "month-13")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 12, 15, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(b"301215") == 1
    cert_path, key_path = folder / "m13.crt", folder / "m13.key"
    cert_path.write_text(ssl.DER_cert_to_PEM_cert(der.replace(b"301215", b"301315")))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    cert, key = month_13_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((HOST, 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def test_certificate_with_month_13_is_a_reason_not_a_crash(tls_server: int, make_exporter,
                                                          tmp_path: Path) -> None:
    ports = {"license_manager": tls_server, "vendor_daemon": tls_server,
             "web_services": tls_server}
    exporter = make_exporter({
        "modules": {"network": {"collectors": ["probe"], "timeout": "5s"}},
        "targets": [{"name": "m13", "address": HOST, "module": "network", "ports": ports}],
    })
    response = exporter.get("/probe?target=m13")
    assert response.status_code == 200
    assert value(response.text, "citrix_license_up") == 1  # the ports answer
    assert "citrix_license_web_certificate_expiry_timestamp_seconds" not in response.text
    line = exporter.wait_for_log(r"web services certificate not read")
    assert "the certificate could not be read: ValueError" in line, line
    assert "deadline" not in line
    assert_one_line_per_record(exporter.lines)


def assert_one_line_per_record(lines: list[str]) -> None:
    """Every log line is a logfmt record: no raw traceback lines in between."""
    for line in lines:
        assert line.startswith("ts="), line


def test_overlong_idna_name_is_refused_with_a_reason(make_exporter) -> None:
    exporter = make_exporter({
        "modules": {"network": {"collectors": ["probe"], "timeout": "5s",
                                "allow_unlisted_targets": True}},
        "targets": [],
    })
    for name in ("ä" * 80 + ".example", "a" * 64 + ".example", "x..example"):
        response = exporter.get(f"/probe?target={name}&module=network")
        assert response.status_code == 400, name
        assert "is not a host name or address" in response.text
    assert exporter.get("/-/healthy").status_code == 200
    assert_one_line_per_record(exporter.lines)
    assert not any("deadline" in line for line in exporter.lines)
