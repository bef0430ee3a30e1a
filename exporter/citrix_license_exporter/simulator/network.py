"""The network face of a simulated License Server: the license manager (27000), the vendor
daemon (7279) and Web Services for Licensing (8083, TLS) as real listeners on 127.0.0.1, each on
an ephemeral port, with switchable faults:

- ``ok``: accepts; the Web Services port completes a TLS handshake and answers one HTTP request.
- ``refuse``: the port is bound but not listening, so a connect is refused.
- ``hang``: connects never complete (the accept queue is kept full, so SYNs are dropped) and the
  TLS handshake never starts.
- ``slow``: accepts, then waits ``slow_seconds`` before the TLS handshake.
- ``reset``: accepts, then resets the connection.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .scenario import PORT_NAMES, NetworkScenario

HOST = "127.0.0.1"


def make_self_signed(
    common_name: str, days_left: float, *, ip_addresses: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its key (PEM), like the License Server's default.
    ``ip_addresses`` become IP subject alternative names (to verify https://127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days_left)
    not_before = min(now - dt.timedelta(days=1), not_after - dt.timedelta(days=1))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.DNSName(common_name)]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


WEB_PAGE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
    b"Content-Length: 64\r\n\r\n"
    b"<html><body>Citrix Licensing Manager (SIMULATED)</body></html>\n\n"
)


class PortListener:
    """One simulated port. Its fault can be changed while it runs."""

    def __init__(self, name: str, fault: str, scenario: NetworkScenario,
                 tls: ssl.SSLContext | None) -> None:
        self.name = name
        self.scenario = scenario
        self.tls = tls
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self.port: int = self._sock.getsockname()[1]
        self._fault = "refuse"
        self._listening = False
        self._stopped = threading.Event()
        self._fillers: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self.set_fault(fault)

    @property
    def fault(self) -> str:
        return self._fault

    def set_fault(self, fault: str) -> None:
        with self._lock:
            self._fault = fault
            if fault == "refuse":
                self._rebind(listen=False)
            elif fault == "hang":
                self._rebind(listen=True, backlog=0)
                self._fill_backlog()
            else:
                self._rebind(listen=True, backlog=64)

    def _rebind(self, *, listen: bool, backlog: int = 64) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        if self._listening or not listen:
            # A listening socket cannot stop listening: replace it by a fresh socket bound to
            # the same port (bound but not listening means "connection refused").
            old = self._sock
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):
                old.shutdown(socket.SHUT_RDWR)
            old.close()
            self._sock.bind((HOST, self.port))
            self._listening = False
        if listen:
            self._sock.listen(backlog)
            self._listening = True
            self._thread = threading.Thread(
                target=self._accept_loop, args=(self._sock,), daemon=True,
                name=f"sim-{self.name}-{self.port}",
            )
            self._thread.start()

    def _fill_backlog(self) -> None:
        # With a backlog of 0 the kernel queues one or two connections; once the queue is full
        # further SYNs are dropped and a client's connect() times out, as with a host that
        # silently drops packets.
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect((HOST, self.port))
            self._fillers.append(filler)

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self._stopped.is_set():
            if self._fault == "hang":
                time.sleep(0.05)  # never accept, keeping the queue full
                if sock is not self._sock:
                    return
                continue
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # the socket was replaced or closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        fault = self._fault
        try:
            if fault == "reset":
                _reset(conn)
                return
            if fault == "slow":
                self._stopped.wait(self.scenario.slow_seconds)
            if self.tls is None:
                # License manager / vendor daemon: FlexNet speaks first from the client side;
                # the simulator only holds the connection until the client closes it.
                conn.settimeout(30)
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                conn.close()
                return
            conn.settimeout(30)
            with self.tls.wrap_socket(conn, server_side=True) as tls_conn:
                request = tls_conn.recv(4096)
                if request:
                    tls_conn.sendall(WEB_PAGE)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stopped.set()
        for filler in self._fillers:
            filler.close()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class SimulatedNetwork:
    """The three licensing ports of one simulated License Server."""

    def __init__(self, name: str, scenario: NetworkScenario) -> None:
        self.scenario = scenario
        cert_pem, key_pem = make_self_signed(name, scenario.certificate_days_left)
        self._tmp = tempfile.TemporaryDirectory(prefix="cle-sim-")
        cert_file = Path(self._tmp.name, "cert.pem")
        key_file = Path(self._tmp.name, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.certificate_pem = cert_pem
        self.listeners = {
            port_name: PortListener(
                port_name,
                scenario.ports.get(port_name, "ok"),
                scenario,
                context if port_name == "web_services" else None,
            )
            for port_name in PORT_NAMES
        }

    @property
    def ports(self) -> dict[str, int]:
        return {name: listener.port for name, listener in self.listeners.items()}

    def set_fault(self, port_name: str, fault: str) -> None:
        self.listeners[port_name].set_fault(fault)

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self._tmp.cleanup()
