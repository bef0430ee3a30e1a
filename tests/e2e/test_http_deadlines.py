"""An HTTPS peer that sends its answer a byte at a time is cut off at the probe deadline
(issue 16, defect 7): the deadline counts for the headers and the body as a whole, not per
read, and no socket or worker of the exporter outlives the probe. The same for every HTTP
source (controller, Cloud, catalog ``url`` and ``citrix_feed``: issue 15's one transport), and
an answer over the size cap fails with kind ``limit``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.catalog_sources import SourceError, fetch_source
from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.citrix.policy import PolicyConfig
from citrix_license_exporter.collectors.base import Deadline, FailureKind
from citrix_license_exporter.collectors.cloud import CloudCollector
from citrix_license_exporter.collectors.controller import ControllerCollector
from citrix_license_exporter.config import CatalogSource, Config, load_config
from citrix_license_exporter.probe import Prober
from citrix_license_exporter.simulator.network import make_self_signed

from ..support.exposition import value

HOST = "127.0.0.1"
MODES = ("headers", "body", "huge", "huge_chunked")
SOURCES = ("controller", "cloud", "catalog_url", "catalog_feed")
#: A declared body the "body" mode drips (under the cap, so only the deadline can stop it).
BODY_BYTES = 150_000
CAP = 200_000
DEADLINE = 1.5


class HostileServer:
    """HTTPS on 127.0.0.1 answering every request by ``mode``:

    - ``headers``: the status line and headers a byte every 0.2 s, forever;
    - ``body``: the headers at once (Content-Length BODY_BYTES), then the body a byte every
      0.2 s;
    - ``huge``: Content-Length 50 MB, then bytes as fast as they are taken;
    - ``huge_chunked``: a chunked body that never ends.

    Each connection is watched from this side: it counts as closed once the client has shut
    it (a read sees the end, or a write fails)."""

    def __init__(self, folder: Path, mode: str) -> None:
        cert, key = make_self_signed("hostile", 30, ip_addresses=(HOST,))
        self.ca_file = folder / "hostile.crt"
        self.ca_file.write_bytes(cert)
        (folder / "hostile.key").write_bytes(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.ca_file, folder / "hostile.key")
        self.mode = mode
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.open = 0
        self.served = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _peer_closed(self, tls: ssl.SSLSocket, wait: float) -> bool:
        """True when the client has closed the connection (waits up to ``wait`` seconds)."""
        readable, _, _ = select.select([tls], [], [], wait)
        if not readable:
            return False
        try:
            return tls.recv(65536) == b""
        except (OSError, ssl.SSLError):
            return True

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.served += 1
        try:
            with contextlib.suppress(OSError, ssl.SSLError), conn:
                conn.settimeout(30)
                tls = self.context.wrap_socket(conn, server_side=True)
                tls.recv(65536)
                if self.mode in ("headers", "body"):
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    if self.mode == "headers":
                        drip, head = head + b"X-Pad: " + b"a" * 10_000, b""
                    else:
                        head += b"Content-Length: %d\r\n\r\n" % BODY_BYTES
                        drip = b"[" + b" " * BODY_BYTES
                    tls.sendall(head)
                    for byte in drip:
                        if self.stopped.is_set():
                            return
                        tls.sendall(bytes([byte]))
                        if self._peer_closed(tls, 0.2):
                            return
                    return
                chunk = b" " * 65536
                if self.mode == "huge":
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")
                    while not self.stopped.is_set():
                        tls.sendall(chunk)
                else:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    while not self.stopped.is_set():
                        tls.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        finally:
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def dripping(tmp_path: Path) -> Iterator[HostileServer]:
    server = HostileServer(tmp_path, "headers")
    yield server
    server.close()


def test_headers_a_byte_at_a_time_are_cut_off_at_the_deadline(
    dripping: HostileServer, make_exporter,
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


# ---------------------------------------------------------------------------------------------
# Every HTTP source through the one transport (transport.py), in this process: the sources run
# on an event loop as in the exporter, so the test can see its tasks and its sockets.

def sockets_to(port: int) -> list[str]:
    """The sockets this process holds open to ``port`` on 127.0.0.1 (from /proc: each fd's
    socket inode, matched with the kernel's TCP table). The test servers' own sockets have
    that port as their local one, so they do not count."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
    held = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, inode = fields[2], fields[9]
            if int(remote.rsplit(":", 1)[1], 16) == port and inode in inodes:
                held.append(line.strip())
    return held


def source_config(kind: str, server: HostileServer, tmp_path: Path) -> Config:
    if kind == "controller":
        module: dict[str, Any] = {
            "collectors": ["controller"], "primary": "controller", "timeout": "10s",
            "controller": {"username": "CORP\\svc", "password_env": "HOSTILE_PW",
                           "tls": {"ca_file": str(server.ca_file)}, "cache_interval": "0s",
                           "max_response_bytes": CAP}}
        target: dict[str, Any] = {"controllers": [server.url]}
    else:
        # The module's timeout is shorter than the probe's deadline: the shared fetch then
        # ends on the probe's deadline, not after it.
        module = {
            "collectors": ["cloud"], "primary": "cloud", "timeout": "1s",
            "cloud": {"customer_id": "hostile", "client_id_env": "HOSTILE_ID",
                      "client_secret_env": "HOSTILE_PW", "trust_url": server.url,
                      "licensing_url": server.url, "tls": {"ca_file": str(server.ca_file)},
                      "max_response_bytes": CAP}}
        target = {}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({
        "modules": {"m": module},
        "targets": [{"name": "ls", "address": "ls.example.test", "module": "m", **target}],
    }))
    return load_config(str(path), {"HOSTILE_PW": "Hostile-Secret-7", "HOSTILE_ID": "id"})


async def probe_source(kind: str, server: HostileServer, tmp_path: Path) -> tuple[
        FailureKind | None, str]:
    """Fetch from ``server`` as the exporter does; the failure's kind and reason. Then no
    socket to the server is open (checked before any other await) and no task is left."""
    if kind.startswith("catalog"):
        source = CatalogSource(url=server.url + "/catalog", ca_file=str(server.ca_file),
                               format="citrix_feed" if kind == "catalog_feed" else "catalog")
        with pytest.raises(SourceError) as caught:
            await fetch_source(source, max_bytes=CAP, timeout=DEADLINE)
        result = caught.value.kind, str(caught.value)
    else:
        config = source_config(kind, server, tmp_path)
        collectors: dict[str, Any] = {"controller": ControllerCollector(),
                                      "cloud": CloudCollector()}
        prober = Prober(collectors)
        (target,) = config.targets
        module = config.modules["m"]
        answer = await prober.probe(target, module, Deadline.after(DEADLINE), load_bundled(),
                                    PolicyConfig())
        outcome = answer.outcome(kind)
        assert outcome is not None and not outcome.success
        result = outcome.kind, outcome.error or ""
    assert sockets_to(server.port) == []
    # No task is left: at most the interpreter's async-generator finalizers (httpx's stream
    # iterators abandoned at the size cap), which end within a few loop iterations and do no
    # I/O. A task still waiting on the server would not end in these iterations.
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for _ in range(20):
        if not others:
            break
        await asyncio.sleep(0)
        others = asyncio.all_tasks() - {asyncio.current_task()}
    assert not others, others
    return result


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("source", SOURCES)
def test_every_http_source_is_bounded_and_leaves_nothing_open(
    source: str, mode: str, tmp_path: Path
) -> None:
    server = HostileServer(tmp_path, mode)
    try:
        kind, reason = asyncio.run(probe_source(source, server, tmp_path))
        assert server.served >= 1
        if mode in ("headers", "body"):
            assert kind is FailureKind.TIMEOUT, reason
            phase = "waiting for the headers" if mode == "headers" else "reading the body"
            assert f"response took longer than {'1.5s' if 'catalog' in source else 'the probe deadline'}; stopped ({phase})" in reason, reason  # noqa: E501
        else:
            assert kind is FailureKind.LIMIT, reason
            assert ("response is 50000000 bytes, the limit is 200000" if mode == "huge"
                    else "response is larger than 200000 bytes; stopped") in reason, reason
        assert "Hostile-Secret-7" not in reason
        # The server sees its connection closed by the exporter (it notices within one byte
        # of its drip, or at its next write).
        end = time.monotonic() + 10
        while server.open and time.monotonic() < end:
            time.sleep(0.05)
        assert server.open == 0, f"{server.open} connections still open on the server side"
    finally:
        server.close()
