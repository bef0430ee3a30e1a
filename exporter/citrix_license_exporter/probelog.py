"""The log of one probe: every line the exporter logs while a probe runs, captured for
``/probe?debug=true``, the status page and ``check``.

A ``ContextVar`` holds the probe's ``ProbeLog``; a logging handler on the package logger adds
each record to the log of the context it was emitted in. Asyncio tasks inherit the context by
themselves; a raw ``threading.Thread`` (or ``ThreadPoolExecutor.submit``,
``loop.run_in_executor``) starts with an empty one, so whoever starts a worker thread for a
probe runs it in ``contextvars.copy_context().run`` (``asyncio.to_thread`` does that).

Debug lines are captured whatever ``--log.level`` says (as blackbox_exporter's debug output
does); ``--log.level`` only filters what reaches stderr (log.py sets it on that handler).
Each log is bounded: at most ``MAX_LINES`` lines of at most ``MAX_LINE_CHARS`` characters,
formatted (and so scrubbed of secrets) when captured.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator

from .log import LogfmtFormatter

#: Per probe: a WinRM probe logs about a dozen lines; a hostile peer must not make it more.
MAX_LINES = 200
MAX_LINE_CHARS = 2000
PACKAGE_LOGGER = "citrix_license_exporter"

_current: contextvars.ContextVar[ProbeLog | None] = contextvars.ContextVar(
    "citrix_license_probe_log", default=None
)


class ProbeLog:
    """The lines of one probe. Lines logged after ``close()`` (a cached fetch that outlives
    the probe) are dropped: the probe's answer is already out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._dropped = 0
        self._closed = False
        self.started = time.time()

    def add(self, line: str) -> None:
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f" [line cut at {MAX_LINE_CHARS} characters]"
        with self._lock:
            if self._room():
                self._lines.append(line)

    def wants_line(self) -> bool:
        """Whether a line logged now would be kept (False: closed, or full, which counts it as
        dropped): the handler formats only lines that are kept."""
        with self._lock:
            return self._room()

    def _room(self) -> bool:
        """Under the lock: whether one more line is kept; one past ``MAX_LINES`` is counted."""
        if self._closed:
            return False
        if len(self._lines) >= MAX_LINES:
            self._dropped += 1
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True

    @property
    def lines(self) -> tuple[str, ...]:
        with self._lock:
            lines = tuple(self._lines)
            dropped = self._dropped
        if dropped:
            lines += (f"[{dropped} more lines dropped: at most {MAX_LINES} per probe]",)
        return lines


class CaptureHandler(logging.Handler):
    """Adds each record to the log of the probe running in the record's context."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(LogfmtFormatter())

    def handle(self, record: logging.LogRecord) -> bool:
        # Without logging.Handler's lock: ProbeLog has its own, and the formatter keeps no
        # state of its own. A record logged outside any probe costs one lookup.
        if _current.get() is None or (self.filters and not self.filter(record)):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        probe_log = _current.get()
        if probe_log is None or not probe_log.wants_line():
            return
        try:
            probe_log.add(self.format(record))
        except Exception:  # a log line must never break the probe
            self.handleError(record)


_installed: CaptureHandler | None = None
_install_lock = threading.Lock()


def install() -> None:
    """Attach the capture handler to the package logger once (idempotent). The logger then
    passes debug records on, so the probe log has them; stderr keeps its own level."""
    global _installed
    logger = logging.getLogger(PACKAGE_LOGGER)
    with _install_lock:
        if _installed is None:
            _installed = CaptureHandler()
            logger.addHandler(_installed)
    if logger.level != logging.DEBUG:  # setup_logging() may have run again since
        logger.setLevel(logging.DEBUG)


@contextlib.contextmanager
def capture() -> Iterator[ProbeLog]:
    """Capture this context's log lines (and those of threads started with a copy of it)."""
    install()
    probe_log = ProbeLog()
    token = _current.set(probe_log)
    try:
        yield probe_log
    finally:
        _current.reset(token)
        probe_log.close()
