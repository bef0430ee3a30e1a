"""Run the real exporter as a separate process, the way users run it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from citrix_license_exporter.web import ExporterServer

LISTENING = re.compile(r"msg=listening address=(\S+)")
PR_SET_PDEATHSIG = 1
# Resolved in the parent, so the forked child only makes one system call before exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by SIGKILL."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ExporterProcess:
    """``citrix-license-exporter`` started with ``args``; stderr is captured line by line.

    ``launcher``: what the Python interpreter runs, before the flags (default the CLI module;
    ``("-c", code, ...)`` for a wrapper that calls ``cli.main`` itself)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 launcher: Sequence[str] = ("-m", "citrix_license_exporter.cli")) -> None:
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.address: str | None = None
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, "--web.listen-address=127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
            # Only a prctl() call between fork and exec: safe although the parent has threads.
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match:
                self.address = match.group(1)
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 20.0) -> str:
        if not self._ready.wait(timeout) or self.address is None:
            raise RuntimeError("exporter did not start:\n" + self.log())
        return f"http://{self.address}"

    @property
    def url(self) -> str:
        return self.wait_ready()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} in:\n{self.log()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)
        return self.proc.returncode

    def __enter__(self) -> ExporterProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def serving(config_path: Path, host: str = "127.0.0.1") -> Iterator[ExporterServer]:
    """The exporter in this process, on a thread, for ``config_path`` (for tests that change
    the process: a patched constant, a collector registered by the test)."""
    from citrix_license_exporter.app import ExporterState
    from citrix_license_exporter.web import ExporterServer

    server = ExporterServer((host, 0), ExporterState.load(str(config_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.ready.set()
    end = time.monotonic() + 10
    while server._loop is None and time.monotonic() < end:
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
