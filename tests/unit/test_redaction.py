"""Scrubbing: a secret never appears whole or in part, plain, escaped or Base64-encoded, and
texts are cut only after scrubbing (issue 16, defect 11)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from citrix_license_exporter import redaction
from citrix_license_exporter.citrix.wmi import WSManFault
from citrix_license_exporter.collectors.winrm import describe_fault
from citrix_license_exporter.log import JSONFormatter, LogfmtFormatter
from citrix_license_exporter.redaction import REDACTED, Secret, redact, shorten

PASSWORD = "Gr\u00fcn-\u00e4pfel-Ka7ze!"  # Latin-1 letters, as HTTP Basic encodes them


@pytest.fixture(autouse=True)
def remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this module's secrets: other tests' remembered passwords must not decide these.
    monkeypatch.setattr(redaction, "_KNOWN", redaction._Known())
    Secret(PASSWORD)


def fragments_of(text: str, size: int = 6) -> list[str]:
    return [PASSWORD[i : i + size] for i in range(len(PASSWORD) - size + 1) if
            PASSWORD[i : i + size] in text]


def basic(user: str, password: str, encoding: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode(encoding)).decode("ascii")


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_basic_header_is_hidden_in_either_encoding(encoding: str) -> None:
    token = basic("svc", PASSWORD, encoding)
    out = redact(f"server echoed: Authorization: Basic {token} (rejected)")
    assert token not in out and REDACTED in out
    assert out.startswith("server echoed: Authorization: Basic ")


@pytest.mark.parametrize("cut", [12, 16, 20, 25])
def test_a_cut_basic_header_is_hidden_too(cut: int) -> None:
    token = basic("svc", PASSWORD, "latin-1")
    assert token[:cut] not in redact(f"header Basic {token[:cut]}")


@pytest.mark.parametrize("offset", [1, 2, 3, 5])
def test_base64_fragments_at_any_alignment(offset: int) -> None:
    token = base64.b64encode(b"prefix-bytes " + PASSWORD.encode("utf-8")).decode()
    fragment = token[offset + 16 :]
    assert fragment not in redact(f"blob {fragment} end")


def test_fragments_prefixes_and_escaped_forms() -> None:
    assert fragments_of(redact(f"reason: password '{PASSWORD[:10]}' is wrong")) == []
    assert fragments_of(redact(f"tail ...{PASSWORD[-10:]} more")) == []
    assert PASSWORD[:4] not in redact(f"cut off here: {PASSWORD[:4]}")
    assert PASSWORD[-5:] not in redact(f"{PASSWORD[-5:]} was the start of this text")
    for form in (quote(PASSWORD, safe=""), json.dumps(PASSWORD)[1:-1]):
        assert form not in redact(f"value={form}")
    # Ordinary text next to it survives.
    assert redact(f"x: {PASSWORD} :y") == f"x: {REDACTED} :y"


def test_words_inside_a_password_are_not_blanked_elsewhere() -> None:
    Secret("Wrong-Kerberos-Password-8%")
    text = "Kerberos: wrong password or key for user@CORP.EXAMPLE"
    assert redact(text) == text


def test_shorten_scrubs_before_it_cuts() -> None:
    text = "x" * 150 + PASSWORD + " and more text after it"
    cut = shorten(text, 160)
    assert fragments_of(cut, 4) == []
    # The old order (cut, then scrub) would have left the first 10 characters.
    assert PASSWORD[:10] in text[:160]
    assert len(cut) <= 163


def test_ws_man_fault_reason_is_scrubbed_then_cut() -> None:
    reason = "The WS-Management service cannot process the request. " * 2 + \
        f"Credentials 'CORP\\svc:{PASSWORD}' were refused by the server."
    fault = WSManFault(subcode="w:InternalError", code=None, reason=reason)
    text = describe_fault(fault, "reading LicensingService", None)
    assert fragments_of(text, 4) == []
    assert "WS-Management fault while reading LicensingService" in text


def test_log_lines_are_scrubbed_in_both_formats() -> None:
    import logging

    record = logging.LogRecord("citrix_license_exporter.x", logging.ERROR, __file__, 1,
                               "failed", None, None)
    record.fields = {"reason": f"echo Basic {basic('u', PASSWORD, 'latin-1')}",  # type: ignore[attr-defined]
                     "detail": PASSWORD[:10]}
    for formatter in (LogfmtFormatter(), JSONFormatter()):
        line = formatter.format(record)
        assert fragments_of(line) == [] and basic("u", PASSWORD, "latin-1") not in line


@pytest.mark.parametrize("content_type", ["text/plain", "application/openmetrics-text"])
def test_an_answer_stays_parseable_when_a_password_shares_words_with_metric_names(
    content_type: str,
) -> None:
    """A password beginning with "second" once turned every ``_seconds`` into ``_<hidden>s``:
    the answer is scrubbed in its label values (where peer text lands), not in its names."""
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import GaugeMetricFamily
    from prometheus_client.parser import text_string_to_metric_families

    from citrix_license_exporter.exposition import encode

    password = "second-Secret-2"
    Secret(password)
    duration = GaugeMetricFamily("citrix_license_probe_duration_seconds", "How long it took.")
    duration.add_metric([], 0.25)
    echoed = GaugeMetricFamily("citrix_license_info", "Echoed by a peer.", labels=["edition"])
    echoed.add_metric([f"Platinum {password}"], 1)
    echoed.add_metric([f"cut at sec{password[3:9]}"], 1)
    encoder, negotiated = choose_encoder(content_type)
    text = encode([duration, echoed], encoder, negotiated).decode("utf-8")
    assert "citrix_license_probe_duration_seconds 0.25" in text
    families = {f.name: f for f in text_string_to_metric_families(text.replace("# EOF\n", ""))}
    assert families["citrix_license_probe_duration_seconds"].samples[0].value == 0.25
    editions = [s.labels["edition"] for s in families["citrix_license_info"].samples]
    assert all(password not in e and "second" not in e for e in editions), editions
    assert editions[0] == f"Platinum {REDACTED}"
