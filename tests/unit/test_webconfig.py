"""--web.config.file: real TLS and basic auth on 127.0.0.1 against the exporter's own server.

The server is the real ``ExporterServer`` in this process (started in a thread) so each test
takes milliseconds; one test runs the real command line to prove a bad file stops the start.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ipaddress
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citrix_license_exporter import webauth, webconfig
from citrix_license_exporter.app import ExporterState
from citrix_license_exporter.web import ExporterServer
from citrix_license_exporter.webconfig import (
    WebConfigError,
    install_web_config,
    is_bcrypt_hash,
    load_web_config,
)

HOST = "127.0.0.1"
#: Low cost keeps the suite fast; the cache test uses a realistic cost.
FAST = bcrypt.hashpw(b"s3cret-pw", bcrypt.gensalt(rounds=4)).decode()


# ---------------------------------------------------------------------------------------------
# Certificates


@dataclass
class Issued:
    cert: Path
    key: Path
    serial: int


class CA:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = folder / f"{name}-ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool, sans: list[x509.GeneralName]) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.folder / f"{name}.crt"
        key_path = self.folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        return Issued(cert_path, key_path, cert.serial_number)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    server_ca = CA(tmp_path, "server")
    client_ca = CA(tmp_path, "client")
    rogue_ca = CA(tmp_path, "rogue")
    return {
        "server_ca": server_ca,
        "server": server_ca.issue(
            "server", server=True, sans=[x509.IPAddress(ipaddress.ip_address(HOST))]
        ),
        "client": client_ca.issue(
            "prometheus", server=False, sans=[x509.DNSName("prometheus.test")]
        ),
        "other_client": client_ca.issue(
            "someone", server=False, sans=[x509.DNSName("someone.test")]
        ),
        "rogue_client": rogue_ca.issue(
            "rogue", server=False, sans=[x509.DNSName("prometheus.test")]
        ),
        "client_ca": client_ca,
    }


def client_context(
    ca: CA, client: Issued | None = None, **versions: ssl.TLSVersion
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.path))
    for name, version in versions.items():
        setattr(context, name, version)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


# ---------------------------------------------------------------------------------------------
# The server


class Running:
    def __init__(self, server: ExporterServer, thread: threading.Thread, scheme: str) -> None:
        self.server = server
        self.thread = thread
        self.url = f"{scheme}://{HOST}:{server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def get(self, path: str = "/-/healthy", verify: ssl.SSLContext | bool = True,
            auth: tuple[str, str] | None = None, **kwargs: object) -> httpx.Response:
        with httpx.Client(verify=verify, timeout=10) as client:
            return client.get(self.url + path, auth=auth, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    config = tmp_path / "exporter.yml"
    config.write_text("modules: {default: {collectors: [probe]}}\ntargets: []\n")
    started: list[Running] = []

    def start(web_config: Path, scheme: str = "https") -> Running:
        state = ExporterState.load(str(config))
        server = ExporterServer((HOST, 0), state)
        install_web_config(server, str(web_config))
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        server.ready.set()
        running = Running(server, thread, scheme)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.shutdown()
        running.server.server_close()


def write(path: Path, text: str) -> Path:
    # A new inode each time, like editors and config management tools that rename into place.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def tls_yaml(pki: dict[str, object], **extra: str) -> str:
    server = pki["server"]
    assert isinstance(server, Issued)
    lines = [f"  cert_file: {server.cert.name}", f"  key_file: {server.key.name}"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


def auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("basic_auth_users: {alice: hunter2-plain}\n", "basic_auth_users.alice: not a bcrypt"),
        ("basic_auth_users: {alice: '$2b$12$short'}\n", "basic_auth_users.alice: not a bcrypt"),
        ("tls_server_config: {cert_file: a.crt}\n", "missing key_file"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}\n",
         "invalid value 'Sometimes'"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}\n",
         "RequireAnyClientCert is not supported"),
        ("tls_server_config: {cert_file: a, key_file: b, client_ca_file: ca.pem}\n",
         "without a client_auth_type that verifies"),
        ("tls_server_config: {cert_file: a, key_file: b, "
         "client_auth_type: RequireAndVerifyClientCert}\n", "needs client_ca_file"),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, "
         "max_version: TLS12}\n", "min_version is above max_version"),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}\n",
         "invalid value 'SSL3'"),
        ("tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_FANCY]}\n",
         "unknown or unsupported cipher suite 'TLS_FANCY'"),
        ("tls_server_config: {cert_file: a, key_file: b, curve_preferences: [X25519]}\n",
         "curve_preferences: not supported"),
        ("tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
         "needs client_auth_type RequireAndVerifyClientCert"),
        ("basic_auth_user: {}\n", "basic_auth_user: unknown key"),
        ("http_server_config: {headers: {Server: x}}\n", "headers.Server: unknown key"),
        ("tls_server_config: [\n", "invalid YAML"),
    ],
)
def test_invalid_web_configs_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "web.yml", text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    assert expected in str(info.value)
    assert "hunter2" not in str(info.value)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", "tls_server_config: {min_version: SSL3, cert_file: a}\n"
                                       "basic_auth_users: {a: plain1, b: plain2}\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    assert len(info.value.problems) == 4, info.value.problems


def test_bcrypt_hash_recognition() -> None:
    assert is_bcrypt_hash(FAST)
    assert is_bcrypt_hash(FAST.replace("$2b$", "$2y$", 1))  # htpasswd's flavour
    assert is_bcrypt_hash(FAST.replace("$2b$", "$2a$", 1))
    assert not is_bcrypt_hash(FAST[:-1])
    assert not is_bcrypt_hash("$1$abc$" + "x" * 22)  # md5-crypt
    assert not is_bcrypt_hash("password")
    assert not is_bcrypt_hash(FAST + "\n")
    assert not is_bcrypt_hash("$2$" + FAST[4:])


def test_missing_certificate_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", "tls_server_config: {cert_file: no.crt, key_file: no.key}\n")
    with pytest.raises(WebConfigError, match=r"cannot read .*no\.crt"):
        load_web_config(str(path))


def test_plaintext_password_stops_the_exporter_at_start(tmp_path: Path) -> None:
    config = write(tmp_path / "exporter.yml", "modules: {default: {}}\n")
    web = write(tmp_path / "web.yml", "basic_auth_users:\n  prometheus: Correct-Horse-9\n")
    result = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", f"--config.file={config}",
         f"--web.config.file={web}", "--web.listen-address=127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "invalid web config" in result.stderr
    assert "basic_auth_users.prometheus: not a bcrypt hash" in result.stderr
    assert "Correct-Horse-9" not in result.stderr + result.stdout


# ---------------------------------------------------------------------------------------------
# TLS


def test_tls_serves_https_and_refuses_plain_http(tmp_path: Path, pki, serve) -> None:
    running = serve(write(tmp_path / "web.yml", tls_yaml(pki)))
    ca = pki["server_ca"]
    response = running.get(verify=client_context(ca))
    assert response.status_code == 200 and response.text == "Healthy\n"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{HOST}:{running.port}/-/healthy", timeout=5)
    # A client that does not trust the server's CA refuses it (the server is really TLS).
    with pytest.raises(httpx.ConnectError):
        running.get(verify=True)


def test_min_version_is_enforced(tmp_path: Path, pki, serve) -> None:
    running = serve(write(tmp_path / "web.yml", tls_yaml(pki, min_version="TLS13")))
    ca = pki["server_ca"]
    assert running.get(verify=client_context(ca)).status_code == 200
    old = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(httpx.ConnectError):
        running.get(verify=old)


def test_client_certificate_required(tmp_path: Path, pki, serve) -> None:
    running = serve(write(tmp_path / "web.yml", tls_yaml(
        pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="client-ca.pem")))
    ca = pki["server_ca"]
    assert running.get(verify=client_context(ca, pki["client"])).status_code == 200
    for client in (None, pki["rogue_client"]):
        with pytest.raises(httpx.HTTPError):
            running.get(verify=client_context(ca, client))


def test_client_certificate_optional(tmp_path: Path, pki, serve) -> None:
    running = serve(write(tmp_path / "web.yml", tls_yaml(
        pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file="client-ca.pem")))
    ca = pki["server_ca"]
    assert running.get(verify=client_context(ca)).status_code == 200
    assert running.get(verify=client_context(ca, pki["client"])).status_code == 200
    with pytest.raises(httpx.HTTPError):  # a certificate that is given must verify
        running.get(verify=client_context(ca, pki["rogue_client"]))


def test_request_client_cert_serves_any_client(tmp_path: Path, pki, serve) -> None:
    web = write(tmp_path / "web.yml", tls_yaml(pki, client_auth_type="RequestClientCert"))
    running = serve(web)
    ca = pki["server_ca"]
    assert running.get(verify=client_context(ca)).status_code == 200
    assert running.get(verify=client_context(ca, pki["rogue_client"])).status_code == 200


def test_client_allowed_sans(tmp_path: Path, pki, serve) -> None:
    running = serve(write(tmp_path / "web.yml", tls_yaml(
        pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="client-ca.pem",
        client_allowed_sans="[prometheus.test]")))
    ca = pki["server_ca"]
    assert running.get(verify=client_context(ca, pki["client"])).status_code == 200
    with pytest.raises(httpx.HTTPError):  # valid certificate, wrong name
        running.get(verify=client_context(ca, pki["other_client"]))


def test_silent_client_neither_blocks_others_nor_holds_its_thread(
    tmp_path: Path, pki, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webconfig, "HANDSHAKE_TIMEOUT", 4.0)
    running = serve(write(tmp_path / "web.yml", tls_yaml(pki)))
    silent = [socket.create_connection((HOST, running.port)) for _ in range(5)]
    dripping = socket.create_connection((HOST, running.port))
    dripping.sendall(b"\x16")  # the first byte of a ClientHello, then nothing
    try:
        assert running.get(verify=client_context(pki["server_ca"])).status_code == 200
        # Answered while every silent connection is still held open by the server: it did
        # not wait for their handshakes to time out first.
        for sock in [*silent, dripping]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        # The server gives up on each of them after the handshake timeout.
        for sock in [*silent, dripping]:
            sock.settimeout(20)
            assert sock.recv(1) == b""
    finally:
        for sock in [*silent, dripping]:
            sock.close()


def test_certificate_rotation_is_picked_up(tmp_path: Path, pki, serve) -> None:
    running = serve(write(tmp_path / "web.yml", tls_yaml(pki)))
    ca = pki["server_ca"]
    first = pki["server"]

    def served_serial() -> int:
        with socket.create_connection((HOST, running.port), timeout=5) as raw, \
                client_context(ca).wrap_socket(raw, server_hostname=HOST) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    assert served_serial() == first.serial
    new = ca.issue("server-new", server=True, sans=[x509.IPAddress(ipaddress.ip_address(HOST))])
    # Rotate in place: the same file names get the new certificate and key.
    os.replace(new.key, first.key)
    os.replace(new.cert, first.cert)
    assert served_serial() == new.serial


# ---------------------------------------------------------------------------------------------
# Basic authentication


def test_basic_auth_good_bad_missing(tmp_path: Path, serve) -> None:
    running = serve(write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{FAST}'\n"),
                    scheme="http")
    good = running.get("/metrics", auth=("prometheus", "s3cret-pw"))
    assert good.status_code == 200 and "citrix_license_exporter_build_info" in good.text
    for auth in (("prometheus", "wrong"), ("nobody", "s3cret-pw"), ("prometheus", "")):
        refused = running.get("/metrics", auth=auth)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert "citrix_license" not in refused.text
    missing = running.get("/metrics")
    assert missing.status_code == 401
    for header in ("Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"x").decode()):
        assert running.get("/", headers={"Authorization": header}).status_code == 401
    # Every path is protected, POST included.
    for path in ("/", "/probe?target=x", "/-/healthy", "/-/ready"):
        assert running.get(path).status_code == 401
    with httpx.Client(timeout=10) as client:
        assert client.post(running.url + "/-/reload").status_code == 401
        ok = client.post(running.url + "/-/reload", auth=("prometheus", "s3cret-pw"))
        assert ok.status_code == 200


def test_basic_auth_over_tls_with_client_cert(tmp_path: Path, pki, serve) -> None:
    text = tls_yaml(pki, client_auth_type="RequireAndVerifyClientCert",
                    client_ca_file="client-ca.pem")
    running = serve(write(tmp_path / "web.yml", text + f"basic_auth_users: {{p: '{FAST}'}}\n"))
    context = client_context(pki["server_ca"], pki["client"])
    assert running.get(verify=context).status_code == 401
    assert running.get(verify=context, auth=("p", "s3cret-pw")).status_code == 200


def test_long_password_is_compared_like_bcrypt_elsewhere(tmp_path: Path, serve) -> None:
    # bcrypt reads the first 72 bytes (Go, htpasswd); bcrypt>=5 raises instead of truncating.
    password = "x" * 72
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    running = serve(write(tmp_path / "web.yml", f"basic_auth_users: {{u: '{hashed}'}}\n"),
                    scheme="http")
    assert running.get(auth=("u", password)).status_code == 200
    assert running.get(auth=("u", password + "tail")).status_code == 200
    assert running.get(auth=("u", "x" * 71)).status_code == 401


def test_successful_checks_are_cached(
    tmp_path: Path, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=12)).decode()
    running = serve(write(tmp_path / "web.yml", f"basic_auth_users: {{u: '{hashed}'}}\n"),
                    scheme="http")
    calls: list[int] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(1)
        return real(password, hashed_password)

    monkeypatch.setattr(webauth.bcrypt, "checkpw", counting)
    for _ in range(11):
        assert running.get(auth=("u", "pw")).status_code == 200
    assert len(calls) == 1, "a cached password was checked with bcrypt again"
    # A wrong password is never served from the cache.
    assert running.get(auth=("u", "pw2")).status_code == 401
    assert len(calls) == 2


def test_security_headers(tmp_path: Path, serve) -> None:
    running = serve(write(tmp_path / "web.yml",
                          "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"),
                    scheme="http")
    assert running.get("/").headers["X-Frame-Options"] == "deny"
    with httpx.Client(timeout=5) as client:  # one keep-alive connection: added once per response
        for _ in range(2):
            response = client.get(running.url + "/nope")
            assert response.headers.get_list("X-Frame-Options") == ["deny"]


# ---------------------------------------------------------------------------------------------
# Re-reading the file


def test_changed_file_is_picked_up_and_bad_file_keeps_the_old_one(
    tmp_path: Path, pki, serve, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{u: '{FAST}'}}\n")
    running = serve(path, scheme="http")
    assert running.get(auth=("u", "s3cret-pw")).status_code == 200
    new_hash = bcrypt.hashpw(b"rotated-pw", bcrypt.gensalt(rounds=4)).decode()
    write(path, f"basic_auth_users: {{u: '{new_hash}'}}\n")
    assert running.get(auth=("u", "s3cret-pw")).status_code == 401
    assert running.get(auth=("u", "rotated-pw")).status_code == 200

    caplog.set_level(logging.ERROR, logger="citrix_license_exporter")
    for bad in ("basic_auth_users: {u: plaintext-Pw1}\n", "", tls_yaml(pki)):
        write(path, bad)
        assert running.get(auth=("u", "rotated-pw")).status_code == 200  # old one kept
        assert running.get(auth=("u", "plaintext-Pw1")).status_code == 401
    failures = [r for r in caplog.records if "web config reload failed" in r.getMessage()]
    assert len(failures) == 3, "each bad version is reported once, not once per request"
    reasons = [r.fields["reason"] for r in failures]  # type: ignore[attr-defined]
    assert "not a bcrypt hash" in reasons[0]
    assert "empty" in reasons[1]
    assert "switching between TLS and plain HTTP" in reasons[2]
    assert not any("plaintext-Pw1" in str(r.__dict__) for r in caplog.records)

    write(path, "basic_auth_users: {}\n")  # a valid file that turns auth off is honoured
    assert running.get().status_code == 200


def test_tls_file_that_breaks_keeps_serving_the_old_certificate(
    tmp_path: Path, pki, serve, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", tls_yaml(pki))
    running = serve(path)
    context = client_context(pki["server_ca"])
    caplog.set_level(logging.ERROR, logger="citrix_license_exporter")
    pki["server"].key.write_text("not a key\n")  # type: ignore[attr-defined]
    assert running.get(verify=context).status_code == 200
    assert any("cannot load cert_file" in str(getattr(r, "fields", ""))
               for r in caplog.records)


def test_command_line_serves_tls_with_basic_auth(tmp_path: Path, pki) -> None:
    """The real command line: --web.config.file secures what users run."""
    from ..support.exporter import ExporterProcess

    config = write(tmp_path / "exporter.yml", "modules: {default: {}}\n")
    web = write(tmp_path / "web.yml", tls_yaml(pki) + f"basic_auth_users: {{p: '{FAST}'}}\n")
    with ExporterProcess(f"--config.file={config}", f"--web.config.file={web}") as exporter:
        assert exporter.address is not None
        url = f"https://{exporter.address}/metrics"
        context = client_context(pki["server_ca"])
        with httpx.Client(verify=context, timeout=10) as client:
            assert client.get(url).status_code == 401
            response = client.get(url, auth=("p", "s3cret-pw"))
        assert response.status_code == 200
        assert "citrix_license_exporter_build_info" in response.text
        exporter.wait_for_log(r"web config loaded.*tls=True.*basic_auth_users=1")


def server_side_socket_option(local: tuple[str, int], peer: tuple[str, int], level: int,
                              option: int) -> int:
    """An option of the server's end of one connection, found among this process's open file
    descriptors (the server runs in-process): whatever the server is built on."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        try:
            if sock.getsockname()[:2] == local and sock.getpeername()[:2] == peer:
                return sock.getsockopt(level, option)
        except OSError:
            pass
        finally:
            sock.close()  # the duplicate only
    raise AssertionError(f"no server socket for {peer} -> {local}")


def test_kept_alive_tls_connection_answers_without_delay(
    tmp_path: Path, pki, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prometheus keeps its connection open: TCP_NODELAY on it (else Nagle's algorithm and the
    client's delayed ACK add about 40 ms to every answer), and no bcrypt per answer (the check
    is cached). The mechanism is asserted, not a latency."""
    calls: list[int] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(1)
        return real(password, hashed_password)

    monkeypatch.setattr(webauth.bcrypt, "checkpw", counting)
    text = tls_yaml(pki) + f"basic_auth_users: {{p: '{FAST}'}}\n"
    running = serve(write(tmp_path / "web.yml", text))
    auth = "Basic " + base64.b64encode(b"p:s3cret-pw").decode()
    connection = http.client.HTTPSConnection(HOST, running.port, timeout=10,
                                             context=client_context(pki["server_ca"]))
    try:
        sockets = []
        for path in ["/metrics"] + ["/-/healthy"] * 15:
            connection.request("GET", path, headers={"Authorization": auth})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            sockets.append(connection.sock)
        # Every answer came on this one connection (http.client reconnects silently
        # otherwise: then the socket would be a new one).
        assert connection.sock is not None and all(s is sockets[0] for s in sockets)
        client_end = connection.sock.getsockname()[:2]
        nodelay = server_side_socket_option((HOST, running.port), client_end,
                                            socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        connection.close()
    assert nodelay != 0, "TCP_NODELAY is not set on the server's end of the connection"
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# Half-written files and concurrent checks (issue 16 #12, #9)


@pytest.mark.parametrize(
    "half_written",
    ["basic_auth_users:\n", "basic_auth_users:\n# being edited\n",
     "http_server_config:\n  headers: {X-Frame-Options: deny}\n"],
)
def test_a_half_written_file_does_not_turn_basic_auth_off(
    tmp_path: Path, serve, caplog: pytest.LogCaptureFixture, half_written: str
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{u: '{FAST}'}}\n")
    running = serve(path, scheme="http")
    caplog.set_level(logging.ERROR, logger="citrix_license_exporter")
    write(path, half_written)
    assert running.get().status_code == 401  # auth stays on
    assert running.get(auth=("u", "s3cret-pw")).status_code == 200
    failures = [r for r in caplog.records if "web config reload failed" in r.getMessage()]
    assert len(failures) == 1
    assert "basic auth stays on" in failures[0].fields["reason"]  # type: ignore[attr-defined]
    write(path, "basic_auth_users: {}\n")  # complete, valid, and says so
    assert running.get().status_code == 200


def test_web_config_yaml_problems_name_the_line_and_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users:\n  u: '{FAST}'\n  u: hunter2-dup\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    assert info.value.problems == [
        "basic_auth_users.u: key given twice, on lines 2 and 3; keep one of them"
    ]
    assert "hunter2" not in str(info.value)
    path = write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: [a\n  key_file: b\n")
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    assert info.value.problems == ["line 2: invalid YAML"]


def test_a_correct_password_is_accepted_while_64_wrong_ones_are_being_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No lock is held while bcrypt runs: 64 wrong-password checks stuck inside bcrypt do not
    delay a correct one (with one lock for every uncached check, it would wait for all)."""
    hashed = bcrypt.hashpw(b"right-pw", bcrypt.gensalt(rounds=4))
    auth = webauth.BasicAuth({"prometheus": hashed})
    real = bcrypt.checkpw
    inside = threading.Semaphore(0)
    release = threading.Event()

    def slow_when_wrong(password: bytes, hashed_password: bytes) -> bool:
        if password != b"right-pw":
            inside.release()
            release.wait()
        return real(password, hashed_password)

    monkeypatch.setattr(webauth.bcrypt, "checkpw", slow_when_wrong)
    wrong = [threading.Thread(target=auth.check, args=("prometheus", f"wrong-{i}".encode()))
             for i in range(64)]
    for thread in wrong:
        thread.start()
    try:
        for _ in range(64):
            assert inside.acquire(timeout=60), "a wrong-password check never reached bcrypt"
        result: list[bool] = []
        correct = threading.Thread(target=lambda: result.append(
            auth.check("prometheus", b"right-pw")))
        correct.start()
        correct.join(timeout=60)
        assert result == [True], "the correct password waited for the wrong ones"
        assert all(thread.is_alive() for thread in wrong)  # they really were still running
    finally:
        release.set()
        for thread in wrong:
            thread.join()
    # The good answer is cached; a wrong one is remembered without its password.
    assert auth.lookup("prometheus", b"right-pw") is True
    assert auth.lookup("prometheus", b"wrong-3") is False
    assert auth.lookup("prometheus", b"never-tried") is None


def test_identical_checks_at_once_share_one_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
    auth = webauth.BasicAuth({"u": hashed})
    real = bcrypt.checkpw
    calls: list[bytes] = []
    entered = threading.Event()
    release = threading.Event()

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(password)
        entered.set()
        release.wait()
        return real(password, hashed_password)

    monkeypatch.setattr(webauth.bcrypt, "checkpw", counting)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(auth.check("u", b"bad")))
               for _ in range(16)]
    threads[0].start()
    assert entered.wait(60)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    assert results == [False] * 16
    assert len(calls) == 1, calls  # the others waited for it (or found it remembered)
