"""Secrets and the scrubbing of every text the exporter writes out (logs, HTTP answers, reports).

A :class:`Secret` is only ever read from a file or an environment variable (settings). Every
secret value read in this process is remembered, and :func:`redact` removes from a text:

- the whole value, and its common escaped forms (URL, JSON, XML/HTML);
- what a cut leaves of it (a peer or a length limit may have cut it): any prefix or suffix of
  :data:`MIN_FRAGMENT` characters or more, anywhere, and down to :data:`MIN_REDACTED_LENGTH`
  characters at the very end (a prefix) or start (a suffix) of the text;
- a Base64 run that decodes, at any alignment, as UTF-8 or as Latin-1 (HTTP Basic credentials
  are Latin-1), to bytes holding any :data:`MIN_FRAGMENT`-character piece of it, or a prefix
  at its end: an echoed ``Authorization`` header, whole or cut anywhere.

Inner pieces of a secret in plain text are not hunted: a password made of words ("Kerberos",
"password") would otherwise blank those words in every message.

Texts are cut only after scrubbing (:func:`shorten`): cutting first can split a secret into
pieces that no longer match it.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import threading
from dataclasses import dataclass, field
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
class _One:
    """What is searched for one secret."""

    #: Whole value and its escaped forms, searched with ``in`` first (C speed).
    forms: tuple[str, ...]
    #: The first and last MIN_FRAGMENT characters: a text holding neither (nor a form) holds
    #: no prefix or suffix to hide, and the regular expression is skipped.
    ends: tuple[str, ...]
    #: Forms, then prefixes and suffixes of MIN_FRAGMENT characters or more, longest first.
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class _Known:
    """Every remembered secret, compiled once per change (copy-on-write: readers never lock)."""

    values: tuple[str, ...] = ()
    secrets: tuple[_One, ...] = ()
    #: Fragments as bytes (UTF-8 and Latin-1), for decoded Base64 runs.
    raw: re.Pattern[bytes] | None = None
    #: Prefixes (seen at the text's end) and suffixes (at its start) shorter than MIN_FRAGMENT.
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    raw_prefixes: tuple[bytes, ...] = ()
    #: Base64 runs already looked at (label values repeat across a whole answer).
    runs: dict[str, bool] = field(default_factory=dict, compare=False)


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


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _alternation(items: set[str]) -> str:
    return "|".join(re.escape(item) for item in sorted(items, key=len, reverse=True))


def _alternation_bytes(items: set[bytes]) -> bytes:
    return b"|".join(re.escape(item) for item in sorted(items, key=len, reverse=True))


def _one(value: str) -> _One:
    forms = _escaped(value)
    cuts = {value[:n] for n in range(MIN_FRAGMENT, len(value))} | {
        value[-n:] for n in range(MIN_FRAGMENT, len(value))
    }
    return _One(
        forms=tuple(sorted(forms, key=len, reverse=True)),
        ends=(value[:MIN_FRAGMENT], value[-MIN_FRAGMENT:]),
        pattern=re.compile(_alternation(forms | cuts)),
    )


def _compile(values: tuple[str, ...]) -> _Known:
    raws: set[bytes] = set()
    prefixes: set[str] = set()
    suffixes: set[str] = set()
    for value in values:
        for fragment in _fragments(value):
            raws.add(fragment.encode("utf-8"))
            if _latin1(fragment):
                raws.add(fragment.encode("latin-1"))
        for n in range(MIN_REDACTED_LENGTH, min(MIN_FRAGMENT, len(value))):
            prefixes.add(value[:n])
            suffixes.add(value[-n:])
    return _Known(
        values=values,
        secrets=tuple(_one(value) for value in values),
        raw=re.compile(_alternation_bytes(raws)) if raws else None,
        prefixes=tuple(sorted(prefixes, key=len, reverse=True)),
        suffixes=tuple(sorted(suffixes, key=len, reverse=True)),
        raw_prefixes=tuple(p.encode("utf-8") for p in prefixes)
        + tuple(p.encode("latin-1") for p in prefixes if _latin1(p)),
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
    standard = run.replace("-", "+").replace("_", "/")  # the URL-safe alphabet too
    for start in range(4):
        part = standard[start:].rstrip("=")
        part = part[: len(part) - len(part) % 4]
        if not part:
            continue
        try:
            out.append(base64.b64decode(part, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def _holds_secret(known: _Known, run: str) -> bool:
    for decoded in _decodings(run):
        if known.raw is not None and known.raw.search(decoded):
            return True
        if any(decoded.endswith(prefix) for prefix in known.raw_prefixes):
            return True  # a Basic header cut right after the first characters
    return False


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
    if not known.values:
        return text
    spans: list[tuple[int, int]] = []
    for one in known.secrets:
        if not any(end in text for end in one.ends) \
                and not any(form in text for form in one.forms):
            continue
        spans += [match.span() for match in one.pattern.finditer(text)]
    for prefix in known.prefixes:
        if text.endswith(prefix):
            spans.append((len(text) - len(prefix), len(text)))
            break
    for suffix in known.suffixes:
        if text.startswith(suffix):
            spans.append((0, len(suffix)))
            break
    for match in _BASE64_RUN.finditer(text):
        run = match.group(0)
        hidden = known.runs.get(run)
        if hidden is None:
            hidden = _holds_secret(known, run)
            if len(known.runs) > 4096:
                known.runs.clear()
            known.runs[run] = hidden
        if hidden:
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
