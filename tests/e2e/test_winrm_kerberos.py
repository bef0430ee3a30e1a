"""WinRM with Kerberos against a real MIT KDC on 127.0.0.1 (k5test, one realm for this module).

The client is the collector users run (pypsrp and pyspnego's GSSAPI context over real HTTP(S)),
the server the simulated WinRM endpoint accepting Kerberos with its service keytab through
pyspnego's GSSAPI acceptor, through the same WS-Man operations as with NTLM.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from citrix_license_exporter.collectors import kerberos
from citrix_license_exporter.collectors.base import CollectorError, Deadline, FailureKind
from citrix_license_exporter.collectors.winrm import KerberosConfig, WinRMCollector, WinRMConfig
from citrix_license_exporter.collectors.winrm_client import MAX_AUTH_ROUNDS
from citrix_license_exporter.config import (
    ModuleConfig,
    Secret,
    TargetConfig,
    TLSConfig,
    load_config,
)
from citrix_license_exporter.simulator.winrm import WinRMSimulator, certificate, parse_winrm_section

from ..support.kdc import KDC, REALM, SHORT_LIFE, silent_kdc, start_kdc

BASE = {
    "pools": [{"pld": "XDT_PLT_UD", "count": 500, "in_use": 412, "sa_days": 100}],
    "licenses": [{"serial": "S1", "pld": "XDT_PLT_UD", "expires_days": 30}],
    "uploads": {"days": 3, "failing_days": 0},
}
WRONG = "Wrong-Kerberos-Password-8%"
Sim = Callable[..., WinRMSimulator]


@pytest.fixture(scope="module")
def kdc() -> Iterator[KDC]:
    try:
        import k5test  # noqa: F401
    except ImportError:
        pytest.skip("k5test not installed (pip install -e '.[test]')")
    realm = start_kdc()
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME", "KRB5RCACHEDIR",
                                             "KRB5_KTNAME")}
    for key in ("KRB5_CONFIG", "KRB5CCNAME", "KRB5RCACHEDIR"):
        os.environ[key] = realm.env[key]
    yield realm
    realm.realm.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def fresh_store(monkeypatch: pytest.MonkeyPatch) -> kerberos.CredentialStore:
    """Each test gets its own credential caches: no ticket of an earlier test is reused."""
    store = kerberos.CredentialStore()
    monkeypatch.setattr(kerberos, "STORE", store)
    return store


@pytest.fixture
def sim(kdc: KDC) -> Iterator[Sim]:
    started: list[WinRMSimulator] = []

    def start(**section: Any) -> WinRMSimulator:
        simulator = WinRMSimulator(
            parse_winrm_section({"auth": "kerberos", **BASE, **section}, "test"),
            keytab=kdc.service_keytab,
        )
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


def collect(simulator: WinRMSimulator, *, host: str = "localhost", username: str = "user",
            password: str | None = None, timeout: float = 8.0, ca: str | None = None,
            **krb: Any) -> Any:
    s = simulator.scenario
    config = WinRMConfig(
        username=username, password=Secret(password) if password is not None else None,
        scheme=s.scheme, auth="kerberos", tls=TLSConfig(ca_file=ca),  # type: ignore[arg-type]
        kerberos=KerberosConfig(**krb),
    )
    module = ModuleConfig(name="m", collectors=("winrm",), primary="winrm", winrm=config)
    url = simulator.url.replace("127.0.0.1", host)
    target = TargetConfig(name="t", address=host, module="m", winrm_url=url)
    return WinRMCollector().collect(target, module, Deadline.after(timeout))


def collect_until(simulator: WinRMSimulator, deadline: Deadline, **kwargs: Any) -> Any:
    timeout = deadline.remaining()
    return collect(simulator, timeout=timeout, **kwargs)


def failure(simulator: WinRMSimulator, **kwargs: Any) -> CollectorError:
    with pytest.raises(CollectorError) as info:
        collect(simulator, **kwargs)
    return info.value


def test_http_with_message_encryption(kdc: KDC, sim: Sim) -> None:
    simulator = sim(scheme="http")
    data = collect(simulator, password=kdc.passwords["user"])
    assert [(p.feature.pld, p.installed, p.in_use) for p in data.pools] == [
        ("XDT_PLT_UD", 500, 412)]
    assert data.license_server_version == "11.17.2.0 build 56200"
    assert simulator.principals == [f"user@{REALM}"]
    # Plain HTTP: every SOAP message went wrapped in the Kerberos session key.
    assert set(simulator.transports) == {"encrypted"}
    assert simulator.requests == ["Enumerate", "Enumerate", "Enumerate", "Create", "Command",
                                  "Receive", "Signal", "Delete"]
    assert simulator.auth_tokens == 1  # one AP-REQ for the whole collection


def test_https_with_channel_binding(kdc: KDC, sim: Sim, ca_file: str) -> None:
    simulator = sim(scheme="https")
    data = collect(simulator, password=kdc.passwords["user"], ca=ca_file)
    assert len(data.pools) == 1
    assert simulator.principals == [f"user@{REALM}"]
    assert set(simulator.transports) == {"plain"}  # TLS protects the messages


def test_keytab(kdc: KDC, sim: Sim, fresh_store: kerberos.CredentialStore) -> None:
    simulator = sim()
    data = collect(simulator, username="svc-keytab", realm=REALM, keytab=kdc.client_keytab)
    assert data.pools
    assert simulator.principals == [f"svc-keytab@{REALM}"]
    assert fresh_store.kinits == 1


def test_password_file_from_the_config(kdc: KDC, sim: Sim, tmp_path: Path) -> None:
    simulator = sim()
    (tmp_path / "krb-password").write_text(kdc.passwords["user"] + "\n", encoding="utf-8")
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump({
        "modules": {"krb": {"collectors": ["winrm"], "primary": "winrm", "winrm": {
            "scheme": "http", "auth": "kerberos", "username": "user",
            "password_file": "krb-password", "kerberos": {"realm": REALM}}}},
        "targets": [{"name": "ls", "address": "localhost", "module": "krb",
                     "winrm_url": simulator.url.replace("127.0.0.1", "localhost")}],
    }), encoding="utf-8")
    config = load_config(str(config_file))
    module = config.modules["krb"]
    assert module.winrm is not None and module.winrm.kerberos == KerberosConfig(realm=REALM)
    data = WinRMCollector().collect(config.targets[0], module, Deadline.after(8))
    assert data.pools
    assert simulator.principals == [f"user@{REALM}"]


def test_existing_credential_cache_from_krb5ccname(kdc: KDC, sim: Sim,
                                                   fresh_store: kerberos.CredentialStore) -> None:
    simulator = sim()
    # k5test kinit'ed user@ into the cache KRB5CCNAME names; the exporter only reads it.
    data = collect(simulator, username="")
    assert data.pools
    assert simulator.principals == [f"user@{REALM}"]
    assert fresh_store.kinits == 0


def test_configured_spn_and_realm(kdc: KDC, sim: Sim) -> None:
    simulator = sim()
    data = collect(simulator, host="127.0.0.1", username="user", password=kdc.passwords["user"],
                   realm=REALM, spn="WSMAN/ls01.krbtest.test")
    assert data.pools
    assert simulator.principals == [f"user@{REALM}"]


def test_ticket_renewed_across_an_expiry(kdc: KDC, sim: Sim,
                                         fresh_store: kerberos.CredentialStore) -> None:
    simulator = sim()
    password = kdc.passwords["short"]
    collect(simulator, username="short", password=password)
    assert fresh_store.kinits == 1
    (slot,) = fresh_store._slots.values()
    first = slot.ticket
    assert first is not None and first.end - first.start <= SHORT_LIFE
    collect(simulator, username="short", password=password)
    assert fresh_store.kinits == 1  # still fresh: the same ticket
    while time.time() <= first.end + 1:  # the KDC's own lifetime passes
        time.sleep(0.2)
    collect(simulator, username="short", password=password)
    assert fresh_store.kinits == 2
    second = slot.ticket
    assert second is not None and second.end > first.end
    assert simulator.principals == [f"short@{REALM}"] * 3


def test_refused_credentials_are_not_presented_again(kdc: KDC, sim: Sim,
                                                     fresh_store: kerberos.CredentialStore) -> None:
    # A wrong password is a failed logon in the domain at each try: the next collections get
    # the same reason without asking the KDC, until the password changes.
    simulator = sim()
    first = failure(simulator, password=WRONG)
    again = failure(simulator, password=WRONG)
    assert str(again) == str(first)
    assert str(first).startswith("Kerberos: wrong password or key for user@KRBTEST.COM")
    assert str(first).endswith("(not asked again with these credentials for 900 s)")
    assert fresh_store.kinits == 1
    collect(simulator, password=kdc.passwords["user"])  # the corrected password, at once
    assert fresh_store.kinits == 2
    assert simulator.principals == [f"user@{REALM}"]


def test_a_ticket_not_yet_expired_outlives_a_failed_renewal(
        kdc: KDC, sim: Sim, monkeypatch: pytest.MonkeyPatch,
        fresh_store: kerberos.CredentialStore) -> None:
    # Renewal starts early (in the last quarter of the lifetime here); when the KDC cannot be
    # reached then, the ticket in use serves until it is about to expire. The store's clock is
    # moved (the KDC and the server keep the real one, where the ticket is valid).
    simulator = sim()
    password = kdc.passwords["short"]
    collect(simulator, username="short", password=password)
    (slot,) = fresh_store._slots.values()
    ticket = slot.ticket
    assert ticket is not None and fresh_store.kinits == 1
    monkeypatch.setenv("KRB5_CONFIG", kdc.closed_port_config())
    lifetime = ticket.end - ticket.start
    fresh_store.clock = lambda: ticket.end - lifetime / 5  # due for renewal, not expired
    collect(simulator, username="short", password=password)
    assert fresh_store.kinits == 2  # renewal was tried, and failed
    assert slot.ticket is ticket
    fresh_store.clock = lambda: ticket.end + 1
    error = failure(simulator, username="short", password=password)
    assert str(error).startswith("Kerberos: cannot reach a KDC for the realm of short@KRBTEST.COM")
    assert fresh_store.kinits == 3


def expired_cache(kdc: KDC, tmp_path: Path) -> str:
    path = str(tmp_path / "expired-ccache")
    kdc.realm.kinit(f"short@{REALM}", kdc.passwords["short"], flags=["-c", path])
    end = time.time() + SHORT_LIFE
    while time.time() <= end + 1:
        time.sleep(0.2)
    return path


@pytest.mark.parametrize(
    ("case", "start", "kind"),
    [
        ("kdc_unreachable", "Kerberos: cannot reach a KDC for the realm of user@KRBTEST.COM",
         FailureKind.KDC_UNREACHABLE),
        ("clock_skew", "Kerberos: clock skew: the server says the ticket is not yet valid",
         FailureKind.CLOCK_SKEW),
        ("unknown_principal", "Kerberos: the KDC does not know the client principal "
                              "nobody@KRBTEST.COM", FailureKind.AUTH),
        ("wrong_password", "Kerberos: wrong password or key for user@KRBTEST.COM",
         FailureKind.AUTH),
        ("no_spn", "Kerberos: no service principal HTTP/127.0.0.1 in the KDC", FailureKind.AUTH),
        ("ticket_expired", "Kerberos: the ticket of short@KRBTEST.COM in ", FailureKind.AUTH),
    ],
)
def test_failures_have_a_reason_and_kind(kdc: KDC, sim: Sim, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, case: str,
                                         start: str, kind: FailureKind) -> None:
    simulator = sim()
    args: dict[str, Any] = {"password": kdc.passwords["user"]}
    if case == "kdc_unreachable":
        monkeypatch.setenv("KRB5_CONFIG", kdc.closed_port_config())
    elif case == "unknown_principal":
        args["username"] = "nobody"
    elif case == "wrong_password":
        args["password"] = WRONG
    elif case == "no_spn":
        args["host"] = "127.0.0.1"
    elif case == "ticket_expired":
        args = {"username": "", "ccache": f"FILE:{expired_cache(kdc, tmp_path)}"}
    if case == "clock_skew":
        # The KDC 2 hours ahead of the WinRM server (libfaketime): its tickets start in 2 hours,
        # so the server, whose clock is this host's, refuses the AP-REQ and says why in a
        # KRB-ERROR (MIT's client itself follows the KDC's clock: kdc_timesync).
        with kdc.skewed_clock("+2h"):
            error = failure(simulator, **args)
    else:
        error = failure(simulator, **args)
    message = str(error)
    assert message.startswith(start), message
    assert error.kind == kind
    for secret in (kdc.passwords["user"], WRONG):
        assert secret not in message
    assert simulator.principals == []


@pytest.mark.parametrize("source", ["password", "ccache"])
def test_a_silent_kdc_cannot_hold_the_probe(kdc: KDC, sim: Sim, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path, source: str) -> None:
    # The KDC takes the connection and never answers: libkrb5 would wait its own timeouts in
    # the collection thread; the exchange runs beside it and the probe stops at its deadline.
    simulator = sim()
    args: dict[str, Any] = {"password": kdc.passwords["user"]}
    if source == "ccache":  # a TGT, but no service ticket yet
        cache = str(tmp_path / "ccache")
        kdc.realm.kinit(f"user@{REALM}", kdc.passwords["user"], flags=["-c", cache])
        args = {"username": "", "ccache": f"FILE:{cache}"}
    with silent_kdc() as port:
        monkeypatch.setenv("KRB5_CONFIG", kdc.config_for_kdc(port))
        deadline = Deadline.after(1.5)
        with pytest.raises(CollectorError) as info:
            collect_until(simulator, deadline, **args)
        assert deadline.expired()
    what = (f"getting a ticket for user@{REALM}" if source == "password"
            else "getting a ticket for HTTP/localhost")
    assert str(info.value) == f"Kerberos: the KDC did not answer within the probe deadline ({what})"
    assert info.value.kind == FailureKind.KDC_UNREACHABLE
    assert simulator.auth_tokens == 0


def test_a_401_loop_is_capped(kdc: KDC, sim: Sim) -> None:
    # The server answers every AP-REQ with 401 and a token. A Kerberos context is complete after
    # its AP-REQ, so one token is all the server gets (MAX_AUTH_ROUNDS would stop a client
    # library that tried again).
    simulator = sim(fault="auth_loop")
    error = failure(simulator, password=kdc.passwords["user"])
    assert simulator.auth_tokens == 1 <= MAX_AUTH_ROUNDS
    assert str(error) == ("Kerberos authentication failed (HTTP 401) for user user at "
                          f"http://localhost:{simulator.port}/wsman")
    assert error.kind == FailureKind.AUTH
    assert simulator.requests == []  # no WS-Man operation ran unauthenticated


def test_a_garbage_token_gets_a_clear_reason(kdc: KDC, sim: Sim) -> None:
    simulator = sim(fault="garbage_token")
    error = failure(simulator, password=kdc.passwords["user"])
    assert str(error) == ("the server's Kerberos answer could not be read (Kerberos "
                          f"authentication at http://localhost:{simulator.port}/wsman)")
    assert error.kind == FailureKind.PROTOCOL
    assert simulator.auth_tokens == 1


# ---------------------------------------------------------------------------------------------
# The exporter process: the secret appears in no log line and no answer


def test_the_password_never_leaves_the_exporter(kdc: KDC, sim: Sim, make_exporter: Any,
                                                tmp_path: Path) -> None:
    good, bad = sim(), sim()
    password = kdc.passwords["user"]
    (tmp_path / "good").write_text(password + "\n", encoding="utf-8")
    (tmp_path / "bad").write_text(WRONG + "\n", encoding="utf-8")

    def module(secret: str) -> dict[str, Any]:
        return {"timeout": "8s", "collectors": ["winrm"], "primary": "winrm", "winrm": {
            "scheme": "http", "auth": "kerberos", "username": "user", "password_file": secret,
            "cache_interval": "1s", "kerberos": {"realm": REALM}}}

    config = {
        "modules": {"good": module("good"), "bad": module("bad")},
        "targets": [
            {"name": "good", "address": "localhost", "module": "good",
             "winrm_url": good.url.replace("127.0.0.1", "localhost")},
            {"name": "bad", "address": "localhost", "module": "bad",
             "winrm_url": bad.url.replace("127.0.0.1", "localhost")},
        ],
    }
    config_file = tmp_path / "kerberos.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    check = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", "--config.check",
         f"--config.file={config_file}"], capture_output=True, text=True, timeout=60,
        env={**os.environ, **kdc.env}, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    exporter = make_exporter(config, "--log.level=debug", env=kdc.env)
    bodies = []
    for name in ("good", "bad", "good", "bad"):
        answer = httpx.get(f"{exporter.url}/probe", params={"target": name, "debug": "true"},
                           timeout=20)
        assert answer.status_code == 200
        bodies.append(answer.text)
    assert "citrix_license_up 1" in bodies[0], bodies[0]
    assert good.principals == [f"user@{REALM}"]
    assert "citrix_license_up 0" in bodies[1]
    assert "wrong password or key for user@KRBTEST.COM" in exporter.log()
    everything = "\n".join([*bodies, exporter.log(), check.stdout, check.stderr,
                            httpx.get(f"{exporter.url}/metrics", timeout=10).text,
                            httpx.get(f"{exporter.url}/", timeout=10).text])
    for secret in (password, WRONG):
        for form in (secret, secret[:8], secret[-8:], base64.b64encode(secret.encode()).decode()):
            assert form not in everything
