"""Issue 16, defect 3, as a class: a value a peer sends that is valid for the parser must never
break the step from parsed data to the exposition. Each case below once raised inside the
exposition (no HTTP answer at all); now it is cleaned (label text), left out (a number outside
its domain) or refused by its parser with a reason (the collector fails, ``up 0``).
The fuzz tests in test_fuzz_parsers.py hold the same for random input."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from citrix_license_exporter.citrix import wmi
from citrix_license_exporter.citrix.cloud_api import parse_license_servers
from citrix_license_exporter.citrix.controller_api import APIFormatError, parse_site
from citrix_license_exporter.citrix.licensing import ParseError
from citrix_license_exporter.citrix.peer_values import MAX_LABEL_CHARS, add_hours, clean_text
from citrix_license_exporter.collectors import registry
from citrix_license_exporter.collectors.cloud import CloudData
from citrix_license_exporter.collectors.controller import ControllerData
from citrix_license_exporter.config import ModuleConfig, TargetConfig
from citrix_license_exporter.metrics import probe_families
from citrix_license_exporter.probe import Outcome, ProbeResult

from ..support.exposition import samples, value
from .test_fuzz_parsers import winrm_data

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
TARGET = TargetConfig(name="t", address="127.0.0.1", module="m")
POOL = {"PLD": "XDT_PLT_UD", "Count": "100", "InUseCount": "10", "PooledAvailable": "90",
        "Overdraft": "10", "LicenseType": "Retail", "SubscriptionDate": "2027.0115"}


class _Families:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def encode(result: ProbeResult) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(probe_families(result)))  # type: ignore[arg-type]
    return generate_latest(registry).decode("utf-8")


def probe(collector: str, data: Any, *others: Outcome) -> str:
    outcomes = (Outcome(collector, True, 0.01, data=data, fetched_at=1.0), *others)
    module = ModuleConfig(name="m", collectors=tuple(o.collector for o in outcomes),
                          primary=collector)
    return encode(ProbeResult(TARGET, module, outcomes))


def site_json(**fields: Any) -> Any:
    """A site detail as it arrives: JSON text from the wire, decoded."""
    return json.loads(json.dumps({"Id": "s1", "Name": "Production", **fields}))


# -- the reported cases -------------------------------------------------------------------------


@pytest.mark.parametrize("hours", [2147483647, 1e20, -1])
def test_grace_hours_out_of_range_with_grace_active(hours: float) -> None:
    # .NET int.MaxValue and 1e20 once raised OverflowError (date out of range; int too large
    # for C) while building citrix_license_site_supplemental_grace_end_timestamp_seconds.
    site = parse_site(site_json(LicensingGracePeriodActive=True, LicensingGraceHoursLeft=hours))
    assert site.grace_hours_left is None  # a sentinel, not a time left: the end is unknown
    text = probe("controller", ControllerData("https://dc", (site,), NOW))
    assert value(text, "citrix_license_up") == 1
    assert value(text, "citrix_license_site_supplemental_grace_active", site="Production") == 1
    assert value(text, "citrix_license_site_supplemental_grace_end_timestamp_seconds") is None


def test_grace_hours_in_range_still_give_the_end() -> None:
    site = parse_site(site_json(LicensingGracePeriodActive=True, LicensingGraceHoursLeft=100))
    text = probe("controller", ControllerData("https://dc", (site,), NOW))
    end = value(text, "citrix_license_site_supplemental_grace_end_timestamp_seconds")
    assert end == NOW.timestamp() + 100 * 3600


def test_site_name_with_a_lone_surrogate() -> None:
    # '"\ud800"' is valid JSON; its str cannot be encoded as UTF-8 (UnicodeEncodeError).
    detail = json.loads('{"Id": "s\\udc00", "Name": "Branch \\ud800", '
                        '"LicenseServerName": "ls\\ud800.example"}')
    site = parse_site(detail)
    text = probe("controller", ControllerData("https://dc", (site,), NOW))
    assert value(text, "citrix_license_site_info", site="Branch \ufffd",
                 license_server="ls\ufffd.example") == 1


def test_wmi_pool_count_of_ten_to_the_400() -> None:
    # float(10**400) raised OverflowError in the exposition; now the parser refuses the pool,
    # so the collector fails with a reason (up 0 when WinRM is the primary collector).
    with pytest.raises(ParseError, match=rf"Count '1000.*' is out of range \(at most {2**53}\)"):
        wmi.parse_pools([{**POOL, "Count": str(10**400)}])
    for name in ("InUseCount", "PooledAvailable", "Overdraft"):
        with pytest.raises(ParseError, match=f"{name} .* out of range"):
            wmi.parse_pools([{**POOL, name: str(-(10**30) if name == "Overdraft" else 10**30)}])
    assert wmi.parse_pools([{**POOL, "Count": str(2**53)}])[0].installed == 2**53


@pytest.mark.parametrize("text", ["NaN", "inf", "-inf", "1e400", "1.5"])
def test_wmi_counts_that_are_not_whole_numbers(text: str) -> None:
    with pytest.raises(ParseError, match="is not an integer"):
        wmi.parse_pools([{**POOL, "Count": text}])


@pytest.mark.parametrize("number", [float("nan"), float("inf"), 1.5])
def test_controller_counts_that_are_not_whole_numbers(number: float) -> None:
    with pytest.raises(APIFormatError, match="PeakConcurrentLicenseUsers: expected an integer"):
        parse_site({"Id": "s", "Name": "n", "PeakConcurrentLicenseUsers": number})


@pytest.mark.parametrize("number", [10**400, -1, 2**53 + 1])
def test_controller_counts_outside_their_domain_are_left_out(number: int) -> None:
    site = parse_site({"Id": "s", "Name": "n", "PeakConcurrentLicenseUsers": number,
                       "LicenseServerPort": 70000})
    assert (site.peak_concurrent_users, site.license_server_port) == (None, None)
    text = probe("controller", ControllerData("https://dc", (site,), NOW))
    assert value(text, "citrix_license_site_peak_concurrent_users") is None
    assert value(text, "citrix_license_site_info", license_server="") == 1


def test_far_dates_reach_the_exposition_or_their_parser_refuses_them() -> None:
    pools = wmi.parse_pools([{**POOL, "SubscriptionDate": "99981231235959.000000-720"}])
    licenses = wmi.parse_licenses([{"SerialNumber": "S1", "ExpirationDate": "00010101"},
                                   {"SerialNumber": "S2", "ExpirationDate": "99981231"}])
    text = probe("winrm", winrm_data(pools=pools, licenses=licenses))
    assert value(text, "citrix_license_expiry_timestamp_seconds", serial="S1") == (
        datetime(1, 1, 1, tzinfo=UTC).timestamp())
    assert value(text, "citrix_license_subscription_advantage_timestamp_seconds") == (
        datetime(9999, 1, 1, 11, 59, 59, tzinfo=UTC).timestamp())
    with pytest.raises(ParseError, match="not understood"):  # year 1 minus an offset
        wmi.parse_pools([{**POOL, "SubscriptionDate": "00010101000000.000000+720"}])
    servers = parse_license_servers({"licenseServersStatus": [
        {"fqdn": "far", "lastPhoningHomeTime": "12/31/9999 23:59:59"}]})
    text = probe("cloud", CloudData("far", servers["far"], 1, NOW))
    assert value(text, "citrix_license_cloud_last_report_timestamp_seconds") == (
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    with pytest.raises(APIFormatError, match="in range"):
        parse_license_servers({"licenseServersStatus": [
            {"fqdn": "x", "lastPhoningHomeTime": "9999-12-31T23:59:59-14:00"}]})
    assert add_hours(datetime(9999, 12, 31, tzinfo=UTC), 48) is None


def test_huge_label_text_is_capped_and_stays_distinct() -> None:
    long_a, long_b = "XDT_" + "P" * 100_000 + "_UD", "XDT_" + "P" * 100_000 + "_CCU"
    pools = wmi.parse_pools([{**POOL, "PLD": long_a}, {**POOL, "PLD": long_b}])
    site = parse_site({"Id": "s", "Name": "N" * 1_000_000})
    labels = [lab for _, lab, _ in samples(probe("controller",
                                                 ControllerData("https://dc", (site,), NOW)))]
    labels += [lab for _, lab, _ in samples(probe("winrm", winrm_data(pools=pools)))]
    assert max(len(v) for lab in labels for v in lab.values()) <= MAX_LABEL_CHARS
    features = {p.feature.pld for p in pools}
    assert len(features) == 2  # the hash suffix keeps two long values apart


def test_clean_text() -> None:
    assert clean_text("Citrix Licensing") == "Citrix Licensing"
    assert clean_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a proper pair joins, not replaced
    capped = clean_text("x" * 1000)
    assert len(capped) == MAX_LABEL_CHARS and capped == clean_text("x" * 1000)
    assert capped != clean_text("x" * 999 + "y")


# -- the net under the parsers ------------------------------------------------------------------


def test_data_that_cannot_be_exposed_fails_only_its_collector(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(data: Any, result: Any) -> Any:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(registry.get("winrm"), "exposition", broken)
    site = parse_site(site_json())
    controller = Outcome("controller", True, 0.01, data=ControllerData("https://dc", (site,), NOW),
                         fetched_at=1.0)
    with caplog.at_level(logging.WARNING):
        text = probe("winrm", object(), controller)
    assert value(text, "citrix_license_up") == 0  # winrm is the primary collector
    assert value(text, "citrix_license_collector_success", collector="winrm") == 0
    assert value(text, "citrix_license_collector_success", collector="controller") == 1
    assert value(text, "citrix_license_site_info", site="Production") == 1
    (record,) = [r for r in caplog.records if r.name.endswith("metrics")]
    assert record.fields == {  # type: ignore[attr-defined]
        "target": "t", "collector": "winrm",
        "reason": "OverflowError: int too large to convert to float"}
