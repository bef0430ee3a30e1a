"""The telemetry uploader log, the upload bundles and the telemetry summary."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from citrix_license_exporter.citrix.licensing import (
    Bundle,
    ParseError,
    UploadAttempt,
    summarize_telemetry,
)
from citrix_license_exporter.citrix.uploader_log import (
    compliance_attempts,
    decode_log,
    parse_bundle_name,
    parse_bundles,
    parse_uploader_log,
)

LOG = (Path(__file__).parent.parent / "fixtures" / "winrm" / "log_ctxuploader.log").read_bytes()
SUCCESS, NOV26, NOV27 = 1795572003.0, 1795658431.0, 1795744830.0


def block(t: int | str, code: str = "CTX_UPLOADER_SUCCESS",
          kind: str = "CTX_UPLOAD_TYPE_COMPLIANCE") -> str:
    return (f"<CtxUploaderResult><Code>{code}</Code><Msg></Msg><t>{t}</t>"
            f"<UploadType>{kind}</UploadType></CtxUploaderResult>\r\n")


def test_fixture_attempts() -> None:
    attempts = parse_uploader_log(LOG, truncated=False)
    assert [(a.time, a.code, a.upload_type) for a in attempts] == [
        (SUCCESS, "CTX_UPLOADER_SUCCESS", "CTX_UPLOAD_TYPE_COMPLIANCE"),
        (1795572600.0, "CTX_UPLOADER_SUCCESS", "CTX_UPLOAD_TYPE_CEIP"),
        (NOV26, "CTX_UPLOADER_ERROR_CONNECT", "CTX_UPLOAD_TYPE_COMPLIANCE"),  # multi-line block
        (NOV27, "CTX_UPLOADER_ERROR_CONNECT", "CTX_UPLOAD_TYPE_COMPLIANCE"),
    ]
    assert attempts[2].message == "Could not connect to cis.citrix.com & retry later"


def test_fixture_summary_counts_compliance_uploads_only() -> None:
    attempts = compliance_attempts(parse_uploader_log(LOG, truncated=False))
    summary = summarize_telemetry(attempts, parse_bundles([
        "upload_1795572000.zip", "upload_1795658400.zip", "upload_1795744800.zip", "notes.txt",
    ]))
    assert summary.last_success == SUCCESS
    assert summary.last_attempt == NOV27
    assert summary.last_attempt_success is False
    assert summary.consecutive_failures == 2
    assert summary.pending_bundles == 2  # the bundle of the success is kept, but not pending
    assert summary.oldest_pending_bundle == 1795658400.0


def test_utf16_log_with_bom() -> None:
    data = codecs.BOM_UTF16_LE + LOG.decode("utf-8").encode("utf-16-le")
    assert len(parse_uploader_log(data, truncated=False)) == 4


def test_utf16_tail_cut_at_an_odd_byte() -> None:
    data = LOG.decode("utf-8").encode("utf-16-le")
    tail = data[-1001:]  # a tail cut mid character, without the BOM
    attempts = parse_uploader_log(tail, truncated=True)
    assert attempts[-1].time == NOV27


def test_utf8_bom_is_ignored() -> None:
    assert decode_log(codecs.BOM_UTF8 + b"abc") == "abc"


def test_tail_starting_inside_a_block_ignores_the_cut_block() -> None:
    cut = LOG[LOG.index(b"<Msg></Msg><t>1795572003") :]
    attempts = parse_uploader_log(cut, truncated=True)
    assert [a.time for a in attempts] == [1795572600.0, NOV26, NOV27]


def test_empty_log_has_no_attempts() -> None:
    assert parse_uploader_log(b"", truncated=False) == ()
    assert parse_uploader_log(b"\r\n \r\n", truncated=False) == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"2026-11-27 Upload OK\r\nresult=0\r\n", r"no <CtxUploaderResult> block in all 32 bytes"),
        (block("yesterday").encode(), r"result block with time 'yesterday'"),
        (block(1795744830000).encode(), r"time 1795744830000 is not Unix seconds"),
        (block(12).encode(), r"time 12 is not Unix seconds"),
        (block(1795744830, code="").encode(), r"result block with code ''"),
        (block(1795744830, code="<b>x</b>").encode(), r"result block with code"),
        (b"<CtxUploaderResult><Code>CTX_UPLOADER_SUCCESS</Code></CtxUploaderResult>",
         r"result block with time ''"),
    ],
)
def test_unexpected_formats_are_reported(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_uploader_log(data, truncated=False)


def test_truncated_tail_without_block_names_the_tail() -> None:
    with pytest.raises(ParseError, match="in the last 5 bytes"):
        parse_uploader_log(b"a b c", truncated=True)


def test_a_huge_unclosed_block_is_not_swallowed() -> None:
    # An opening tag whose end is megabytes away is not a result block.
    data = b"<CtxUploaderResult><Code>X</Code>" + b"y" * 100_000 + block(1795744830).encode()
    assert [a.time for a in parse_uploader_log(data, truncated=False)] == [NOV27]


def test_oversized_noisy_tail_parses() -> None:
    # 2.5 MB of noise around one block: a parser that backtracks over the noise would not end
    # within the test timeout. How fast it is belongs to `make bench`, not to an assertion.
    noise = b"2026-11-27 02:00:01 CtxUploader verbose line with some text\r\n" * 20_000
    data = noise + block(1795744830).encode() + noise
    attempts = parse_uploader_log(data, truncated=True)
    assert [a.time for a in attempts] == [NOV27]


def test_garbage_bytes_do_not_crash() -> None:
    data = bytes(range(256)) * 100 + block(1795744830).encode()
    assert parse_uploader_log(data, truncated=True)[0].success


# -- bundles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("upload_1795744800.zip", 1795744800.0),
        ("UPLOAD_1795744800.ZIP", 1795744800.0),
        ("ue_lt_1795744800.zip", 1795744800.0),
        ("ue_lt_1795744800123.zip", 1795744800.123),
        ("upload_1795744800.zip.tmp", None),
        ("upload_.zip", None),
        ("upload_12.zip", None),
        ("Citrix.opt", None),
    ],
)
def test_bundle_names(name: str, expected: float | None) -> None:
    bundle = parse_bundle_name(name)
    assert (bundle.time if bundle else None) == expected


def test_bundles_sorted_oldest_first() -> None:
    assert [b.time for b in parse_bundles(["upload_1795744800.zip", "ue_lt_1795658400.zip"])] == [
        1795658400.0, 1795744800.0]


# -- summary ----------------------------------------------------------------------------------


def attempt(t: float, ok: bool) -> UploadAttempt:
    return UploadAttempt(t, "CTX_UPLOADER_SUCCESS" if ok else "CTX_UPLOADER_ERROR_X",
                         "CTX_UPLOAD_TYPE_COMPLIANCE")


def test_summary_without_any_success() -> None:
    summary = summarize_telemetry([attempt(300, False), attempt(100, False)],
                                  [Bundle("a", 90), Bundle("b", 290)])
    assert summary.last_success is None
    assert summary.last_attempt == 300
    assert summary.consecutive_failures == 2
    assert summary.pending_bundles == 2
    assert summary.oldest_pending_bundle == 90


def test_summary_all_good() -> None:
    summary = summarize_telemetry([attempt(100, True), attempt(200, True)], [Bundle("a", 198)])
    assert (summary.last_success, summary.last_attempt_success) == (200, True)
    assert (summary.consecutive_failures, summary.pending_bundles) == (0, 0)
    assert summary.oldest_pending_bundle is None


def test_summary_of_nothing() -> None:
    summary = summarize_telemetry([], [])
    assert summary.last_attempt is None
    assert summary.last_attempt_success is None
    assert summary.consecutive_failures == 0


def test_absurd_time_values_are_reported_not_crashing() -> None:
    for stamp in ("9" * 5000, "²³", "1795744830.5"):
        with pytest.raises(ParseError, match="uploader log: result block"):
            parse_uploader_log(block(stamp).encode(), truncated=False)
