"""The Delivery Controller REST API JSON (citrix/controller_api.py) and the Cloud licensing JSON
(citrix/cloud_api.py): documented shapes, nulls, and malformed input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from citrix_license_exporter.citrix.cloud_api import (
    normalise_fqdn,
    parse_cloud_time,
    parse_cloud_token,
    parse_license_servers,
)
from citrix_license_exporter.citrix.controller_api import (
    ALERT_LEVELS,
    DEFAULT_TOKEN_LIFETIME,
    LICENSE_SERVER_STATUSES,
    APIFormatError,
    SiteLicensing,
    SiteRef,
    count_alerts,
    license_server_status,
    parse_site,
    parse_site_list,
    parse_timestamp,
    parse_token,
    select_sites,
    unique_site_labels,
)
from citrix_license_exporter.transport import retry_after_seconds

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

SITE: dict[str, Any] = {
    "Id": "8e4d4c1a-0000-4000-8000-000000000001",
    "Name": "Production",
    "OrchestationApiVersion": 1,
    "LicenseServerName": "ls01.example.test",
    "LicenseServerPort": 27000,
    "LicensingGracePeriodActive": True,
    "LicensingGraceHoursLeft": 200,
    "LicensingOutOfBoxGracePeriodActive": False,
    "PeakConcurrentLicenseUsers": None,
    "TotalUniqueLicenseUsers": 340,
    "LicensedSessionsActive": 95,
    "LicensingAlerts": [
        {"Priority": 1, "AlertLevel": "Alarm", "TypeCode": "X", "Title": "t"},
        {"Priority": 2, "AlertLevel": "Alert"},
        {"Priority": 3, "AlertLevel": "Alert"},
        {"Priority": 4, "AlertLevel": "SomethingNew"},
        {"Priority": 5},
    ],
}
OVERVIEW = {"LicenseInformation": {"LicenseServerStatus": "LasNotOnboarded",
                                   "OutOfBoxGracePeriodActive": True}}


# -- tokens ----------------------------------------------------------------------------------


def test_token_lifetime_is_measured_on_the_controllers_clock() -> None:
    # The controller's clock is 10 minutes ahead of ours; its token lasts one hour from ITS now.
    doc = {"Token": "abc", "Principal": "SIM\\x", "ExpiresAt": "2026-05-01T13:10:00.1234567Z"}
    token = parse_token(doc, "Fri, 01 May 2026 12:10:00 GMT", NOW)
    assert token.value == "abc"
    assert abs(token.lifetime - timedelta(hours=1)) < timedelta(seconds=1)
    assert "abc" not in repr(token)


def test_token_without_date_header_uses_local_time_and_default_lifetime() -> None:
    assert parse_token({"Token": "t", "ExpiresAt": "2026-05-01T12:30:00"}, None, NOW).lifetime \
        == timedelta(minutes=30)
    assert parse_token({"Token": "t"}, "garbage", NOW).lifetime == DEFAULT_TOKEN_LIFETIME
    assert parse_token({"Token": "t", "ExpiresAt": "9999-01-01T00:00:00Z"}, None, NOW).lifetime \
        == timedelta(hours=24)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object, got an array"),
        ({}, "Token missing"),
        ({"Token": ""}, "Token missing"),
        ({"Token": 5}, "Token missing"),
        ({"Token": "t", "ExpiresAt": "tomorrow"}, "not an ISO 8601 time"),
        ({"Token": "t", "ExpiresAt": 17}, "ExpiresAt: expected a time"),
    ],
)
def test_malformed_token_answers(doc: object, message: str) -> None:
    with pytest.raises(APIFormatError, match=message):
        parse_token(doc, None, NOW)


# -- site list and selection -----------------------------------------------------------------


def test_site_list() -> None:
    doc = {"Items": [{"Id": "1", "Name": "A"}, {"Id": "2", "Name": "B"}],
           "ContinuationToken": None}
    assert parse_site_list(doc) == [SiteRef("1", "A"), SiteRef("2", "B")]
    assert parse_site_list({"Items": []}) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "site list: expected a JSON object, got null"),
        ({"items": []}, "Items: expected an array, got null"),
        ({"Items": {"Id": "1"}}, "Items: expected an array, got an object"),
        ({"Items": ["x"]}, r"Items\[0\]: expected a JSON object"),
        ({"Items": [{"Id": "1"}]}, r"Items\[0\].Name: required"),
        ({"Items": [{"Id": 1, "Name": "A"}]}, r"Items\[0\].Id: expected a string"),
    ],
)
def test_malformed_site_lists(doc: object, message: str) -> None:
    with pytest.raises(APIFormatError, match=message):
        parse_site_list(doc)


def test_select_sites_by_name_or_id() -> None:
    sites = [SiteRef("id-1", "Production"), SiteRef("id-2", "Lab")]
    assert select_sites(sites, None) == sites
    assert select_sites(sites, "lab") == [sites[1]]
    assert select_sites(sites, "ID-1") == [sites[0]]
    with pytest.raises(LookupError, match=r"site .Test. not found .*Production, Lab"):
        select_sites(sites, "Test")


# -- the site --------------------------------------------------------------------------------


def test_full_site_with_overview() -> None:
    site = parse_site(SITE, OVERVIEW)
    assert site.name == "Production"
    assert site.license_server_name == "ls01.example.test"
    assert site.license_server_port == 27000
    assert site.grace_active is True and site.grace_hours_left == 200
    assert site.out_of_box_grace_active is False  # the site's own field wins
    assert site.peak_concurrent_users is None  # null stays unknown, never 0
    assert site.unique_users == 340 and site.licensed_sessions_active == 95
    assert site.alerts == {"Unknown": 2, "Info": 0, "Alert": 2, "Alarm": 1}
    assert site.license_server_status == "LasNotOnboarded"
    assert site.grace_end(NOW) == NOW + timedelta(hours=200)


def test_minimal_site_leaves_everything_unknown() -> None:
    site = parse_site({"Id": "1", "Name": "A", "LicensingAlerts": None})
    assert site == SiteLicensing(id="1", name="A")
    assert site.alerts == dict.fromkeys(ALERT_LEVELS, 0)
    assert site.license_server_status is None
    assert site.grace_end(NOW) is None


def test_grace_end_only_while_grace_is_active() -> None:
    assert parse_site({**SITE, "LicensingGracePeriodActive": False}).grace_end(NOW) is None
    assert parse_site({**SITE, "LicensingGraceHoursLeft": None}).grace_end(NOW) is None


def test_out_of_box_grace_falls_back_to_the_overview() -> None:
    site = {**SITE, "LicensingOutOfBoxGracePeriodActive": None}
    assert parse_site(site, OVERVIEW).out_of_box_grace_active is True


@pytest.mark.parametrize("status", LICENSE_SERVER_STATUSES)
def test_every_documented_status(status: str) -> None:
    overview = {"LicenseInformation": {"LicenseServerStatus": status}}
    assert license_server_status(SITE, overview) == (status, None)
    assert license_server_status(SITE, {"LicenseInformation": {"LicenseServerStatus":
                                                               status.upper()}})[0] == status


def test_status_assumption_fallback_and_unknown_values() -> None:
    # No overview (old controller): the site's own field, if a controller version has one.
    assert license_server_status({**SITE, "LicenseServerStatus": "Compatible"}, None) == (
        "Compatible", None)
    assert license_server_status(SITE, None) == (None, None)
    assert license_server_status(SITE, {"LicenseInformation": None}) == (None, None)
    assert license_server_status(SITE, {"LicenseInformation": {"LicenseServerStatus": "New"}}) \
        == ("UnknownStatus", "New")


@pytest.mark.parametrize(
    ("site", "overview", "message"),
    [
        ("text", None, "site: expected a JSON object, got a string"),
        ({"Name": "A"}, None, "site.Id: required"),
        ({**SITE, "LicensingGracePeriodActive": "yes"}, None,
         "LicensingGracePeriodActive: expected true, false or null, got a string"),
        ({**SITE, "LicensingGraceHoursLeft": 1.5}, None, "LicensingGraceHoursLeft: expected an"),
        ({**SITE, "LicensingGraceHoursLeft": True}, None, "LicensingGraceHoursLeft: expected an"),
        ({**SITE, "TotalUniqueLicenseUsers": float("inf")}, None, "TotalUniqueLicenseUsers"),
        ({**SITE, "LicenseServerName": 7}, None, "LicenseServerName: expected a string"),
        ({**SITE, "LicensingAlerts": {"a": 1}}, None, "LicensingAlerts: expected an array"),
        ({**SITE, "LicensingAlerts": [3]}, None, r"LicensingAlerts\[0\]: expected a JSON"),
        (SITE, [], "license overview: expected a JSON object, got an array"),
        (SITE, {"LicenseInformation": "x"}, "LicenseInformation: expected a JSON object"),
        (SITE, {"LicenseInformation": {"LicenseServerStatus": 3}},
         "LicenseServerStatus: expected a string, got a number"),
    ],
)
def test_malformed_sites(site: object, overview: object, message: str) -> None:
    with pytest.raises(APIFormatError, match=message):
        parse_site(site, overview)


def test_count_alerts_of_null_and_empty() -> None:
    assert count_alerts(None, "a") == {"Unknown": 0, "Info": 0, "Alert": 0, "Alarm": 0}
    assert count_alerts([{"AlertLevel": "Info"}, {"AlertLevel": 3}], "a")["Unknown"] == 1


def test_repeated_site_names_get_distinct_labels() -> None:
    sites = [SiteLicensing("1", "A"), SiteLicensing("2", "A"), SiteLicensing("3", "B")]
    assert unique_site_labels(sites) == ["A (1)", "A (2)", "B"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-01T12:00:00Z", NOW),
        ("2026-05-01T12:00:00", NOW),  # no offset: UTC
        ("2026-05-01T14:00:00+02:00", NOW),
        ("2026-05-01T12:00:00.1234567Z", NOW + timedelta(microseconds=123456)),
    ],
)
def test_timestamps(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z",
                                  "0001-01-01T00:00:00+01:00"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(APIFormatError):
        parse_timestamp(text)


# -- Citrix Cloud ----------------------------------------------------------------------------


def test_cloud_token() -> None:
    token = parse_cloud_token({"principal": "p", "token": "tok", "expiresIn": "3600"})
    assert token.value == "tok" and token.lifetime == timedelta(hours=1)
    assert parse_cloud_token({"Token": "t", "ExpiresIn": 60}).lifetime == timedelta(minutes=1)
    assert parse_cloud_token({"token": "t", "expiresIn": 1e300}).lifetime == timedelta(hours=24)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("x", "expected a JSON object"),
        ({"token": None}, "token missing"),
        ({"token": "t", "expiresIn": "soon"}, "expiresIn: expected seconds"),
        ({"token": "t", "expiresIn": -5}, "expiresIn: expected seconds"),
        ({"token": "t", "expiresIn": float("nan")}, "expiresIn: expected seconds"),
        ({"token": "t", "expiresIn": True}, "expiresIn: expected seconds"),
    ],
)
def test_malformed_cloud_tokens(doc: object, message: str) -> None:
    with pytest.raises(APIFormatError, match=message):
        parse_cloud_token(doc)


def test_license_server_list() -> None:
    doc = {"licenseServersStatus": [
        {"hostID": "LS01", "fqdn": "LS01.Example.test.", "isPhoningHome": True,
         "lastPhoningHomeTime": "2026-05-01T09:00:00Z", "isCompliant": True, "isExpired": False,
         "daysToExpire": 300},
        {"FQDN": "ls02.example.test", "IsPhoningHome": False, "LastPhoningHomeTime": None,
         "IsCompliant": None},
        {"fqdn": None, "isPhoningHome": True},  # cannot be matched: skipped
        {"fqdn": "ls03.example.test", "lastPhoningHomeTime": "2026-04-01T00:00:00Z"},
        {"fqdn": "ls03.example.test", "lastPhoningHomeTime": "2026-04-20T00:00:00Z",
         "isCompliant": False},
    ]}
    servers = parse_license_servers(doc)
    assert set(servers) == {"ls01.example.test", "ls02.example.test", "ls03.example.test"}
    ls01 = servers[normalise_fqdn("ls01.example.test")]
    assert ls01.phoning_home is True and ls01.compliant is True
    assert ls01.last_phoning_home == datetime(2026, 5, 1, 9, tzinfo=UTC)
    ls02 = servers["ls02.example.test"]
    assert ls02.phoning_home is False and ls02.last_phoning_home is None
    assert ls02.compliant is None
    assert servers["ls03.example.test"].compliant is False  # the most recent report wins


# lastPhoningHomeTime in both forms of Citrix's own mock data (reference file, "Evidence of
# 2026-12", Delivery Controller and Citrix Cloud): the US form and ISO 8601.
@pytest.mark.parametrize(("text", "moment"), [
    ("12/30/2015 12:21:15", datetime(2015, 12, 30, 12, 21, 15, tzinfo=UTC)),
    ("2018-03-27T11:12:04.00+00:00", datetime(2018, 3, 27, 11, 12, 4, tzinfo=UTC)),
    ("2018-03-27T13:12:04.00+02:00", datetime(2018, 3, 27, 11, 12, 4, tzinfo=UTC)),
    ("3/7/2018 1:02:03 PM", datetime(2018, 3, 7, 13, 2, 3, tzinfo=UTC)),
    ("3/7/2018 12:02:03 AM", datetime(2018, 3, 7, 0, 2, 3, tzinfo=UTC)),
    ("12/30/2015", datetime(2015, 12, 30, tzinfo=UTC)),
    (" 2026-05-01T09:00:00Z ", datetime(2026, 5, 1, 9, tzinfo=UTC)),
])
def test_cloud_times_in_both_forms(text: str, moment: datetime) -> None:
    assert parse_cloud_time(text) == moment


@pytest.mark.parametrize("text", ["30/12/2015 12:21:15", "2/30/2016 00:00:00",
                                  "12/30/2015 13:00:00 PM", "12/30/15 12:21:15", "last week"])
def test_cloud_times_that_do_not_exist_are_refused(text: str) -> None:
    with pytest.raises(APIFormatError, match="not a"):
        parse_cloud_time(text)


def test_us_time_in_the_list_does_not_fail_and_is_ever_reported_comes_first() -> None:
    servers = parse_license_servers({"licenseServersStatus": [
        {"fqdn": "us.example.test", "isEverReported": True,
         "lastPhoningHomeTime": "12/30/2015 12:21:15"},
        {"fqdn": "iso.example.test", "lastPhoningHomeTime": "2018-03-27T11:12:04.00+00:00"},
        # Never reported: the time is not read, whatever it holds (the scripts check first).
        {"fqdn": "never.example.test", "isEverReported": False,
         "lastPhoningHomeTime": "garbage that would not parse"},
        {"fqdn": "minvalue.example.test", "lastPhoningHomeTime": "1/1/0001 12:00:00 AM"},
    ]})
    assert servers["us.example.test"].last_phoning_home == datetime(2015, 12, 30, 12, 21, 15,
                                                                    tzinfo=UTC)
    assert servers["us.example.test"].ever_reported is True
    assert servers["iso.example.test"].last_phoning_home == datetime(2018, 3, 27, 11, 12, 4,
                                                                     tzinfo=UTC)
    assert servers["iso.example.test"].ever_reported is None
    never = servers["never.example.test"]
    assert (never.ever_reported, never.last_phoning_home) == (False, None)
    assert servers["minvalue.example.test"].last_phoning_home is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "license server list: expected a JSON object"),
        ({}, "licenseServersStatus: expected an array, got null"),
        ({"licenseServersStatus": [1]}, r"licenseServersStatus\[0\]: expected an object"),
        ({"licenseServersStatus": [{"fqdn": 5}]}, r"\[0\].fqdn: expected a string"),
        ({"licenseServersStatus": [{"fqdn": "a", "isPhoningHome": "true"}]},
         "isPhoningHome: expected true, false or null"),
        ({"licenseServersStatus": [{"fqdn": "a", "lastPhoningHomeTime": "last week"}]},
         "lastPhoningHomeTime: not an ISO 8601 time"),
        ({"licenseServersStatus": [{"fqdn": "a", "lastPhoningHomeTime": 1700000000}]},
         "lastPhoningHomeTime: expected a time or null"),
        ({"licenseServersStatus": [{"fqdn": "a", "isEverReported": "yes"}]},
         "isEverReported: expected true, false or null"),
    ],
)
def test_malformed_license_server_lists(doc: object, message: str) -> None:
    with pytest.raises(APIFormatError, match=message):
        parse_license_servers(doc)


# -- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 0 ", 0.0), ("Fri, 01 May 2026 12:00:30 GMT", 30.0),
     ("Fri, 01 May 2026 11:00:00 GMT", 0.0), (None, None), ("soon", None), ("²", None),
     ("-1", None)],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected
