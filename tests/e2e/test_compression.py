"""Answers gzip-compressed for a scraper that asks, as Prometheus does: a real exporter process,
real HTTP, simulated License Servers. (The real Prometheus of the alerting and dashboard suites
scrapes with ``Accept-Encoding: gzip`` too, so it parses these answers as well.)"""

from __future__ import annotations

import gzip
import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import scenario
from ..support.exposition import value

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def raw_get(url: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One GET whose body is left as sent (http.client decodes nothing)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Names and labels of every sample (values differ between two probes: durations)."""
    return {(s.name, tuple(sorted(s.labels.items())))
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def exporter(fleet_of, make_exporter):
    fleet = fleet_of(scenario("ls-ok", certificate_days_left=300))
    return make_exporter(fleet.exporter_config(Path("."), timeout="5s"))


def test_a_probe_asked_for_gzip_is_gzip_and_holds_the_same_answer(exporter) -> None:
    path = "/probe?target=ls-ok&module=network"
    status, headers, wire = raw_get(exporter.url, path, **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "accept-encoding" in headers["vary"].lower()
    assert int(headers["content-length"]) == len(wire)
    text = gzip.decompress(wire).decode("utf-8")
    assert value(text, "citrix_license_up") == 1
    assert len(wire) < len(text)
    _, plain_headers, plain = raw_get(exporter.url, path)
    assert "content-encoding" not in plain_headers
    assert samples(text) == samples(plain.decode("utf-8"))


def test_the_openmetrics_answer_is_compressed_whole(exporter) -> None:
    status, headers, wire = raw_get(exporter.url, "/probe?target=ls-ok&module=network",
                                    **{"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(wire).endswith(b"# EOF\n")


@pytest.mark.parametrize("accept_encoding", [None, "identity", "gzip;q=0", "br", "gzip;q=x",
                                             "*;q=0", "x-gzip;q=0, *"])
def test_a_client_that_does_not_accept_gzip_gets_plain_text(exporter,
                                                           accept_encoding: str | None) -> None:
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    status, got, body = raw_get(exporter.url, "/probe?target=ls-ok&module=network", **headers)
    assert status == 200
    assert "content-encoding" not in got
    assert value(body.decode("utf-8"), "citrix_license_up") == 1


def test_own_metrics_are_compressed_too(exporter) -> None:
    status, headers, wire = raw_get(exporter.url, "/metrics", **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert b"process_cpu_seconds_total" in gzip.decompress(wire)


def test_debug_output_stays_readable_without_decompressing(exporter) -> None:
    status, headers, body = raw_get(exporter.url, "/probe?target=ls-ok&module=network&debug=true",
                                    **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert "content-encoding" not in headers
    assert b"citrix_license_up 1" in body
