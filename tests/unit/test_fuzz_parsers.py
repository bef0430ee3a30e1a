"""Every parser of what a target sends, fed hostile and broken input (hypothesis).

The contract each parser promises the collectors: it returns a value of its result type, or it
raises its own documented error (ParseError, VersionParseError, APIFormatError, CatalogError),
whose message is short enough to log. Any other exception (IndexError, OverflowError,
RecursionError...) would turn into an unexplained collector failure and is a bug.

What a parser returns must also survive the step to the exposition (issue 16, defect 3: a
value valid for the parser, such as a lone surrogate, 10**400 or int.MaxValue hours, broke
the answer): every parsed result is run through metrics.py (``probe_families``) and encoded
with prometheus_client's ``generate_latest``, and must be exposable without the safety net in
``metrics.exposable`` having to drop it.

Examples are bounded (``max_examples``) so the whole module runs in a few seconds in CI; the
strategies mix random input with near-valid documents, which is where parsers break.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import string
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from citrix_license_exporter.citrix import controller_api, wmi
from citrix_license_exporter.citrix.catalog import CatalogError, parse_catalog_document
from citrix_license_exporter.citrix.cloud_api import parse_cloud_token, parse_license_servers
from citrix_license_exporter.citrix.controller_api import (
    APIFormatError,
    parse_site,
    parse_site_list,
    parse_timestamp,
    parse_token,
)
from citrix_license_exporter.citrix.licensing import (
    PERMANENT,
    ParseError,
    TelemetrySummary,
    WinRMData,
    parse_citrix_date,
    parse_pld,
    summarize_telemetry,
)
from citrix_license_exporter.citrix.onbox import HEADER, parse_output
from citrix_license_exporter.citrix.uploader_log import (
    decode_log,
    parse_bundle_name,
    parse_uploader_log,
)
from citrix_license_exporter.citrix.versions import (
    LicenseServerVersion,
    VersionParseError,
    parse_version,
)
from citrix_license_exporter.collectors import registry as collectors
from citrix_license_exporter.collectors.cloud import CloudData
from citrix_license_exporter.collectors.controller import ControllerData
from citrix_license_exporter.config import ModuleConfig, TargetConfig
from citrix_license_exporter.metrics import exposable, probe_families
from citrix_license_exporter.probe import Outcome, ProbeResult

#: CI runs 200 fixed examples per parser (a failure is reproducible). A deeper, randomised run:
#: ``CLE_FUZZ_EXAMPLES=5000 pytest --timeout=0 tests/unit/test_fuzz_parsers.py``.
DEEP = int(os.environ.get("CLE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=DEEP or 200,
    deadline=None,  # a 2-core CI machine under load must not fail on timing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not DEEP,
    database=None,
)
MAX_MESSAGE = 400
LIMIT = 8 * 1024 * 1024


def short(exc: BaseException) -> None:
    """A declared error's message is loggable: one bounded line per problem (CatalogError
    lists several problems, one per line)."""
    lines = str(exc).splitlines() if isinstance(exc, CatalogError) else [str(exc)]
    for line in lines:
        assert len(line) <= MAX_MESSAGE, line[:100]
        assert "\n" not in line and "\r" not in line, line[:100]


def contract(call: Callable[[], Any], *errors: type[BaseException]) -> Any:
    try:
        return call()
    except errors as exc:
        short(exc)
        return None


# ---------------------------------------------------------------------------------------------
# Parsed data to an encoded exposition

TARGET = TargetConfig(name="t", address="127.0.0.1", module="m")


class _Families:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def expose(collector: str, data: Any) -> str:
    """``data`` as the one successful collector of a probe: the families the collector builds must
    need no safety net, and the whole probe answer must encode and parse back."""
    result = ProbeResult(TARGET, ModuleConfig(name="m", collectors=(collector,),
                                              primary=collector),
                         (Outcome(collector, True, 0.01, data=data, fetched_at=1.0),))
    unit = collectors.get(collector)
    assert unit is not None
    _, reason = exposable(lambda: unit.exposition(data, result))
    assert reason is None, reason
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(probe_families(result)))  # type: ignore[arg-type]
    text = generate_latest(registry).decode("utf-8")
    assert f'citrix_license_collector_success{{collector="{collector}"}} 1.0' in text
    list(text_string_to_metric_families(text))  # what it wrote, a scraper reads back
    return text


def winrm_data(**parsed: Any) -> WinRMData:
    fields: dict[str, Any] = {
        "license_server_version": None, "version_source": None, "services": (), "pools": (),
        "licenses": (), "attempts": (), "bundles": (),
        "telemetry": TelemetrySummary(None, None, None, 0, 0, None), "telemetry_manual": False,
    }
    fields.update(parsed)
    return WinRMData(**fields)


# ---------------------------------------------------------------------------------------------
# Versions

version_words = st.sampled_from(
    ["build", "Build", "b", "bld", "(Build", ")", ".", ",", "v", " ", "i86_n3", "\t", "\u00a0"]
)
dotted = st.lists(st.integers(0, 10**7), min_size=1, max_size=6).map(
    lambda parts: ".".join(str(p) for p in parts)
)
version_text = st.one_of(
    st.text(max_size=250),
    st.lists(st.one_of(dotted, version_words, st.integers(-5, 10**10).map(str)),
             max_size=8).map(" ".join),
    st.lists(st.one_of(dotted, version_words), max_size=8).map("".join),
)


@FUZZ
@given(version_text)
@example("11.17.2.0 build 0")
@example("1" * 300)
@example("11.17.2.0 build 9999999999")
def test_parse_version_contract(text: str) -> None:
    result = contract(lambda: parse_version(text), VersionParseError)
    if result is not None:
        assert isinstance(result, LicenseServerVersion)
        assert 0 < result.build <= 999_999_999
        assert parse_version(str(result)) == result  # what it prints, it reads back


@FUZZ
@given(st.lists(st.integers(0, 999_999), min_size=2, max_size=4), st.integers(1, 999_999_999))
def test_parse_version_reads_every_documented_spelling(parts: list[int], build: int) -> None:
    dotted_version = ".".join(map(str, parts))
    expected = LicenseServerVersion.of(dotted_version, build)
    for spelling in (f"{dotted_version} build {build}", f"v{dotted_version} build {build} i86_n3",
                     f"{dotted_version}. build {build}", f"{dotted_version} (Build {build})",
                     f"{dotted_version}, build {build}", f"{dotted_version} b{build}"):
        assert parse_version(spelling) == expected, spelling


# ---------------------------------------------------------------------------------------------
# WS-Management XML and WMI instances

NS_S = wmi.NS["s"]
NS_EN = wmi.NS["wsen"]
NS_W = wmi.NS["wsman"]
NS_F = wmi.NS["wsmanfault"]
xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FF),
                   max_size=30)
safe_text = xml_text.map(lambda t: t.replace("&", "&amp;").replace("<", "&lt;"))
prop_names = st.sampled_from(
    ["PLD", "Count", "InUseCount", "PooledAvailable", "Overdraft", "LicenseType",
     "SubscriptionDate", "SerialNumber", "ExpirationDate", "Name", "DisplayName", "State",
     "StartMode", "VendorString"]
)
prop_values = st.one_of(
    safe_text,
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from([str(10**400), str(-(10**400)), str(2**53), str(2**53 + 1), "NaN", "inf",
                     "1e400", "99981231", "99991231", "00010101",
                     "99981231235959.000000-720", "00010101000000.000000+720",
                     "X" * 5000, "XDT_" + "P" * 3000 + "_UD"]),
    st.sampled_from(["permanent", "2027.0115", "20270115", "1-jan-0", "0001-01-01T00:00:00+01:00",
                     "9999-12-31T23:59:59-14:00", "2027-01-15T00:00:00Z", "15-jan-27",
                     "20270115000000.000000+060", "", "Running", "Stopped", "XDT_PLT_UD"]),
)


@st.composite
def wsman_documents(draw: st.DrawFn) -> bytes:
    """Near-valid Enumerate/Pull answers and faults, sometimes cut short or corrupted."""
    items = []
    for _ in range(draw(st.integers(0, 4))):
        props = []
        for _ in range(draw(st.integers(0, 6))):
            name = draw(prop_names)
            if draw(st.booleans()):
                props.append(f"<p:{name} xsi:nil='true'/>")
            elif draw(st.integers(0, 5)) == 0:
                props.append(f"<p:{name}><cim:Datetime>{draw(prop_values)}</cim:Datetime></p:{name}>")
            else:
                props.append(f"<p:{name}>{draw(prop_values)}</p:{name}>")
        items.append("<p:Citrix_GT_License_Pool>" + "".join(props) + "</p:Citrix_GT_License_Pool>")
    kind = draw(st.sampled_from(["EnumerateResponse", "PullResponse", "Fault", "Other"]))
    if kind == "Fault":
        code = draw(st.one_of(st.integers(-(2**40), 2**40).map(str), safe_text))
        body = (f"<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>"
                f"{draw(safe_text)}</s:Value></s:Subcode></s:Code><s:Reason><s:Text>"
                f"{draw(safe_text)}</s:Text></s:Reason><s:Detail><f:WSManFault Code='{code}'>"
                f"<f:Message>{draw(safe_text)}</f:Message></f:WSManFault></s:Detail></s:Fault>")
    elif kind == "Other":
        body = f"<x:{draw(st.sampled_from(['Thing', 'a']))} xmlns:x='urn:x'/>"
    else:
        end = "<w:EndOfSequence/>" if draw(st.booleans()) else ""
        context = f"<n:EnumerationContext>{draw(safe_text)}</n:EnumerationContext>"
        body = f"<n:{kind}>{context}<w:Items>{''.join(items)}</w:Items>{end}</n:{kind}>"
    document = (
        f"<s:Envelope xmlns:s='{NS_S}' xmlns:n='{NS_EN}' xmlns:w='{NS_W}' xmlns:f='{NS_F}' "
        "xmlns:p='urn:p' xmlns:cim='urn:cim' "
        "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()
    mutation = draw(st.sampled_from(["none", "none", "cut", "flip", "prefix"]))
    if mutation == "cut":
        document = document[: draw(st.integers(0, len(document)))]
    elif mutation == "flip":
        at = draw(st.integers(0, len(document) - 1))
        document = document[:at] + draw(st.binary(min_size=1, max_size=4)) + document[at + 1:]
    elif mutation == "prefix":
        document = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"<?xml version='1.0'?>",
                                         b"<?xml version='1.0' encoding='utf-16'?>"])) + document
    return document


def _wmi_pipeline(data: bytes) -> None:
    root = wmi.safe_fromstring(data, LIMIT)
    fault = wmi.parse_fault(root)
    if fault is not None:
        assert len(fault.reason) <= 300
        fault.is_access_denied()
        fault.is_missing_namespace()
        return
    page = wmi.enumeration_page(root)
    _expose_instances(page.instances)


def _expose_instances(items: Any) -> None:
    for parse, key in ((wmi.parse_pools, "pools"), (wmi.parse_licenses, "licenses"),
                       (wmi.parse_services, "services")):
        try:
            parsed = parse(items)
        except ParseError as exc:
            short(exc)
            continue
        expose("winrm", winrm_data(**{key: parsed}))


@FUZZ
@given(st.one_of(wsman_documents(), st.binary(max_size=300)))
@example(b"")
@example(b"<a>" * 5000)  # deep nesting
def test_wsman_parsing_contract(data: bytes) -> None:
    contract(lambda: _wmi_pipeline(data), ParseError)


#: Instances straight from a dict also carry what XML cannot (lone surrogates, NUL).
any_text = st.text(alphabet=st.characters(max_codepoint=0xDFFF), max_size=20)
instances = st.lists(st.dictionaries(prop_names, st.one_of(st.none(), prop_values, any_text),
                                     max_size=8),
                     max_size=5)
POOL = {"PLD": "XDT_PLT_UD", "Count": "1", "InUseCount": "0", "PooledAvailable": "1",
        "Overdraft": "0", "LicenseType": "Retail"}


@FUZZ
@given(instances)
@example([{"PLD": "X", "Count": "1", "InUseCount": "0", "PooledAvailable": "1", "Overdraft": "0",
           "SubscriptionDate": "0001-01-01T00:00:00+01:00"}])
@example([{**POOL, "Count": str(10**400)}])
@example([{**POOL, "PLD": "\ud800", "LicenseType": "\udfff" * 3}])
@example([{**POOL, "PLD": "XDT_" + "P" * 100_000 + "_UD"}])
@example([{**POOL, "SubscriptionDate": "99981231235959.000000-720"}])
@example([{"SerialNumber": "\ud800" + "S" * 10_000, "ExpirationDate": "99981231"}])
def test_wmi_instances_contract(items: list[dict[str, str | None]]) -> None:
    contract(lambda: _expose_instances(items), ParseError)


@FUZZ
@given(st.one_of(st.text(max_size=40), prop_values))
@example("0001-01-01T00:00:00+01:00")
@example("0001-01-01T00:00:00-01:00")
@example("00010101000000.000000+999")
def test_citrix_dates_contract(text: str) -> None:
    result = contract(lambda: parse_citrix_date(text, "field"), ParseError)
    assert result is None or result == PERMANENT or (
        isinstance(result, datetime) and result.tzinfo is not None
    ) or not text.strip()


@FUZZ
@given(st.text(max_size=60))
def test_parse_pld_never_fails(text: str) -> None:
    feature = parse_pld(text)
    assert feature.pld == text


BOMB = (b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode()
                   for i in range(8))
        + b"]><s>&i;</s>")


def test_entity_expansion_is_refused() -> None:
    with pytest.raises(ParseError, match="DTD or entities"):
        wmi.safe_fromstring(BOMB, LIMIT)


def test_external_entities_are_neither_read_nor_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("MARKER-XXE-42")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        documents = [
            f'<!DOCTYPE s [<!ENTITY x SYSTEM "file://{secret}">]><s>&x;</s>',
            f'<!DOCTYPE s SYSTEM "http://127.0.0.1:{port}/evil.dtd"><s/>',
            f'<!DOCTYPE s [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p">%p;]><s/>',
            f'<s xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file://{secret}" '
            'parse="text"/></s>',
        ]
        for document in documents[:3]:
            with pytest.raises(ParseError, match="DTD or entities") as info:
                wmi.safe_fromstring(document.encode(), LIMIT)
            assert "MARKER" not in str(info.value)
        # XInclude parses as an inert element: nothing is included.
        root = wmi.safe_fromstring(documents[3].encode(), LIMIT)
        assert "MARKER" not in "".join(root.itertext())
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody fetched the external DTD


def test_oversized_xml_is_refused_before_parsing() -> None:
    with pytest.raises(ParseError, match="exceeds the limit"):
        wmi.safe_fromstring(b"<a>" + b"x" * 2000 + b"</a>", 1000)


# ---------------------------------------------------------------------------------------------
# The uploader log and the on-box script output

log_pieces = st.one_of(
    st.sampled_from([
        "<CtxUploaderResult>", "</CtxUploaderResult>", "<Code>", "</Code>", "<t>", "</t>",
        "<Msg>", "</Msg>", "<UploadType>", "</UploadType>", "CTX_UPLOADER_SUCCESS",
        "CTX_UPLOAD_TYPE_COMPLIANCE", "1678364711", "99999999999999999999", "&amp;", "&#0;",
        "\r\n", "\x00", "\ufeff", "-1",
    ]),
    st.text(max_size=12),
)
log_text = st.lists(log_pieces, max_size=40).map("".join)
log_bytes = st.one_of(
    log_text.map(lambda t: t.encode("utf-8")),
    log_text.map(lambda t: t.encode("utf-16-le", "surrogatepass")),
    log_text.map(lambda t: t.encode("utf-16")),
    st.binary(max_size=400),
)


@FUZZ
@given(log_bytes, st.booleans())
@example(b"<CtxUploaderResult><Code>X</Code><t>" + b"9" * 5000 + b"</t></CtxUploaderResult>", False)
@example(b"\x00", True)
def test_uploader_log_contract(data: bytes, truncated: bool) -> None:
    assert isinstance(decode_log(data), str)
    attempts = contract(lambda: parse_uploader_log(data, truncated), ParseError)
    for attempt in attempts or ():
        assert 946_684_800 <= attempt.time < 4_102_444_800
        assert len(attempt.message) <= 200
    if attempts:
        expose("winrm", winrm_data(attempts=attempts,
                                   telemetry=summarize_telemetry(attempts, ())))


@FUZZ
@given(st.one_of(st.text(max_size=40),
                 st.from_regex(r"(upload|ue_lt)_[0-9]{1,15}\.zip", fullmatch=True)))
def test_bundle_names_contract(name: str) -> None:
    bundle = parse_bundle_name(name)
    assert bundle is None or 946_684_800 <= bundle.time < 4_102_444_800


b64 = st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())
onbox_field = st.one_of(b64, st.just("-"), st.text(alphabet=string.printable, max_size=10),
                        st.integers(-5, 10**21).map(str))


@st.composite
def onbox_outputs(draw: st.DrawFn) -> bytes:
    records = [HEADER]
    keys = draw(st.lists(st.sampled_from(
        ["registry_version", "uninstall_version", "ls", "log", "file", "end", "bogus"]),
        max_size=9))
    for key in keys:
        fields = draw(st.lists(onbox_field, max_size=3))
        records.append(" ".join([key, *fields]))
    if draw(st.booleans()):
        records.append("end")
    text = "\r\n".join(records)
    if draw(st.integers(0, 4)) == 0:
        return text.encode("utf-8") + draw(st.binary(max_size=8))
    return text.encode("ascii", "replace")


@FUZZ
@given(st.one_of(onbox_outputs(), st.binary(max_size=200)), st.integers(1, 1024))
def test_onbox_output_contract(stdout: bytes, tail_bytes: int) -> None:
    data = contract(lambda: parse_output(stdout, tail_bytes), ParseError)
    if data is not None:
        assert len(data.log_tail) <= tail_bytes


# ---------------------------------------------------------------------------------------------
# Controller and Citrix Cloud JSON

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["2025-01-31T10:00:00Z", "2025-01-31T10:00:00.1234567+01:00",
                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "Running",
                     "Error", "Warning", "OK", "1e400", "3600", "12/30/2015 12:21:15",
                     "2018-03-27T11:12:04.00+00:00", "12/31/9999 23:59:59",
                     "1/1/0001 12:00:00 AM", "\ud800", "a\udfffb", "S" * 5000]),
    st.sampled_from([2147483647, -2147483648, 10**20, 1e20, 10**400, 2**53 + 1]),
    any_text,
)
json_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)
site_keys = st.sampled_from(
    ["Id", "Name", "LicenseServerName", "LicenseServerPort", "LicensingGracePeriodActive",
     "LicensingGraceHoursLeft", "LicensingOutOfBoxGracePeriodActive",
     "PeakConcurrentLicenseUsers", "TotalUniqueLicenseUsers", "LicensedSessionsActive",
     "LicensingAlerts", "LicenseServerStatus", "LicenseInformation", "OutOfBoxGracePeriodActive",
     "AlertLevel", "Items", "Token", "ExpiresAt", "token", "expiresIn", "licenseServersStatus",
     "fqdn", "isPhoningHome", "lastPhoningHomeTime", "isCompliant", "isExpired",
     "isEverReported"]
)
api_docs = st.recursive(
    json_leaf,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(site_keys, children, max_size=8)),
    max_leaves=30,
)
json_wire = st.one_of(api_docs, json_values).map(json.dumps).map(json.loads)
NOW = datetime(2026, 5, 1, tzinfo=UTC)


@FUZZ
@given(json_wire, json_wire, st.one_of(st.none(), st.text(max_size=40),
                                       st.just("Fri, 01 May 2026 00:00:00 GMT")))
@example({"Id": "a", "Name": "b", "LicensingGraceHoursLeft": float("inf")}, None, None)
@example({"Token": "t", "ExpiresAt": "0001-01-01T00:00:00+01:00"}, None, None)
@example({"token": "t", "expiresIn": 1e300}, None, None)
@example({"token": "t", "expiresIn": float("inf")}, None, None)
@example({"Id": "a", "Name": "b", "LicensingGracePeriodActive": True,
           "LicensingGraceHoursLeft": 2147483647}, None, None)
@example({"Id": "a", "Name": "b", "LicensingGracePeriodActive": True,
           "LicensingGraceHoursLeft": 1e20}, None, None)
@example({"Id": "\ud800", "Name": "\ud800", "LicenseServerName": "\udc00"}, None, None)
@example({"Id": "a", "Name": "N" * 100_000, "PeakConcurrentLicenseUsers": 10**400}, None, None)
@example({"licenseServersStatus": [{"fqdn": "a", "lastPhoningHomeTime": "12/31/9999 23:59:59",
                                    "isEverReported": True}]}, None, None)
def test_controller_and_cloud_json_contract(doc: Any, other: Any, date: str | None) -> None:
    contract(lambda: parse_token(doc, date, NOW), APIFormatError)
    contract(lambda: parse_site_list(doc), APIFormatError)
    for site in (contract(lambda: parse_site(doc, other), APIFormatError),
                 contract(lambda: parse_site(doc), APIFormatError)):
        if site is not None:
            expose("controller", ControllerData("https://dc.example.test", (site, site), NOW))
    contract(lambda: controller_api.count_alerts(doc, "alerts"), APIFormatError)
    contract(lambda: parse_cloud_token(doc), APIFormatError)
    servers = contract(lambda: parse_license_servers(doc), APIFormatError)
    for fqdn, server in (servers or {}).items():
        expose("cloud", CloudData(fqdn, server, len(servers), NOW))


@FUZZ
@given(st.one_of(st.text(max_size=40), json_leaf.filter(lambda v: isinstance(v, str))))
@example("0001-01-01T00:00:00+01:00")
@example("9999-12-31T23:59:59-01:00")
def test_timestamps_contract(text: str) -> None:
    moment = contract(lambda: parse_timestamp(text), APIFormatError)
    assert moment is None or moment.tzinfo is not None


# ---------------------------------------------------------------------------------------------
# Release catalog documents (a catalog source may be a URL: untrusted too)

catalog_lines = st.sampled_from([
    "schema_version: 1", "schema_version: 2", "generated: 2026-01-01", "generated: 2021-02-30",
    "releases:", "  - version: 11.17.2.0", "    build: 56200", "    build: -1",
    "    released: 2026-01-01", "    released: yes", "    source: doc",
    "    released_by: 2026-02-01",
    "  - {version: '11.17.2.0', build: 56200, released: 2025-12-01, source: x}",
    "x: &a [1, 2]", "y: [*a, *a, *a]", "- 1", "  - !!python/object:os.system [id]", "\t", "'",
])


@FUZZ
@given(st.one_of(st.lists(catalog_lines, max_size=12).map("\n".join), st.text(max_size=200)))
@example("releases: !!python/object/apply:os.system ['true']\nschema_version: 1\n")
def test_catalog_document_contract(text: str) -> None:
    contract(lambda: parse_catalog_document(text, "fuzz"), CatalogError)


def test_yaml_alias_bomb_is_bounded() -> None:
    # A "billion laughs" of YAML aliases: refused or parsed, but within the size limit and
    # without expanding (the loader shares the aliased nodes).
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    document = "\n".join(lines) + "\nschema_version: 1\nreleases: *a8\n"
    with pytest.raises(CatalogError):
        parse_catalog_document(document, "bomb")
