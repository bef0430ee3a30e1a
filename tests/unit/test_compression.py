from __future__ import annotations

import gzip

import pytest

from citrix_license_exporter.compression import accepts_gzip, gzip_bytes


@pytest.mark.parametrize("header", [
    "gzip", "GZIP", "gzip, deflate", "deflate, gzip;q=0.5", "x-gzip", "*", "br;q=1, *;q=0.1",
    "gzip ; q=1", "gzip;q=0.001", "identity;q=1, gzip;q=0.2",
])
def test_accepted(header: str) -> None:
    assert accepts_gzip(header)


@pytest.mark.parametrize("header", [
    "", "identity", "deflate", "br", "gzip;q=0", "gzip;q=0.0", "*;q=0", "gzip;q=0, *",
    "gzip;q=nan", "gzip;q=2", "gzip;q=-1", "gzip;q=", "gzipped", ",,,", "gzip;q=0, *;q=1",
])
def test_refused(header: str) -> None:
    assert not accepts_gzip(header)


def test_gzip_bytes_is_gzip_and_repeatable() -> None:
    body = b"citrix_license_up 1\n" * 100
    assert gzip.decompress(gzip_bytes(body)) == body
    assert gzip_bytes(body) == gzip_bytes(body)  # no timestamp in the header
