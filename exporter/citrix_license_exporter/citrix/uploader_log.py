"""The telemetry uploader's log (``LS\\Logs\\log_ctxuploader.log``) and the upload bundles
waiting in ``LS\\resource\\usage\\``. Pure: bytes and file names in, upload attempts out.

Each upload writes a result block (the only documented part of the format)::

    <CtxUploaderResult><Code>CTX_UPLOADER_SUCCESS</Code><Msg></Msg><t>1678364711</t>
    <UploadType>CTX_UPLOAD_TYPE_COMPLIANCE</UploadType></CtxUploaderResult>

ASSUMPTIONS (docs/windows-setup.md): blocks may span lines and sit among other log text; ``t``
is Unix seconds; any code other than CTX_UPLOADER_SUCCESS is a failure; the compliance
telemetry uploads are those of type CTX_UPLOAD_TYPE_COMPLIANCE (or without a type); bundle
names carry Unix seconds (or milliseconds) of their creation.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterable

from ..redaction import shorten
from .licensing import Bundle, ParseError, UploadAttempt, excerpt

SUCCESS = "CTX_UPLOADER_SUCCESS"
COMPLIANCE = "CTX_UPLOAD_TYPE_COMPLIANCE"
#: Plausible upload times: 2000-01-01 up to 2100-01-01.
MIN_TIME, MAX_TIME = 946_684_800, 4_102_444_800
MAX_BLOCK_CHARS = 16 * 1024

_BLOCK = re.compile(
    rf"<CtxUploaderResult>(.{{0,{MAX_BLOCK_CHARS}}}?)</CtxUploaderResult>", re.DOTALL
)
_FIELD = {
    name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL)
    for name in ("Code", "Msg", "t", "UploadType")
}
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def decode_log(data: bytes) -> str:
    """Text of the log tail: UTF-8, or UTF-16 when a BOM or NUL bytes say so."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    sample = data[:4096]
    if sample and sample.count(0) > len(sample) // 4:
        # A tail cut from a UTF-16 file without its BOM; keep an even alignment.
        even = data[1:] if sample[0] == 0 and len(data) % 2 else data
        return even[: len(even) // 2 * 2].decode("utf-16-le", errors="replace")
    return data.decode("utf-8", errors="replace")


def parse_uploader_log(data: bytes, truncated: bool) -> tuple[UploadAttempt, ...]:
    """Every upload result block in the tail, oldest first.

    ``truncated``: the tail does not start at the beginning of the file, so text before the
    first block may be the end of a cut-off block and is ignored. A non-empty tail without any
    result block, or a block whose fields cannot be read, raises ParseError: the exporter then
    reports the format as unexpected rather than "no uploads".
    """
    text = decode_log(data)
    attempts = []
    for match in _BLOCK.finditer(text):
        attempts.append(_attempt(match.group(1)))
    if not attempts and text.strip():
        # A truncated tail that ends inside a long, block-less stretch still must have one.
        where = "the last" if truncated else "all"
        raise ParseError(
            f"uploader log: no <CtxUploaderResult> block in {where} {len(data)} bytes "
            "(unexpected format?)"
        )
    return tuple(sorted(attempts, key=lambda a: a.time))


def _attempt(block: str) -> UploadAttempt:
    fields = {}
    for name, pattern in _FIELD.items():
        found = pattern.search(block)
        fields[name] = html.unescape(found.group(1).strip()) if found else None
    code, stamp = fields["Code"], fields["t"]
    if not code or not _CODE.match(code):
        raise ParseError(f"uploader log: result block with code {excerpt(code or '')}")
    if stamp is None or not re.fullmatch(r"[0-9]{1,19}", stamp):
        raise ParseError(f"uploader log: result block with time {excerpt(stamp or '')}")
    seconds = int(stamp)
    if not MIN_TIME <= seconds < MAX_TIME:
        raise ParseError(f"uploader log: result block time {seconds} is not Unix seconds")
    return UploadAttempt(
        time=float(seconds),
        code=code,
        upload_type=fields["UploadType"] or "",
        message=shorten(fields["Msg"] or "", 200),
    )


def compliance_attempts(attempts: Iterable[UploadAttempt]) -> tuple[UploadAttempt, ...]:
    """The attempts that count for licensing telemetry."""
    return tuple(a for a in attempts if a.upload_type in (COMPLIANCE, ""))


_BUNDLE = re.compile(r"^(?:upload|ue_lt)_(\d{9,13})\.zip$", re.IGNORECASE)


def parse_bundle_name(name: str) -> Bundle | None:
    """An upload bundle (``upload_<epoch>.zip``, ``ue_lt_<epoch>.zip``), or None for other files."""
    match = _BUNDLE.match(name)
    if not match:
        return None
    digits = match.group(1)
    value = int(digits)
    seconds = value / 1000 if len(digits) >= 12 else float(value)
    if not MIN_TIME <= seconds < MAX_TIME:
        return None
    return Bundle(name=name, time=seconds)


def parse_bundles(names: Iterable[str]) -> tuple[Bundle, ...]:
    bundles = (parse_bundle_name(n) for n in names)
    return tuple(sorted((b for b in bundles if b is not None), key=lambda b: b.time))
