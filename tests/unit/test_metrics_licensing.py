"""What the WinRM data becomes in the exposition: the watched services (not installed told apart
from installed but not running) and the purchased licenses whichever way WMI reports Count
(docs/assumptions.md items 2 and 8)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from citrix_license_exporter.citrix.licensing import (
    SERVICE_STATES,
    LicensePool,
    ServiceState,
    TelemetrySummary,
    WinRMData,
    assign_pool_ids,
    parse_pld,
)
from citrix_license_exporter.collectors.winrm import winrm_families

from ..support.exposition import samples, value

NO_TELEMETRY = TelemetrySummary(None, None, None, 0, 0, None)


def winrm_data(services: tuple[ServiceState, ...] = (), pools: tuple[LicensePool, ...] = (),
               count_includes_overdraft: bool = True) -> WinRMData:
    return WinRMData(
        license_server_version=None, version_source=None, services=services,
        pools=assign_pool_ids(pools), licenses=(), attempts=(), bundles=(),
        telemetry=NO_TELEMETRY, telemetry_manual=False,
        count_includes_overdraft=count_includes_overdraft,
    )


class _Families:
    def __init__(self, data: WinRMData) -> None:
        self.families = list(winrm_families(data, None))  # type: ignore[arg-type]

    def collect(self):  # type: ignore[no-untyped-def]
        return self.families


def exposition(data: WinRMData) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(data))  # type: ignore[arg-type]
    return generate_latest(registry).decode("utf-8")


def test_not_installed_is_told_apart_from_installed_but_not_running() -> None:
    text = exposition(winrm_data((
        ServiceState("Citrix Licensing", "Running"),
        ServiceState("CitrixWebServicesforLicensing", "Stopped"),
        ServiceState("CtxLSPortSvc", "NotFound"),
        ServiceState("Citrix_GTLicensingProv", "NotFound", required=False),
    )))
    assert value(text, "citrix_license_service_up", service="Citrix Licensing") == 1
    assert value(text, "citrix_license_service_up", service="CitrixWebServicesforLicensing") == 0
    assert value(text, "citrix_license_service_up", service="CtxLSPortSvc") is None
    for service, current in (("Citrix Licensing", "running"),
                             ("CitrixWebServicesforLicensing", "stopped"),
                             ("CtxLSPortSvc", "not_installed")):
        states = {lab["state"]: v for n, lab, v in samples(text)
                  if n == "citrix_license_service_state" and lab["service"] == service}
        # One 0/1 series per state, exactly one of them 1.
        assert states == {s: 1.0 if s == current else 0.0 for s in SERVICE_STATES}
    assert value(text, "citrix_license_service_required", service="CtxLSPortSvc") == 1
    assert value(text, "citrix_license_service_required", service="Citrix_GTLicensingProv") == 0


def pool(count: int, overdraft: int, in_use: int = 0) -> LicensePool:
    return LicensePool(feature=parse_pld("XDT_PLT_UD"), license_type="Retail", installed=count,
                       in_use=in_use, available=max(0, count - in_use), overdraft=overdraft,
                       subscription_advantage=datetime(2027, 1, 15, tzinfo=UTC))


# Each way Count may be reported (docs/assumptions.md item 2): 100 bought, 10 % overdraft.
@pytest.mark.parametrize(("count", "overdraft", "includes", "purchased"), [
    (110, 10, True, 100),   # Count with the overdraft (the evidence: LAC 137 = 125 + 12)
    (100, 10, False, 100),  # Count without it, and the module says so
    (100, 10, True, 90),    # Count without it under the default: purchased too low, fires early
    (100, 0, True, 100),    # no overdraft (e.g. concurrent licenses)
    (100, -5, True, 100),   # a negative Overdraft is no allowance: it must not raise purchased
    (5, 10, True, 0),       # Overdraft larger than Count: never below 0
])
def test_purchased_each_way_count_may_be_reported(count: int, overdraft: int, includes: bool,
                                                  purchased: int) -> None:
    text = exposition(winrm_data(pools=(pool(count, overdraft, in_use=105),),
                                 count_includes_overdraft=includes))
    assert value(text, "citrix_license_installed", feature="XDT_PLT_UD") == count
    assert value(text, "citrix_license_purchased", feature="XDT_PLT_UD") == purchased
    # Overdraft in use (105 > 100 bought) is never hidden: in use exceeds purchased each way.
    in_use = value(text, "citrix_license_in_use", feature="XDT_PLT_UD")
    assert in_use is not None and in_use > purchased
