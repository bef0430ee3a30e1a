"""The WinRM collector (pypsrp underneath) against the simulated endpoint, over real HTTP(S)
with real NTLM/Basic authentication and message encryption, in one process on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pypsrp.exceptions import AuthenticationError
from pypsrp.wsman import WSMan

from citrix_license_exporter.citrix.licensing import ServiceSpec, WinRMData
from citrix_license_exporter.collectors import winrm_client
from citrix_license_exporter.collectors.base import CollectorError, Deadline, FailureKind
from citrix_license_exporter.collectors.winrm import WinRMCollector, WinRMConfig
from citrix_license_exporter.config import (
    ModuleConfig,
    Secret,
    TargetConfig,
    TLSConfig,
)
from citrix_license_exporter.simulator.winrm import (
    PASSWORD,
    USERNAME,
    WRONG_PASSWORD,
    WinRMSimulator,
    certificate,
    parse_winrm_section,
)

POOLS = [
    {"pld": "XDT_PLT_UD", "count": 500, "in_use": 412, "overdraft": 50, "sa_days": 100},
    {"pld": "XDT_PLT_UD", "count": 100, "in_use": 0, "sa_days": 10},
    {"pld": "MPS_ENT_CCU", "count": 250, "in_use": 90, "sa": "2027.0115"},
]
BASE = {
    "pools": POOLS,
    "licenses": [{"serial": "S1", "pld": "XDT_PLT_UD", "expires_days": 30},
                 {"serial": "S2", "pld": "MPS_ENT_CCU", "expires": "permanent"}],
    "uploads": {"days": 10, "failing_days": 3},
}
Sim = Callable[..., WinRMSimulator]


@pytest.fixture
def sim() -> Iterator[Sim]:
    started: list[WinRMSimulator] = []

    def start(**section: Any) -> WinRMSimulator:
        simulator = WinRMSimulator(parse_winrm_section({**BASE, **section}, "test"))
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.close()


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("ca"), "ca.pem")
    path.write_bytes(certificate()[0])
    return str(path)


def collect(simulator: WinRMSimulator, *, ca: str | None = None, password: str = PASSWORD,
            timeout: float = 5.0, telemetry: str = "automatic", **cfg: Any) -> WinRMData:
    s = simulator.scenario
    config = WinRMConfig(
        username=USERNAME, password=Secret(password), scheme=s.scheme,  # type: ignore[arg-type]
        auth=s.auth, allow_unencrypted=s.auth == "basic",  # type: ignore[arg-type]
        tls=TLSConfig(ca_file=ca), **cfg,
    )
    module = ModuleConfig(name="m", collectors=("winrm",), primary="winrm", winrm=config)
    target = TargetConfig(name="t", address="127.0.0.1", module="m", winrm_url=simulator.url,
                          telemetry=telemetry)  # type: ignore[arg-type]
    return WinRMCollector().collect(target, module, Deadline.after(timeout))


def failure(simulator: WinRMSimulator, **kwargs: Any) -> tuple[str, FailureKind | None]:
    """The reason and the kind of the collection's failure."""
    with pytest.raises(CollectorError) as info:
        collect(simulator, **kwargs)
    return str(info.value), info.value.kind


@pytest.mark.parametrize(("auth", "scheme"),
                         [("ntlm", "http"), ("ntlm", "https"), ("basic", "https"),
                          ("basic", "http")])
def test_every_transport_reads_the_same_data(sim: Sim, ca_file: str, auth: str,
                                             scheme: str) -> None:
    simulator = sim(auth=auth, scheme=scheme)
    data = collect(simulator, ca=ca_file)
    now = simulator.state.now
    assert data.license_server_version == "11.17.2.0 build 56200"
    assert data.version_source == "registry"
    assert sorted((p.feature.pld, p.installed, p.in_use) for p in data.pools) == [
        ("MPS_ENT_CCU", 250, 90), ("XDT_PLT_UD", 100, 0), ("XDT_PLT_UD", 500, 412)]
    assert len({p.pool for p in data.pools}) == 3
    assert {x.serial: x.expiry is None for x in data.licenses} == {"S1": False, "S2": True}
    assert all(s.running for s in data.services) and len(data.services) == 4
    t = data.telemetry
    assert t.consecutive_failures == 3
    assert t.pending_bundles == 3
    assert t.last_attempt_success is False
    assert t.last_success is not None and now - 4 * 86400 < t.last_success < now - 3 * 86400
    assert simulator.requests == ["Enumerate", "Enumerate", "Enumerate", "Create", "Command",
                                  "Receive", "Signal", "Delete"]
    assert simulator.open_shells == 0  # the shell was deleted
    if (auth, scheme) == ("ntlm", "http"):
        # WinRM message encryption, as Windows requires by default on plain HTTP.
        assert set(simulator.transports) == {"encrypted"}
    else:
        assert set(simulator.transports) == {"plain"}


def test_pull_pages_through_long_enumerations(sim: Sim) -> None:
    simulator = sim(page_size=1)
    data = collect(simulator)
    assert len(data.pools) == 3
    assert simulator.requests[:4] == ["Enumerate", "Pull", "Pull", "Enumerate"]


def test_simulator_enforces_channel_binding_over_https(sim: Sim, ca_file: str) -> None:
    # Extended Protection: an NTLM client that does not bind to the TLS channel is refused,
    # so the exporter passing over HTTPS proves it sends the channel binding.
    simulator = sim(auth="ntlm", scheme="https")
    client = WSMan("127.0.0.1", port=simulator.port, username=USERNAME, password=PASSWORD,
                   ssl=True, auth="ntlm", cert_validation=ca_file, negotiate_send_cbt=False,
                   no_proxy=True)
    with pytest.raises(AuthenticationError):
        client.get("http://schemas.microsoft.com/wbem/wsman/1/config")
    assert collect(simulator, ca=ca_file).pools


@pytest.mark.parametrize(("auth", "scheme", "name"),
                         [("ntlm", "http", "NTLM"), ("basic", "https", "Basic")])
def test_wrong_password(sim: Sim, ca_file: str, auth: str, scheme: str, name: str) -> None:
    simulator = sim(auth=auth, scheme=scheme)
    message, _ = failure(simulator, ca=ca_file, password=WRONG_PASSWORD)
    assert message.startswith(f"{name} authentication failed (HTTP 401) for user ")
    assert WRONG_PASSWORD not in message and PASSWORD not in message


def test_untrusted_certificate(sim: Sim) -> None:
    message, _ = failure(sim(auth="basic", scheme="https"))
    assert message.startswith("TLS handshake with https://127.0.0.1:")
    assert "certificate not trusted" in message


def test_connection_refused(sim: Sim) -> None:
    simulator = sim()
    simulator.close()
    message, kind = failure(simulator)
    assert "refused" in message
    assert kind is FailureKind.REFUSED  # failed on the refusal, not by running out the clock


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("access_denied", "access denied while reading WMI Citrix_GT_License_Pool (grant the "
                          "account Enable Account and Remote Enable on WMI root\\CitrixLicensing"),
        ("namespace_missing", "WMI namespace root\\CitrixLicensing not found "
                              "(licensing not installed?)"),
        ("garbage_xml", "unreadable WinRM answer"),
        ("xml_bomb", "unreadable WinRM answer: XML answer contains a DTD or entities (refused)"),
        ("huge_answer", "WinRM answer of 52428800 bytes exceeds max_response_bytes (8388608)"),
        ("huge_chunked", "WinRM answer exceeds max_response_bytes (8388608)"),
        ("reset", "connection lost while reading the answer"),
    ],
)
@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_faults_fail_fast_with_a_clear_reason(sim: Sim, fault: str, expected: str,
                                              auth: str) -> None:
    message, kind = failure(sim(fault=fault, auth=auth))
    assert message.startswith(expected)
    # Fast means: on the fault itself, not at the deadline.
    assert kind is not None and kind is not FailureKind.TIMEOUT, kind
    assert "deadline" not in message


def test_slow_drip_ends_at_the_deadline(sim: Sim) -> None:
    message, kind = failure(sim(fault="slow_drip"), timeout=1.5)
    assert message == "probe deadline reached while reading WMI Citrix_GT_License_Pool"
    assert kind is FailureKind.TIMEOUT


def test_answer_cap_applies_to_normal_answers(sim: Sim) -> None:
    message, _ = failure(sim(auth="basic"), max_response_bytes=2000)
    assert "exceeds max_response_bytes (2000)" in message


def test_unexpected_log_format_fails_the_collection(sim: Sim) -> None:
    message, _ = failure(sim(uploader_log="2026-11-27 upload ok (new format)\r\n"))
    assert message.startswith("uploader log: no <CtxUploaderResult> block in all 35 bytes")


def test_another_command_fails_like_cmd_exe(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    simulator = sim()
    monkeypatch.setattr(winrm_client, "command_line", lambda tail: ("whoami", ["/all"]))
    message, _ = failure(simulator)
    assert message == ("on-box script failed (exit code 9009): 'whoami' is not recognized as "
                       "an internal or external command,")
    assert simulator.open_shells == 0


def test_stopped_service_and_fallback_version(sim: Sim) -> None:
    data = collect(sim(services={"Citrix Licensing": "Stopped", "CtxLSPortSvc": "NotInstalled"},
                       version=None, display_version="11.17.2.0 build 53100"))
    states = {s.name: s.state for s in data.services}
    assert states["Citrix Licensing"] == "Stopped"
    assert states["CtxLSPortSvc"] == "NotFound"
    assert (data.license_server_version, data.version_source) == ("11.17.2.0 build 53100",
                                                                  "uninstall")


def test_services_matched_by_display_name_on_the_wire(sim: Sim) -> None:
    # The WQL filter names each service by Name and DisplayName; the simulator answers with
    # the evidence's display names (Citrix_GTLicensingProv is "Citrix Licensing WMI").
    specs = (ServiceSpec("Citrix Licensing WMI"), ServiceSpec("Citrix Licensing Support Service"),
             ServiceSpec("CitrixLicensingConfigService", required=False))
    data = collect(sim(services={"CtxLSPortSvc": "Paused"}), services=specs)
    states = {s.name: (s.state_label, s.required) for s in data.services}
    assert states == {"Citrix Licensing WMI": ("running", True),
                      "Citrix Licensing Support Service": ("paused", True),
                      "CitrixLicensingConfigService": ("not_installed", False)}


def test_an_empty_service_list_reads_no_service(sim: Sim) -> None:
    simulator = sim()
    data = collect(simulator, services=())
    assert data.services == ()
    assert simulator.requests.count("Enumerate") == 2  # pools and licenses only


def test_manual_telemetry_flag(sim: Sim) -> None:
    assert collect(sim(), telemetry="manual").telemetry_manual


def test_no_licensing_service_visible_means_missing_rights(sim: Sim) -> None:
    hidden = dict.fromkeys(("Citrix Licensing", "CitrixWebServicesforLicensing",
                            "Citrix_GTLicensingProv", "CtxLSPortSvc"), "NotInstalled")
    message, _ = failure(sim(services=hidden))
    assert message.startswith("Win32_Service lists none of the licensing services")


def test_reconfigure_changes_the_answers(sim: Sim) -> None:
    simulator = sim(uploads={"days": 5, "failing_days": 2})
    assert collect(simulator).telemetry.consecutive_failures == 2
    simulator.reconfigure(failing_days=0, version="11.17.2.0 build 90000")
    data = collect(simulator)
    assert data.telemetry.consecutive_failures == 0
    assert data.license_server_version == "11.17.2.0 build 90000"


# ---------------------------------------------------------------------------------------------
# Hostile servers: what the client library would do unbounded


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_ntlm_401_loop_is_capped(sim: Sim, ca_file: str, scheme: str) -> None:
    # The server answers every AUTHENTICATE with a fresh valid challenge; pypsrp alone would
    # answer each with a new NTLMv2 response, thousands per probe (one failed logon each).
    simulator = sim(auth="ntlm", scheme=scheme, fault="auth_loop")
    message, _ = failure(simulator, ca=ca_file)
    assert message.startswith(f"NTLM authentication did not complete after "
                              f"{winrm_client.MAX_AUTH_ROUNDS} rounds")
    assert simulator.auth_tokens == winrm_client.MAX_AUTH_ROUNDS
    assert PASSWORD not in message


def test_a_garbage_ntlm_token_gets_a_clear_reason(sim: Sim) -> None:
    simulator = sim(auth="ntlm", fault="garbage_token")
    with pytest.raises(CollectorError) as info:
        collect(simulator)
    assert str(info.value) == (
        f"the server's NTLM challenge could not be read (NTLM authentication at "
        f"http://127.0.0.1:{simulator.port}/wsman)")
    assert info.value.kind == FailureKind.PROTOCOL


def test_wmi_instances_are_capped_per_class(sim: Sim) -> None:
    # Three pools, one per page: the cap of two stops the enumeration at the third page.
    simulator = sim(auth="basic", page_size=1)
    with pytest.raises(CollectorError) as info:
        collect(simulator, max_instances=2)
    assert str(info.value) == ("WMI Citrix_GT_License_Pool has more than 2 instances "
                               "(winrm.max_instances); stopped reading")
    assert info.value.kind == FailureKind.LIMIT
    assert simulator.requests == ["Enumerate", "Pull", "Pull"]
    assert len(collect(simulator, max_instances=4).pools) == 3  # and four services


def test_many_small_pages_stop_at_the_instance_cap(sim: Sim) -> None:
    # 3000 pools in pages of 20 (smaller than the 100 asked for): read page by page and stopped
    # at the cap, whatever the page size; under the cap every page is read.
    pools = [{"pld": f"XDT_PLT_UD{i}", "count": 1, "in_use": 0} for i in range(3000)]
    simulator = sim(auth="basic", pools=pools, page_size=20)
    with pytest.raises(CollectorError) as info:
        collect(simulator, max_instances=1000)
    assert str(info.value) == ("WMI Citrix_GT_License_Pool has more than 1000 instances "
                               "(winrm.max_instances); stopped reading")
    assert simulator.requests == ["Enumerate"] + ["Pull"] * 50  # 51 pages of 20 = 1020
    assert len(collect(simulator, max_instances=3000).pools) == 3000


def test_a_server_with_windows_defaults_fills_each_answer_up_to_the_elements_asked(
        sim: Sim) -> None:
    # MaxBatchItems 32000 (Windows' default): 250 pools come in pages of the 100 the exporter
    # asks for (MaxElements), the first in the Enumerate answer itself (OptimizeEnumeration).
    pools = [{"pld": f"XDT_PLT_UD{i}", "count": 1, "in_use": 0} for i in range(250)]
    simulator = sim(auth="basic", pools=pools)
    data = collect(simulator)
    assert len(data.pools) == 250
    assert simulator.requests[:4] == ["Enumerate", "Pull", "Pull", "Enumerate"]


def test_answers_stay_within_the_envelope_size_the_client_announces(sim: Sim) -> None:
    # 100 pools of 12.7 KB each (the long name is in PLD and PoolId) do not fit pypsrp's
    # 150 KiB MaxEnvelopeSize in one answer: 11 a page, in 10 pages.
    pools = [{"pld": f"{'X' * 6000}{i}", "count": 1, "in_use": 0} for i in range(100)]
    simulator = sim(auth="basic", pools=pools)
    data = collect(simulator)
    assert len(data.pools) == 100
    pages = simulator.requests[:simulator.requests.index("Enumerate", 1)]
    assert pages == ["Enumerate"] + ["Pull"] * 9


def test_an_enumerate_without_optimization_answers_no_items(sim: Sim) -> None:
    # Plain WS-Enumeration (pypsrp's WSMan.enumerate): the items come by Pull only.
    simulator = sim(auth="basic")
    client = WSMan("127.0.0.1", port=simulator.port, username=USERNAME, password=PASSWORD,
                   ssl=False, auth="basic", encryption="never", no_proxy=True)
    answer = client.enumerate(
        "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/CitrixLicensing/"
        "Citrix_GT_License_Pool")
    wsen = "{http://schemas.xmlsoap.org/ws/2004/09/enumeration}"
    response = answer.find(f".//{wsen}EnumerateResponse")
    assert response is not None
    assert response.find(f"{wsen}EnumerationContext") is not None
    assert not response.findall(".//{*}Items/*")
