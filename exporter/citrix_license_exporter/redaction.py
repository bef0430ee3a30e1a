"""Secrets and the scrubbing of every text the exporter writes out (logs, HTTP answers, reports).

A :class:`Secret` is only ever read from a file or an environment variable (settings). Every
secret value read in this process is remembered, and :func:`redact` removes from a text:

- the whole value, and its common escaped forms (URL, JSON, XML/HTML);
- any fragment of it of :data:`MIN_FRAGMENT` characters or more (a peer or a length limit may
  have cut it), and a prefix of it at the very end of the text or a suffix at its very start,
  of :data:`MIN_REDACTED_LENGTH` characters or more (where a cut leaves one);
- a Base64 run that decodes, at any alignment, as UTF-8 or as Latin-1 (HTTP Basic credentials
  are Latin-1), to bytes holding such a fragment: an echoed ``Authorization`` header, whole or
  cut.

Texts are cut only after scrubbing (:func:`shorten`): cutting first can split a secret into
pieces that no longer match it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

#: Shorter values are not scrubbed: they would garble every log line.
MIN_REDACTED_LENGTH = 4
#: Fragments of a secret this long or longer are scrubbed wherever they appear.
MIN_FRAGMENT = 6
REDACTED = "<hidden>"
#: Base64 runs this long or longer are decoded and checked (8 characters decode to 6 bytes).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


class Secret:
    """A credential read from a file or the environment. Its text never shows in repr or str,
    and every secret ever read is scrubbed from log lines and HTTP answers (``redact``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<hidden>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class _Known:
    """Every remembered secret, compiled once per change (copy-on-write: readers never lock)."""

    values: tuple[str, ...] = ()
    #: Whole values, their escaped forms and every fragment of MIN_FRAGMENT characters.
    text: re.Pattern[str] | None = None
    #: The same fragments as bytes (UTF-8 and Latin-1), for decoded Base64 runs.
    raw: re.Pattern[bytes] | None = None
    #: Prefixes (seen at the text's end) and suffixes (at its start) shorter than MIN_FRAGMENT.
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()


_KNOWN = _Known()
_LOCK = threading.Lock()


def _fragments(value: str) -> set[str]:
    if len(value) <= MIN_FRAGMENT:
        return {value}
    return {value[i : i + MIN_FRAGMENT] for i in range(len(value) - MIN_FRAGMENT + 1)}


def _escaped(value: str) -> set[str]:
    return {
        value, quote(value, safe=""), quote_plus(value), html.escape(value),
        json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
    }


def _compile(values: tuple[str, ...]) -> _Known:
    texts: set[str] = set()
    raws: set[bytes] = set()
    prefixes: set[str] = set()
    suffixes: set[str] = set()
    for value in values:
        texts |= _escaped(value)
        fragments = _fragments(value)
        texts |= fragments
        for fragment in fragments:
            raws.add(fragment.encode("utf-8"))
            with contextlib.suppress(UnicodeEncodeError):
                raws.add(fragment.encode("latin-1"))
        for n in range(MIN_REDACTED_LENGTH, min(MIN_FRAGMENT, len(value))):
            prefixes.add(value[:n])
            suffixes.add(value[-n:])

    def alternation(items: set[str]) -> str:
        return "|".join(re.escape(t) for t in sorted(items, key=len, reverse=True))

    return _Known(
        values=values,
        text=re.compile(alternation(texts)) if texts else None,
        raw=re.compile(b"|".join(re.escape(b) for b in sorted(raws, key=len, reverse=True)))
        if raws else None,
        prefixes=tuple(sorted(prefixes, key=len, reverse=True)),
        suffixes=tuple(sorted(suffixes, key=len, reverse=True)),
    )


def remember_secret(value: str) -> None:
    """Scrub ``value`` from everything written from now on (values shorter than 4: never)."""
    global _KNOWN
    if len(value) < MIN_REDACTED_LENGTH or value in _KNOWN.values:
        return
    with _LOCK:
        if value not in _KNOWN.values:
            _KNOWN = _compile(tuple(sorted({*_KNOWN.values, value}, key=len, reverse=True)))


def _decodings(run: str) -> list[bytes]:
    """``run`` decoded as Base64 (standard and URL-safe) at each of the four alignments."""
    out = []
    for start in range(4):
        part = run[start:].rstrip("=")
        part = part[: len(part) - len(part) % 4]
        if not part:
            continue
        for altchars in (b"+/", b"-_"):
            try:
                out.append(base64.b64decode(part, altchars=altchars, validate=True))
            except (binascii.Error, ValueError):
                continue
    return out


def _merge_spans(text: str, spans: list[tuple[int, int]]) -> str:
    spans.sort()
    out: list[str] = []
    pos = 0
    for first, end in spans:
        if end <= pos:
            continue
        out.append(text[pos:max(first, pos)])
        out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` without any secret, whole or in part, plain or Base64-encoded."""
    known = _KNOWN
    if known.text is None:
        return text
    spans = [m.span() for m in known.text.finditer(text)]
    for prefix in known.prefixes:
        if text.endswith(prefix):
            spans.append((len(text) - len(prefix), len(text)))
            break
    for suffix in known.suffixes:
        if text.startswith(suffix):
            spans.append((0, len(suffix)))
            break
    if known.raw is not None:
        raw = known.raw
        for match in _BASE64_RUN.finditer(text):
            if any(raw.search(decoded) for decoded in _decodings(match.group(0))):
                spans.append(match.span())
    if not spans:
        return text
    # Overlapping or adjoining hits become one <hidden>.
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return _merge_spans(text, merged)


def shorten(text: str, limit: int) -> str:
    """``text`` scrubbed, then cut to ``limit`` characters (never the other way round)."""
    text = redact(text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    # A cut through the middle of "<hidden>" would leave a marker that reads as text.
    marker = cut.rfind("<")
    if marker != -1 and REDACTED.startswith(cut[marker:]) and cut[marker:] != REDACTED:
        cut = cut[:marker]
    return cut + "..."
