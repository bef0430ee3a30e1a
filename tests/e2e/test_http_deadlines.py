"""An HTTPS peer that sends its answer a byte at a time is cut off at the probe deadline
(issue 16, defect 7): the deadline counts for the headers and the body as a whole, not per
read, and no socket or worker of the exporter outlives the probe."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from citrix_license_exporter.simulator.network import make_self_signed

from ..support.exposition import value

HOST = "127.0.0.1"


class DrippingServer:
    """HTTPS: reads the request, then sends a status line and headers one byte every 0.2 s,
    forever. Counts the connections still open."""

    def __init__(self, folder: Path) -> None:
        cert, key = make_self_signed("drip", 30, ip_addresses=(HOST,))
        (folder / "drip.crt").write_bytes(cert)
        (folder / "drip.key").write_bytes(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "drip.crt", folder / "drip.key")
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.open = 0
        self.served = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.served += 1
        try:
            with contextlib.suppress(OSError), conn:
                conn.settimeout(10)
                tls = self.context.wrap_socket(conn, server_side=True)
                tls.recv(65536)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " \
                    + b"a" * 10_000
                for byte in head:
                    if self.stopped.is_set():
                        return
                    tls.sendall(bytes([byte]))
                    time.sleep(0.2)
        finally:
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def dripping(tmp_path: Path) -> Iterator[DrippingServer]:
    server = DrippingServer(tmp_path)
    yield server
    server.close()


def test_headers_a_byte_at_a_time_are_cut_off_at_the_deadline(
    dripping: DrippingServer, make_exporter,
) -> None:
    exporter = make_exporter({
        "modules": {"ddc": {
            "collectors": ["controller"], "primary": "controller", "timeout": "2s",
            "controller": {"username": "CORP\\svc", "password_env": "DRIP_PW",
                           "tls": {"insecure_skip_verify": True}, "cache_interval": "0s"},
        }},
        "targets": [{"name": "ls", "address": HOST, "module": "ddc",
                     "controllers": [f"https://{HOST}:{dripping.port}"]}],
    }, env={"DRIP_PW": "Drip-Secret-9"})
    for _ in range(3):
        text = exporter.get("/probe?target=ls").text
        assert value(text, "citrix_license_up") == 0
    assert dripping.served >= 3, exporter.log()
    # Each fetch was cut at its deadline: the server sees every connection closed.
    end = time.monotonic() + 10
    while dripping.open and time.monotonic() < end:
        time.sleep(0.1)
    assert dripping.open == 0, f"{dripping.open} connections still held by the exporter"
    line = exporter.wait_for_log(r"collector failed.*controller")
    assert "deadline" in line, line
    assert "Drip-Secret-9" not in exporter.log()
