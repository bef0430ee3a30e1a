"""The real Prometheus and Alertmanager (Debian packages) as test processes on 127.0.0.1, and a
webhook receiver that records what Alertmanager sends.

Every process runs in its own process group and is stopped by killing the whole group, so
nothing it may have spawned outlives the test session. Everything polls with a deadline; no
fixed sleeps.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

HOST = "127.0.0.1"
T = TypeVar("T")


class Timeout(AssertionError):
    pass


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.2,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= end:
            detail = f"\n{explain()}" if explain is not None else ""
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    """A port that was free a moment ago (callers retry when a race takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------------
# Processes


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies, so even a test run
    killed before its finalizers ran (timeout, SIGKILL) leaves nothing behind."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """A process in its own session (process group), its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Only prctl() runs between fork and exec: safe although the tests use threads.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.pgid = self.proc.pid  # start_new_session: the child leads its own group

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, tail: int = 40) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole group, SIGKILL after ``timeout``; always reaps the child."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait()
        # Anything else left in the group (nothing should be) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self._log.close()


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (from /proc; zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def children_of(pid: int) -> list[int]:
    """Live, non-zombie child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def start_http_process(
    name: str,
    argv_for_port: Callable[[int], list[str]],
    ready_path: str,
    log_path: Path,
    timeout: float = 30.0,
    attempts: int = 3,
) -> tuple[ManagedProcess, str]:
    """Start a server on a free port and wait until ``ready_path`` answers 200. When the port
    was taken in the meantime the process exits: try again on another port."""
    last_log = ""
    for _ in range(attempts):
        port = free_port()
        process = ManagedProcess(name, argv_for_port(port), log_path)
        url = f"http://{HOST}:{port}"

        def ready(process: ManagedProcess = process, url: str = url) -> bool | None:
            if not process.alive():
                return True  # stop polling: it died
            try:
                return httpx.get(url + ready_path, timeout=2).status_code == 200
            except httpx.HTTPError:
                return None

        wait_until(ready, timeout, f"{name} to become ready", explain=process.log)
        if process.alive():
            return process, url
        last_log = process.log()
        process.stop()
    raise RuntimeError(f"{name} did not start:\n{last_log}")


# ---------------------------------------------------------------------------------------------
# Prometheus


class Prometheus:
    def __init__(self, config_file: Path, data_dir: Path, log_path: Path) -> None:
        self.config_file = config_file

        def argv(port: int) -> list[str]:
            return [
                "prometheus",
                f"--config.file={config_file}",
                f"--web.listen-address={HOST}:{port}",
                f"--storage.tsdb.path={data_dir}",
                "--web.enable-lifecycle",
                # A resolved alert is sent at once anyway; firing ones are re-sent this often.
                "--rules.alert.resend-delay=1s",
                "--log.level=info",
            ]

        self.process, self.url = start_http_process("prometheus", argv, "/-/ready", log_path)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises on a PromQL error (the message names the expression)."""
        response = self.client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        response = self.client.get(
            "/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
        )
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.client.get("/api/v1/targets").json()["data"][
            "activeTargets"
        ]
        return active

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.client.get("/api/v1/rules").json()["data"]["groups"]
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.client.get("/api/v1/alerts").json()["data"]["alerts"]
        return alerts

    def reload(self) -> None:
        response = self.client.post("/-/reload")
        if response.status_code != 200:
            raise RuntimeError(f"Prometheus reload failed: {response.text}")

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


class PromQLError(AssertionError):
    pass


# ---------------------------------------------------------------------------------------------
# Alertmanager


class Alertmanager:
    def __init__(self, config_file: Path, data_dir: Path, log_path: Path) -> None:
        def argv(port: int) -> list[str]:
            return [
                "prometheus-alertmanager",
                f"--config.file={config_file}",
                f"--storage.path={data_dir}",
                f"--web.listen-address={HOST}:{port}",
                "--cluster.listen-address=",  # no gossip port, a single instance
                "--log.level=info",
            ]

        self.process, self.url = start_http_process("alertmanager", argv, "/-/ready", log_path)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds (active, silenced and inhibited), with their status."""
        matchers = [f'{name}="{value}"' for name, value in filters.items()]
        response = self.client.get("/api/v2/alerts", params={"filter": matchers})
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


# ---------------------------------------------------------------------------------------------
# Webhook receiver


@dataclass(frozen=True)
class Notification:
    """One alert of one webhook message."""

    receiver: str
    status: str  # firing | resolved (of this alert)
    labels: dict[str, str]
    annotations: dict[str, str]
    received: float  # monotonic

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")

    def __str__(self) -> str:
        return (
            f"{self.status:8} {self.name} instance={self.instance} "
            f"severity={self.labels.get('severity')} receiver={self.receiver}"
        )


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording Alertmanager webhook messages."""

    notifications: list[Notification] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.record(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="webhook")
        self._thread.start()

    def record(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self.messages.append(message)
            for alert in message.get("alerts", []):
                self.notifications.append(
                    Notification(
                        receiver=str(message.get("receiver", "")),
                        status=str(alert.get("status", "")),
                        labels=dict(alert.get("labels", {})),
                        annotations=dict(alert.get("annotations", {})),
                        received=now,
                    )
                )

    def received(
        self,
        labels: Mapping[str, str] | None = None,
        *,
        status: str | None = None,
        since: float = 0.0,
    ) -> list[Notification]:
        """Notifications received at or after ``since`` (monotonic) whose labels include
        ``labels`` and, if given, whose alert status is ``status`` (firing or resolved)."""
        wanted = dict(labels or {})
        with self._lock:
            return [
                n
                for n in self.notifications
                if n.received >= since
                and (status is None or n.status == status)
                and wanted.items() <= n.labels.items()
            ]

    def wait_for(
        self,
        labels: Mapping[str, str],
        timeout: float,
        *,
        status: str = "firing",
        since: float = 0.0,
    ) -> Notification:
        found = wait_until(
            lambda: self.received(labels, status=status, since=since),
            timeout,
            f"a {status} webhook notification with {dict(labels)}",
            explain=self.summary,
        )
        return found[-1]

    def summary(self) -> str:
        with self._lock:
            return "received so far:\n" + "\n".join(f"  {n}" for n in self.notifications)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
