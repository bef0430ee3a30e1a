"""Clients without credentials against the exporter's own HTTP server (issue 16, defects 1, 2, 6
and 16): each costs bounded memory, descriptors and CPU, and /-/healthy keeps answering.

Most tests run the real command line; the deadline test runs the real server in this process
with a short header timeout, so the mechanism (a deadline for the headers as a whole) is shown
without waiting for the default.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from citrix_license_exporter.web import ExporterServer

from ..support.exporter import LISTENING, die_with_parent, serving, write

HOST = "127.0.0.1"
CONFIG = "modules: {default: {collectors: [probe]}}\ntargets: []\n"


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture
def exporter_proc(tmp_path: Path) -> Iterator[object]:
    """Start the exporter with an open-file limit (a subprocess: the limit is per process)."""
    started: list[subprocess.Popen[str]] = []

    def start(
        *args: str, nofile: int | None = None
    ) -> tuple[subprocess.Popen[str], str, list[str]]:
        config = write(tmp_path / "exporter.yml", CONFIG)

        def preexec() -> None:
            die_with_parent()
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        proc = subprocess.Popen(
            [sys.executable, "-m", "citrix_license_exporter.cli", f"--config.file={config}",
             "--web.listen-address=127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=preexec,  # noqa: PLW1509
        )
        started.append(proc)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = LISTENING.search(line)
            if match:
                break
        else:
            raise AssertionError("exporter did not start:\n" + "".join(lines))

        def drain() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)

        threading.Thread(target=drain, daemon=True).start()
        return proc, match.group(1), lines

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def healthy(address: str) -> int:
    return httpx.get(f"http://{address}/-/healthy", timeout=10).status_code


def connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


# ---------------------------------------------------------------------------------------------
# Defect 1: header memory, slow headers


def test_partial_headers_cost_bounded_memory(exporter_proc) -> None:
    proc, address, _ = exporter_proc()
    before = proc_status(proc.pid, "VmRSS")
    socks = []
    try:
        for i in range(150):
            sock = connect(address)
            # Headers that never end, as large as a client may send (and more).
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):
                for _ in range(12):
                    sock.sendall(b"X-Fill-%d: " % i + b"a" * 4000 + b"\r\n")
            socks.append(sock)
        assert healthy(address) == 200
        grown_kib = proc_status(proc.pid, "VmRSS") - before
        # Before the fix: 100 lines of 64 KiB per request, 150 connections took ~930 MB.
        assert grown_kib < 40 * 1024, f"RSS grew by {grown_kib} KiB"
        # Past 32 KiB of unfinished headers the connection is closed.
        assert all(closed_by_server(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    assert healthy(address) == 200


@pytest.mark.parametrize(
    "request_head",
    [
        # Too many header lines.
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(80)),
        # One header line longer than the parser's cap.
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n",
    ],
    ids=["many-lines", "long-line"],
)
def test_oversized_headers_are_refused(exporter_proc, request_head: bytes) -> None:
    _, address, _ = exporter_proc()
    with connect(address) as sock:
        sock.sendall(request_head + b"\r\n")
        answer = read_all(sock)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"400", b"431"), answer[:200]
    assert healthy(address) == 200


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExporterServer]:
    from citrix_license_exporter import web

    monkeypatch.setattr(web, "HEADER_TIMEOUT", 0.5)
    config = write(tmp_path / "exporter.yml", CONFIG)
    with serving(config, HOST) as server:
        yield server


def test_headers_must_be_complete_within_the_deadline_however_paced(
    in_process: ExporterServer,
) -> None:
    address = f"{HOST}:{in_process.server_address[1]}"
    assert in_process.limits.header_timeout == 0.5
    with connect(address) as sock:
        sent = 0
        closed = False
        request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        # One byte every 20 ms: each read is quick, the headers as a whole are not. A timeout
        # per read would never fire; the header deadline does, after about 25 bytes.
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            sent += 1
            time.sleep(0.02)
            sock.settimeout(0)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
        assert closed, "the server kept a connection whose headers never completed"
        assert sent < len(request)
    assert in_process.limits.refused.get("request headers not complete in time") == 1
    assert httpx.get(f"http://{address}/-/healthy", timeout=5).status_code == 200


def test_silent_connection_is_closed_after_the_header_deadline(
    in_process: ExporterServer,
) -> None:
    address = f"{HOST}:{in_process.server_address[1]}"
    with connect(address) as sock:
        assert closed_by_server(sock, timeout=10)


# ---------------------------------------------------------------------------------------------
# Defect 2: descriptors


def test_idle_connections_cannot_exhaust_descriptors(exporter_proc) -> None:
    limit = 400
    proc, address, lines = exporter_proc(nofile=limit)
    socks = []
    try:
        for _ in range(limit + 100):  # more connections than the process has descriptors
            try:
                socks.append(connect(address))
            except OSError:
                break
        time.sleep(0.5)
        open_fds = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
        assert open_fds < limit - 32, f"{open_fds} descriptors in use of {limit}"
        # /-/healthy still answers while the idle connections are held: the longest idle
        # connection made room for it.
        assert healthy(address) == 200
    finally:
        for sock in socks:
            sock.close()
    assert healthy(address) == 200
    time.sleep(0.2)
    assert any("too many connections" in line for line in lines), "".join(lines)
    assert proc.poll() is None


# ---------------------------------------------------------------------------------------------
# Defect 6: request smuggling


@pytest.mark.parametrize(
    "head",
    [
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n",
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["content-length", "chunked", "both"],
)
def test_a_body_is_never_read_as_another_request(exporter_proc, head: bytes) -> None:
    _, address, lines = exporter_proc()
    smuggled = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    if b"chunked" in head and b"Content-Length" not in head:
        body = b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n"
    else:
        body = smuggled
    head = head.replace(b"{n}", str(len(body)).encode())
    with connect(address) as sock:
        sock.sendall(head + body)
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.") == 1, answer
    assert answer.split(b" ", 2)[1] in (b"400", b"413"), answer[:200]
    time.sleep(0.3)
    assert not any("configuration reloaded" in line for line in lines), "".join(lines)
    assert healthy(address) == 200


def test_kept_alive_gets_keep_working_without_bodies(exporter_proc) -> None:
    _, address, _ = exporter_proc()
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            assert client.get(f"http://{address}/-/healthy").status_code == 200
        assert client.post(f"http://{address}/-/reload").status_code == 200


# ---------------------------------------------------------------------------------------------
# Defect 16: SIGHUP storms


def test_sighup_storm_is_coalesced(exporter_proc) -> None:
    proc, address, lines = exporter_proc()
    threads_before = proc_status(proc.pid, "Threads")
    peak = threads_before
    for _ in range(500):
        proc.send_signal(signal.SIGHUP)
        peak = max(peak, proc_status(proc.pid, "Threads"))
    end = time.monotonic() + 10
    while time.monotonic() < end and not any("configuration reloaded" in line for line in lines):
        time.sleep(0.05)
    time.sleep(0.5)
    reloads = sum("configuration reloaded" in line for line in lines)
    assert 1 <= reloads < 500, reloads
    # One reload thread at most (before: a thread per signal, 435 at the peak).
    assert peak <= threads_before + 1, (threads_before, peak)
    assert healthy(address) == 200
