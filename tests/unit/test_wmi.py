"""WS-Management / WMI answers to licensing data (citrix/wmi.py, citrix/licensing.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from citrix_license_exporter.citrix.licensing import (
    DEFAULT_SERVICES,
    PERMANENT,
    SERVICE_DISPLAY_NAMES,
    SERVICE_STATES,
    LicensePool,
    ParseError,
    ServiceSpec,
    ServiceState,
    assign_pool_ids,
    parse_citrix_date,
    parse_pld,
    parse_service_specs,
)
from citrix_license_exporter.citrix.wmi import (
    enumeration_page,
    parse_fault,
    parse_licenses,
    parse_pools,
    parse_services,
    safe_fromstring,
    services_query,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "winrm"
LIMIT = 8 * 1024 * 1024


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def page(name: str):  # type: ignore[no-untyped-def]
    return enumeration_page(safe_fromstring(load(name), LIMIT))


# -- enumeration ------------------------------------------------------------------------------


def test_enumerate_response_with_more_to_pull() -> None:
    first = page("enumerate_pools.xml")
    assert len(first.instances) == 3
    assert first.context == "uuid:5A9B1D2C-3E4F-4A5B-8C6D-7E8F9A0B1C2D"
    assert not first.end_of_sequence
    vendor = first.instances[0]["VendorString"]
    assert vendor == ";LT=Retail;GP=720;CL=VP,ENT,ADV,STD,AST;SA=1;ODP=0;"
    assert first.instances[0]["HOSTID"] is None  # xsi:nil
    assert first.instances[1]["SubscriptionDate"] == "2026-03-01T00:00:00Z"  # cim:Datetime


def test_pull_response_ends_the_sequence() -> None:
    last = page("pull_pools.xml")
    assert last.end_of_sequence
    assert last.context is None
    assert [i["PLD"] for i in last.instances] == ["MPS_ENT_CCU"]


def test_body_alone_is_accepted() -> None:
    # pypsrp hands over the SOAP Body, tests hand over whole envelopes: both work.
    root = safe_fromstring(load("pull_pools.xml"), LIMIT)
    body = root.find("{http://www.w3.org/2003/05/soap-envelope}Body")
    assert body is not None
    assert len(enumeration_page(body).instances) == 1


def test_answer_without_enumeration_is_an_error() -> None:
    root = safe_fromstring(load("fault_access_denied.xml"), LIMIT)
    with pytest.raises(ParseError, match="EnumerateResponse or PullResponse, got Fault"):
        enumeration_page(root)


# -- safe XML ---------------------------------------------------------------------------------


def test_entity_bomb_is_refused_not_expanded() -> None:
    with pytest.raises(ParseError, match="DTD or entities"):
        safe_fromstring(load("entity_bomb.xml"), LIMIT)


def test_external_entity_is_refused() -> None:
    doc = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b"<x>&e;</x>")
    with pytest.raises(ParseError, match="DTD"):
        safe_fromstring(doc, LIMIT)


def test_oversized_answer_is_refused_before_parsing() -> None:
    with pytest.raises(ParseError, match="exceeds the limit of 1000"):
        safe_fromstring(b"<a>" + b"x" * 2000 + b"</a>", 1000)


@pytest.mark.parametrize("garbage", [b"", b"<s:Envelope", b"\x00\xff\xfe", b"<a></b>"])
def test_malformed_xml_is_a_parse_error(garbage: bytes) -> None:
    with pytest.raises(ParseError, match="not well-formed"):
        safe_fromstring(garbage, LIMIT)


# -- pools ------------------------------------------------------------------------------------


def all_pools() -> tuple[LicensePool, ...]:
    return parse_pools(page("enumerate_pools.xml").instances + page("pull_pools.xml").instances)


def test_pools_from_fixture() -> None:
    pools = {p.pool: p for p in all_pools()}
    assert set(pools) == {
        "XDT_PLT_UD/Retail/2027-01-15",
        "XDT_PLT_UD/Retail/2026-03-01",
        "PVSD_STD_CCS/NFR/none",
        "MPS_ENT_CCU/Retail/2027-01-15",
    }
    main = pools["XDT_PLT_UD/Retail/2027-01-15"]
    assert (main.installed, main.in_use, main.available, main.overdraft) == (500, 412, 88, 50)
    assert main.subscription_advantage == datetime(2027, 1, 15, tzinfo=UTC)
    assert (main.feature.product, main.feature.edition, main.feature.model) == (
        "virtual_apps_desktops", "premium", "user_device")
    unknown = pools["PVSD_STD_CCS/NFR/none"]
    assert (unknown.feature.product, unknown.feature.edition, unknown.feature.model) == (
        "PVSD", "standard", "concurrent")
    assert unknown.subscription_advantage is None


def test_feature_totals_are_sums_over_pools() -> None:
    installed = sum(p.installed for p in all_pools() if p.feature.pld == "XDT_PLT_UD")
    assert installed == 600


def test_pool_ids_do_not_depend_on_wmi_order() -> None:
    instances = list(page("enumerate_pools.xml").instances + page("pull_pools.xml").instances)
    expected = sorted(p.pool for p in parse_pools(instances))
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(instances)
        assert sorted(p.pool for p in parse_pools(instances)) == expected


def test_pools_identical_but_for_vendor_string_get_distinct_stable_ids() -> None:
    base = {"PLD": "XDT_PLT_UD", "Count": "10", "InUseCount": "1", "PooledAvailable": "9",
            "Overdraft": "0", "LicenseType": "Retail", "SubscriptionDate": "2027.0115"}
    a = {**base, "VendorString": ";A;"}
    b = {**base, "VendorString": ";B;"}
    first = {p.pool for p in parse_pools([a, b])}
    assert len(first) == 2
    assert all(p.startswith("XDT_PLT_UD/Retail/2027-01-15/") for p in first)
    assert {p.pool for p in parse_pools([b, a])} == first


def test_fully_identical_pools_are_kept_apart() -> None:
    pool = parse_pools([{"PLD": "XDT_PLT_UD", "Count": "10", "InUseCount": "1",
                         "PooledAvailable": "9", "Overdraft": "0"}])[0]
    ids = [p.pool for p in assign_pool_ids([pool, pool])]
    assert len(set(ids)) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Count": "many"}, r"Count 'many' is not an integer"),
        ({"InUseCount": None}, "property InUseCount is missing"),
        ({"PLD": ""}, "property PLD is missing"),
        ({"PooledAvailable": "-3"}, "PooledAvailable is negative"),
        ({"SubscriptionDate": "next spring"},
         r"SubscriptionDate: date 'next spring' not understood"),
    ],
)
def test_malformed_pool_is_reported(change: dict[str, str | None], message: str) -> None:
    instance: dict[str, str | None] = {"PLD": "XDT_PLT_UD", "Count": "10", "InUseCount": "1",
                                       "PooledAvailable": "9", "Overdraft": "0"}
    instance.update(change)
    with pytest.raises(ParseError, match=message):
        parse_pools([instance])


def test_pld_parsing() -> None:
    assert parse_pld("MPS_ENT_CCU") == parse_pld("MPS_ENT_CCU")
    mps = parse_pld("MPS_ENT_CCU")
    assert (mps.product, mps.edition, mps.model) == ("virtual_apps", "advanced", "concurrent")
    xdt = parse_pld("XDT_ADV_CCS")
    assert (xdt.product, xdt.edition, xdt.model) == ("virtual_apps_desktops", "advanced",
                                                     "concurrent")
    odd = parse_pld("CITRIX")
    assert (odd.product, odd.edition, odd.model) == ("CITRIX", "", "")
    two = parse_pld("CAS_CCU")
    assert (two.product, two.edition, two.model) == ("CAS", "", "concurrent")


# -- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20270115", datetime(2027, 1, 15, tzinfo=UTC)),
        ("2027.0115", datetime(2027, 1, 15, tzinfo=UTC)),
        ("2027-01-15", datetime(2027, 1, 15, tzinfo=UTC)),
        ("2027-01-15T10:00:00Z", datetime(2027, 1, 15, 10, tzinfo=UTC)),
        ("2027-01-15T10:00:00+02:00", datetime(2027, 1, 15, 8, tzinfo=UTC)),
        ("20270115100000.000000+060", datetime(2027, 1, 15, 9, tzinfo=UTC)),
        ("15-jan-2027", datetime(2027, 1, 15, tzinfo=UTC)),
        ("15-JAN-27", datetime(2027, 1, 15, tzinfo=UTC)),
        ("permanent", PERMANENT),
        ("Permanent", PERMANENT),
        ("1-jan-0", PERMANENT),
        ("99991231", PERMANENT),
        ("", None),
        ("   ", None),
    ],
)
def test_date_formats(text: str, expected: object) -> None:
    assert parse_citrix_date(text, "X") == expected


@pytest.mark.parametrize("text", ["2027/01/15", "20271315", "15-foo-2027", "tomorrow", "2027.13"])
def test_unknown_date_formats_are_reported(text: str) -> None:
    with pytest.raises(ParseError, match="X: date"):
        parse_citrix_date(text, "X")


# -- licenses ---------------------------------------------------------------------------------


def test_licenses_from_fixture() -> None:
    licenses = parse_licenses(page("enumerate_licenses.xml").instances)
    by_key = {(x.feature, x.serial): x for x in licenses}
    # FIXTURE-0001 appears twice for one feature: the earlier expiry wins (one series).
    assert by_key[("XDT_PLT_UD", "FIXTURE-0001")].expiry == datetime(2026, 6, 1, tzinfo=UTC)
    assert by_key[("XDT_PLT_UD", "FIXTURE-0002")].expiry is None  # permanent
    assert by_key[("", "FIXTURE-0003")].expiry == datetime(2026, 12, 31, tzinfo=UTC)
    assert len(licenses) == 3


def test_license_without_expiration_is_an_error() -> None:
    with pytest.raises(ParseError, match="ExpirationDate is missing"):
        parse_licenses([{"SerialNumber": "X1", "ExpirationDate": None}])


# -- services ---------------------------------------------------------------------------------


def test_default_services_are_the_four_of_the_evidence() -> None:
    # Reference "Evidence of 2026-12", Services: the 11.17.2 build 44000 docs and the community
    # scripts run against real servers agree on four services; CitrixLicensingSupportService
    # and CitrixLicensingConfigService appear only in old or unverified scripts.
    assert [s.name for s in DEFAULT_SERVICES] == [
        "Citrix Licensing", "CitrixWebServicesforLicensing", "Citrix_GTLicensingProv",
        "CtxLSPortSvc"]
    assert all(s.required for s in DEFAULT_SERVICES)
    assert SERVICE_DISPLAY_NAMES["Citrix_GTLicensingProv"] == "Citrix Licensing WMI"
    assert SERVICE_DISPLAY_NAMES["CtxLSPortSvc"] == "Citrix Licensing Support Service"


def test_services_from_fixture() -> None:
    states = {s.name: s for s in parse_services(page("enumerate_services.xml").instances)}
    assert list(states) == [s.name for s in DEFAULT_SERVICES]
    assert states["Citrix Licensing"].running
    assert states["Citrix_GTLicensingProv"].running
    web = states["CitrixWebServicesforLicensing"]
    assert (web.installed, web.running, web.state_label) == (True, False, "stopped")
    port = states["CtxLSPortSvc"]  # not in the answer: not installed, told apart from stopped
    assert (port.installed, port.running, port.state_label) == (False, False, "not_installed")


def test_services_query_names_every_service_by_name_and_display_name() -> None:
    query = services_query()
    assert query.startswith(
        "SELECT * FROM Win32_Service WHERE Name = 'Citrix Licensing' OR "
        "DisplayName = 'Citrix Licensing' OR Name = 'CitrixWebServicesforLicensing' OR ")
    assert query.count(" OR ") == 7
    assert services_query([ServiceSpec("Citrix Licensing WMI")]) == (
        "SELECT * FROM Win32_Service WHERE Name = 'Citrix Licensing WMI' OR "
        "DisplayName = 'Citrix Licensing WMI'")


def test_service_matched_by_display_name_and_name_first() -> None:
    instances = [
        {"Name": "Citrix_GTLicensingProv", "DisplayName": "Citrix Licensing WMI",
         "State": "Running"},
        # A display name equal to another service's name loses to that name.
        {"Name": "Decoy", "DisplayName": "CtxLSPortSvc", "State": "Stopped"},
        {"Name": "CtxLSPortSvc", "DisplayName": "Citrix Licensing Support Service",
         "State": "Start Pending"},
    ]
    specs = (ServiceSpec("citrix licensing wmi"), ServiceSpec("CtxLSPortSvc", required=False),
             ServiceSpec("Citrix Licensing Support Service"))
    wmi_provider, port, by_display = parse_services(instances, specs)
    assert (wmi_provider.name, wmi_provider.state, wmi_provider.required) == (
        "citrix licensing wmi", "Running", True)
    assert (port.state_label, port.required) == ("start_pending", False)
    assert by_display.state == "Start Pending"


@pytest.mark.parametrize(("state", "label"), [
    ("Running", "running"), ("Stopped", "stopped"), ("Stop Pending", "stop_pending"),
    ("Paused", "paused"), ("Continue Pending", "continue_pending"), ("Unknown", "unknown"),
    ("Degraded (new in a later Windows)", "unknown"), ("NotFound", "not_installed"),
])
def test_service_state_labels_are_a_closed_set(state: str, label: str) -> None:
    assert ServiceState("X", state).state_label == label
    assert label in SERVICE_STATES


def test_service_specs_from_config() -> None:
    assert parse_service_specs(["Citrix Licensing", {"name": "CtxLSPortSvc", "required": False},
                                {"name": "Citrix Licensing WMI"}]) == (
        ServiceSpec("Citrix Licensing"), ServiceSpec("CtxLSPortSvc", False),
        ServiceSpec("Citrix Licensing WMI"))
    assert parse_service_specs([]) == ()


@pytest.mark.parametrize(("raw", "message"), [
    ("Citrix Licensing", "expected a list"),
    (["It's"], r"\[0\]: expected a service name"),
    (["a\\b"], "without quotes, backslashes"),
    (["ok", "x" * 257], r"\[1\]: expected a service name or display name of 1-256"),
    (["", "x"], r"\[0\]"),
    (["   "], r"\[0\]"),
    (["tab\there"], "control characters"),
    ([{"name": "A", "required": "yes"}], r"\[0\]\.required: expected true or false"),
    ([{"name": "A", "optional": True}], "unknown keys"),
    ([{"required": True}], r"\[0\]: expected a service name"),
    (["CtxLSPortSvc", "ctxlsportsvc"], r"\[1\]: service 'ctxlsportsvc' is listed twice"),
    ([7], r"\[0\]"),
])
def test_service_specs_refuse_bad_entries(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_service_specs(raw)


# -- faults -----------------------------------------------------------------------------------


def test_access_denied_fault() -> None:
    fault = parse_fault(safe_fromstring(load("fault_access_denied.xml"), LIMIT))
    assert fault is not None
    assert fault.is_access_denied()
    assert not fault.is_missing_namespace()
    assert fault.code == 5


def test_invalid_namespace_fault() -> None:
    fault = parse_fault(safe_fromstring(load("fault_invalid_namespace.xml"), LIMIT))
    assert fault is not None
    assert fault.is_missing_namespace()
    assert not fault.is_access_denied()
    assert 0x8004100E in fault.provider_codes


def test_invalid_namespace_recognised_from_hresult_text_alone() -> None:
    doc = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>'
           b"<s:Reason><s:Text>The WMI service or the WMI provider returned an unknown error: "
           b"HRESULT 0x8004100e </s:Text></s:Reason></s:Fault></s:Body></s:Envelope>")
    fault = parse_fault(safe_fromstring(doc, LIMIT))
    assert fault is not None
    assert fault.is_missing_namespace()


def test_no_fault_in_a_normal_answer() -> None:
    assert parse_fault(safe_fromstring(load("pull_pools.xml"), LIMIT)) is None


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "00010101000000.000000+999"])
def test_dates_at_the_edge_of_the_calendar_are_reported(text: str) -> None:
    with pytest.raises(ParseError, match="not understood"):
        parse_citrix_date(text, "X")
