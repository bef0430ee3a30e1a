"""Logging in the two formats Prometheus components use: logfmt (default) and JSON.

Call sites pass structured fields as ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from .redaction import redact

LEVELS = ("debug", "info", "warn", "error")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


#: The last second formatted, and its text: every probe logs several lines a second, and
#: strftime was a fifth of a line's formatting.
_second: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    global _second
    millis = int(record.msecs)
    second = int(record.created)
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{millis:03d}Z"


def _level(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


#: A value holding any of these is quoted.
_NEEDS_QUOTES = re.compile(r'[ ="\\\n\t]').search


def _logfmt_value(value: object) -> str:
    text = redact(str(value))
    if text and _NEEDS_QUOTES(text) is None:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pairs: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level(record),
            "logger": record.name.removeprefix("citrix_license_exporter."),
            "msg": record.getMessage(),
        }
        pairs.update(_fields(record))
        if record.exc_info:
            pairs["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs.items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level(record),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(
            {key: v if isinstance(v, bool | int | float) or v is None else redact(str(v))
             for key, v in doc.items()}
        )


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    number = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR}[level]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    # The level is the handler's too: probelog.py lowers the package logger's level to capture
    # debug lines per probe, and stderr must still show only what --log.level asks for.
    handler.setLevel(number)
    # Neither format writes a record's source line, thread or process: skip looking them up
    # for every record (the logging HOWTO's "Optimization"; each probe captures several debug
    # lines, probelog.py).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("citrix_license_exporter").setLevel(number)
