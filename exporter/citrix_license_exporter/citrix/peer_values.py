"""Values a peer sends, made safe for the exposition before they reach a label or a sample.

A value can be valid for a parser (JSON allows ``"\\ud800"`` and ``1e400``, XML a 1 MB
attribute) and still break the step from parsed data to metrics: a lone UTF-16 surrogate cannot
be encoded as UTF-8, an integer beyond the float range cannot become a sample, and hours added
to a date can leave the datetime range. The parsers (``wmi.py``, ``controller_api.py``,
``cloud_api.py``, ``uploader_log.py``, ``onbox.py``) pass every peer value through these checks,
so the metrics code only ever sees text it can encode and numbers it can convert; what they
cannot clean they refuse with the parser's own error, which fails the collector with a reason
(docs/reliability.md, "Peer values in the exposition").

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from ..redaction import redact

#: The longest label value taken from a peer, in characters. Longer text keeps its start and
#: gets a short hash of the whole, so two long values that share a prefix stay distinct.
MAX_LABEL_CHARS = 256
#: Counts above this are not exact as float samples (2**53); no licence count comes near it.
MAX_COUNT = 2**53


def clean_text(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` as a label value: lone surrogates replaced by U+FFFD (so it encodes as UTF-8),
    at most ``limit`` characters. Deterministic, so a series keeps its labels across scrapes.
    Scrubbed before it is cut: a cut could leave a piece of a secret that no longer matches it."""
    text = redact(text)
    if not text.isascii():
        # Round trip through UTF-16: proper surrogate pairs join, lone halves become U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{text[: limit - 11]}\u2026[{digest}]"  # 11: the ellipsis and "[8 hex digits]"


def count_in_range(number: int, low: int = 0, high: int = MAX_COUNT) -> bool:
    """Whether a whole number from a peer fits a sample exactly (and its domain)."""
    return low <= number <= high


def add_hours(moment: datetime, hours: float) -> datetime | None:
    """``moment`` plus ``hours``, or None when the result leaves the datetime range."""
    try:
        return moment + timedelta(hours=hours)
    except (OverflowError, ValueError):
        return None
