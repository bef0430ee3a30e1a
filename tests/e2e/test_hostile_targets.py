"""Targets that attack the exporter by being slow, silent, huge, or too many.

- A flood of concurrent probes at hanging targets is cut at ``--web.max-concurrent-probes``:
  the excess is refused with 503 at once, counted, and the exporter stays responsive.
- Servers that drip one byte a second, answer headers and then nothing, or never answer at all
  (WinRM and the Delivery Controller API) are bounded by the probe deadline, and the threads
  that fetched from them end soon after: nothing piles up.
- 50 MB answers (WinRM, declared and chunked) are refused at the size cap without the
  exporter's memory growing by anything like their size.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from citrix_license_exporter.simulator.https import certificate, write_ca
from citrix_license_exporter.simulator.scenario import parse_scenario

from ..support.exposition import samples, value

HOST = "127.0.0.1"


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def wait_for(check: Any, timeout: float, interval: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


# ---------------------------------------------------------------------------------------------
# Flood


def in_flight(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    return value(metrics, "citrix_license_exporter_probes_in_flight") or 0.0


def test_probe_flood_is_cut_at_the_limit(fleet_of, make_exporter) -> None:
    hang = dict.fromkeys(("license_manager", "vendor_daemon", "web_services"), "hang")
    fleet = fleet_of(parse_scenario({"name": "ls-hang", "network": {"ports": hang}}, "t"),
                     parse_scenario({"name": "ls-ok"}, "t"))
    config = fleet.exporter_config(Path("."), timeout="10s")
    exporter = make_exporter(config, "--web.max-concurrent-probes=4")
    url = exporter.url
    healthy: list[int] = []
    flooding = threading.Event()

    # One client for all (a new client per request costs the test more than the exporter).
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=60))

    def one_probe(_: int) -> int:
        return client.get(f"{url}/probe?target=ls-hang").status_code

    def watch_health() -> None:
        with httpx.Client(timeout=10) as client:
            while True:  # at least once, then for as long as the flood lasts
                healthy.append(client.get(f"{url}/-/healthy").status_code)
                if not flooding.is_set():
                    break
                time.sleep(0.05)

    # Four probes take the four slots and hang until their 10 s deadline.
    with ThreadPoolExecutor(max_workers=4) as holders_pool:
        holders = [holders_pool.submit(one_probe, i) for i in range(4)]
        end = time.monotonic() + 30
        while in_flight(url) < 4:
            assert time.monotonic() < end, "the four probes never ran"
            time.sleep(0.05)
        flooding.set()
        watcher = threading.Thread(target=watch_health)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=46) as pool:
                refused_statuses = list(pool.map(one_probe, range(46)))
            # Refused at once, not after waiting for a slot: every answer came while the
            # four slot holders were still running.
            still_running = [not h.done() for h in holders]
            busy = in_flight(url)
        finally:
            flooding.clear()
            watcher.join()
        served_statuses = [h.result() for h in holders]
    client.close()
    assert refused_statuses == [503] * 46, refused_statuses
    assert all(still_running) and busy == 4, (still_running, busy)
    assert served_statuses == [200] * 4
    refused = refused_statuses
    # The exporter's own endpoints answered throughout.
    assert healthy and set(healthy) == {200}, healthy
    metrics = exporter.get("/metrics").text
    assert value(metrics, "citrix_license_exporter_probes_rejected_total") == len(refused)
    assert value(metrics, "citrix_license_exporter_probes_in_flight") == 0
    # Slots come back: the next probe runs.
    response = exporter.get("/probe?target=ls-ok")
    assert response.status_code == 200 and value(response.text, "citrix_license_up") == 1

    # Scrapers that give up (Prometheus at its scrape timeout) before the answer is written.
    host, port = exporter.address.rsplit(":", 1)
    for _ in range(3):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"GET /probe?target=ls-hang HTTP/1.1\r\nHost: x\r\n\r\n")
    # The abandoned probes end (cancelled, or at their deadline writing to a closed
    # connection): none is left in flight.
    assert wait_for(lambda: in_flight(url) == 0, timeout=60)
    assert exporter.get("/-/healthy").status_code == 200
    assert "Traceback" not in exporter.log(), exporter.log()[-2000:]


# ---------------------------------------------------------------------------------------------
# Slow, silent and dripping servers


class Hostile:
    """A TCP (optionally TLS) server on 127.0.0.1 with one misbehaviour per connection."""

    def __init__(self, behaviour: str, context: ssl.SSLContext | None) -> None:
        self.behaviour = behaviour
        self.context = context
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        self.connections.append(raw)
        with contextlib.suppress(OSError, ssl.SSLError):
            if self.context is not None:
                conn = self.context.wrap_socket(raw, server_side=True)
            conn.settimeout(60)
            conn.recv(65536)  # the request (headers, usually the whole of it)
            if self.behaviour == "silent":
                self.stopped.wait(60)  # never answers, never closes
            elif self.behaviour == "headers_only":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{")
                self.stopped.wait(60)
            elif self.behaviour == "drip":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n")
                while not self.stopped.wait(1.0):
                    conn.sendall(b" ")  # one byte a second, for ever

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[dict[str, Hostile]]:
    cert, key = certificate()
    (tmp_path / "h.crt").write_bytes(cert)
    (tmp_path / "h.key").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "h.crt", tmp_path / "h.key")
    servers = {
        f"{kind}-{behaviour}": Hostile(behaviour, context if kind == "ddc" else None)
        for kind in ("ddc", "winrm")
        for behaviour in ("silent", "headers_only", "drip")
    }
    yield servers
    for server in servers.values():
        server.close()


def test_slow_and_silent_servers_are_bounded(hostile, make_exporter, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hostile-test-password\n")
    ca = write_ca(tmp_path, "ca.pem").name
    config = {
        "modules": {
            "ddc": {"timeout": "4s", "collectors": ["controller"], "controller": {
                "username": "u", "password_file": "pw", "tls": {"ca_file": ca},
                "cache_interval": "1s"}},
            "winrm": {"timeout": "4s", "collectors": ["winrm"], "winrm": {
                "scheme": "http", "auth": "ntlm", "username": "u", "password_file": "pw",
                "cache_interval": "1s"}},
        },
        "targets": [
            {"name": name, "address": HOST, "module": name.split("-")[0],
             **({"controllers": [f"https://{HOST}:{server.port}"]} if name.startswith("ddc")
                else {"winrm_url": f"http://{HOST}:{server.port}/wsman"})}
            for name, server in hostile.items()
        ],
    }
    exporter = make_exporter(config)
    pid = exporter.proc.pid
    exporter.get("/-/healthy")
    threads_before = proc_status(pid, "Threads")

    def probe(name: str) -> tuple[str, httpx.Response, float]:
        start = time.monotonic()
        response = exporter.get(f"/probe?target={name}",
                                headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
        return name, response, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=len(hostile)) as pool:
        results = list(pool.map(probe, hostile))
    for name, response, _ in results:
        assert response.status_code == 200, name
        collector = "controller" if name.startswith("ddc") else "winrm"
        assert value(response.text, "citrix_license_collector_success",
                     collector=collector) == 0, name
        # Ended with a reason of one kind (the deadline, or the garbage itself), not by
        # hanging: the answer came, and the test's timeout guards against a hang.
        kinds = [lab["kind"] for n, lab, v in samples(response.text)
                 if n == "citrix_license_collector_failure" and lab["collector"] == collector
                 and v == 1]
        assert len(kinds) == 1, (name, kinds)
    # The fetches had the module's 4 s; their threads end then, although the servers go on
    # dripping and holding their connections open.
    assert wait_for(lambda: proc_status(pid, "Threads") <= threads_before + 2, timeout=15), (
        threads_before, proc_status(pid, "Threads"))
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    assert fds < 40, f"{fds} file descriptors still open"
    assert exporter.get("/-/healthy").status_code == 200


# ---------------------------------------------------------------------------------------------
# Huge answers


def test_huge_answers_do_not_grow_memory(fleet_of, make_exporter, tmp_path: Path) -> None:
    pool = {"pld": "XDT_PLT_UD", "count": 1, "in_use": 0, "overdraft": 0, "license_type": "R",
            "sa_days": 10}
    fleet = fleet_of(*(
        parse_scenario({"name": f"ls-{fault}", "winrm": {"fault": fault, "pools": [pool]}}, "t")
        for fault in ("huge_answer", "huge_chunked")
    ))
    config = fleet.exporter_config(tmp_path)
    for module in config["modules"].values():
        if "winrm" in module:
            module["winrm"]["cache_interval"] = "1s"
            module["winrm"]["max_response_bytes"] = 2 * 1024 * 1024
    exporter = make_exporter(config)
    pid = exporter.proc.pid
    exporter.get("/probe?target=ls-huge_chunked")  # warm up imports and pools
    rss_before = proc_status(pid, "VmRSS")
    for _ in range(3):
        for server in fleet.servers:
            time.sleep(1.0)  # past the 1 s cache: every probe fetches again
            text = exporter.get(f"/probe?target={server.name}").text
            assert value(text, "citrix_license_collector_success", collector="winrm") == 0
    exporter.wait_for_log(r"target=ls-huge_answer.*exceeds max_response_bytes \(2097152\)")
    exporter.wait_for_log(r"target=ls-huge_chunked.*exceeds max_response_bytes \(2097152\)")
    grown_mb = (proc_status(pid, "VmRSS") - rss_before) / 1024
    # Six answers of 50 MB each were offered; at most one capped answer is held at a time.
    assert grown_mb < 20, f"RSS grew by {grown_mb:.1f} MB"
