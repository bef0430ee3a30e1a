"""No configured credential ever comes out of the exporter.

The exporter runs at ``--log.level=debug`` against hostile servers on 127.0.0.1 that echo the
credentials they receive (the Authorization header, its decoded password, the JSON body with
the client secret) back in their error answers: a SOAP fault, a 401 and a WMI answer whose bad
value is the password, for WinRM; 401 and 500 JSON errors for the Delivery Controller token
call; a 401 for the Citrix Cloud token call. Then every output a user or a log reader sees is
searched for every credential, raw, Base64-encoded (as in a Basic header) and cut short: the
log, /probe, /metrics, the landing page, 400 and 404 bodies, a failed reload's 500 body,
``--config.check`` output, and the exporter's own basic-auth refusals.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from citrix_license_exporter.simulator.https import certificate, write_ca

from ..support.exposition import value

HOST = "127.0.0.1"
WINRM_USER = "CORP\\svc-echo"
WINRM_PASSWORD = "Wr-Echo-Pass-7f3a19"
DDC_USER = "CORP\\ddc-echo"
DDC_PASSWORD = "Ddc-Echo-Pass-91c2e4"
CLOUD_ID = "cloud-id-echo-55d0a1"
CLOUD_SECRET = "Cloud-Secret-Echo-2b9e77"
SCRAPE_PASSWORD = "Scrape-Pass-0c4f8d"  # the exporter's own basic auth
SOAP = "http://www.w3.org/2003/05/soap-envelope"


def forms(user: str | None, secret: str) -> list[str]:
    """The ways a credential can be spelled in output."""
    found = [secret, secret[:10], secret[-10:]]
    if user is not None:
        found.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return found


SECRETS = (
    forms(WINRM_USER, WINRM_PASSWORD) + forms(DDC_USER, DDC_PASSWORD)
    + forms(None, CLOUD_SECRET) + forms("prometheus", SCRAPE_PASSWORD)
    + [json.dumps(CLOUD_SECRET)[1:-1]]
)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


# ---------------------------------------------------------------------------------------------
# The hostile servers


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace") if length else ""

    def _echo(self, request_body: str) -> str:
        auth = self.headers.get("Authorization", "")
        decoded = ""
        if auth.lower().startswith("basic "):
            decoded = base64.b64decode(auth[6:]).decode("utf-8", "replace")
        return f"you sent Authorization: {auth} = {decoded}; body: {request_body}"

    def _send(self, status: int, body: str, content_type: str, **headers: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, header in headers.items():
            self.send_header(name.replace("_", "-"), header)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self._body()
        echo = self._echo(body)
        path = self.path
        if path.startswith("/wsman"):
            self._winrm(path, body, echo)
        elif path.endswith("/Tokens") or path.endswith("/tokens/clients"):
            status = 500 if path.startswith("/e500") else 401
            self._send(status, json.dumps({"Message": echo, "ErrorCode": "Echo"}),
                       "application/json")
        else:
            self._send(404, echo, "text/plain")

    do_GET = do_POST

    def _winrm(self, path: str, body: str, echo: str) -> None:
        soap = "application/soap+xml;charset=UTF-8"
        safe = echo.replace("&", "&amp;").replace("<", "&lt;")
        if path == "/wsman-401":
            self._send(401, echo, "text/plain", WWW_Authenticate="Basic realm=echo")
            return
        match = re.search(r"MessageID>(uuid:[^<]+)<", body)
        relates = match.group(1) if match else "uuid:0"
        auth = self.headers.get("Authorization", "")
        password = base64.b64decode(auth[6:]).decode().partition(":")[2] if auth else ""
        if path == "/wsman-data":
            inner = (
                f"<n:EnumerateResponse xmlns:n='http://schemas.xmlsoap.org/ws/2004/09/enumeration'"
                f" xmlns:w='http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd'><w:Items>"
                f"<p:Citrix_GT_License_Pool xmlns:p='urn:p'><p:PLD>{password}</p:PLD>"
                f"<p:Count>{password}</p:Count></p:Citrix_GT_License_Pool></w:Items>"
                f"<w:EndOfSequence/></n:EnumerateResponse>"
            )
            status = 200
        else:
            inner = (
                f"<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason>"
                f"<s:Text xml:lang='en-US'>{safe}</s:Text></s:Reason><s:Detail>"
                f"<f:WSManFault xmlns:f='http://schemas.microsoft.com/wbem/wsman/1/wsmanfault' "
                f"Code='2150858770'><f:Message>{safe}</f:Message></f:WSManFault></s:Detail>"
                "</s:Fault>"
            )
            status = 500
        envelope = (
            f"<s:Envelope xmlns:s='{SOAP}' xmlns:a='http://schemas.xmlsoap.org/ws/2004/08/"
            f"addressing'><s:Header><a:RelatesTo>{relates}</a:RelatesTo></s:Header>"
            f"<s:Body>{inner}</s:Body></s:Envelope>"
        )
        self._send(status, envelope, soap)


class Server(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def echo_servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    plain = Server((HOST, 0), Echo)
    tls = Server((HOST, 0), Echo)
    cert, key = certificate()
    (tmp_path / "echo.crt").write_bytes(cert)
    (tmp_path / "echo.key").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "echo.crt", tmp_path / "echo.key")
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
               for s in (plain, tls)]
    for thread in threads:
        thread.start()
    yield int(plain.server_address[1]), int(tls.server_address[1])
    for server in (plain, tls):
        server.shutdown()
        server.server_close()


def exporter_config(tmp_path: Path, plain: int, tls: int) -> dict[str, Any]:
    (tmp_path / "ddc-password").write_text(DDC_PASSWORD + "\n")
    (tmp_path / "cloud-secret").write_text(CLOUD_SECRET + "\n")
    ca = write_ca(tmp_path, "echo-ca.pem").name
    winrm = {"scheme": "http", "auth": "basic", "allow_unencrypted": True,
             "username": WINRM_USER, "password_env": "ECHO_WINRM_PASSWORD",
             "cache_interval": "0s"}
    controller = {"username": DDC_USER, "password_file": "ddc-password", "tls": {"ca_file": ca},
                  "cache_interval": "0s"}
    return {
        "modules": {
            "winrm": {"timeout": "5s", "collectors": ["winrm"], "winrm": winrm},
            "ddc": {"timeout": "5s", "collectors": ["controller"], "controller": controller},
            "ddc500": {"timeout": "5s", "collectors": ["controller"],
                       "controller": {**controller, "base_path": "/e500/cvad/manage"}},
            "cloud": {"timeout": "5s", "collectors": ["cloud"], "cloud": {
                "customer_id": "echo", "client_id_env": "ECHO_CLOUD_ID",
                "client_secret_file": "cloud-secret", "trust_url": f"https://{HOST}:{tls}",
                "licensing_url": f"https://{HOST}:{tls}", "tls": {"ca_file": ca},
                "cache_interval": "1s"}},
        },
        "targets": [
            *({"name": f"winrm-{kind}", "address": HOST, "module": "winrm",
               "winrm_url": f"http://{HOST}:{plain}/wsman-{kind}"}
              for kind in ("fault", "401", "data")),
            {"name": "ddc-401", "address": HOST, "module": "ddc",
             "controllers": [f"https://{HOST}:{tls}"]},
            {"name": "ddc-500", "address": HOST, "module": "ddc500",
             "controllers": [f"https://{HOST}:{tls}"]},
            {"name": "cloud", "address": HOST, "module": "cloud", "cloud_fqdn": "ls.echo.test"},
        ],
    }


ENV = {"ECHO_WINRM_PASSWORD": WINRM_PASSWORD, "ECHO_CLOUD_ID": CLOUD_ID}


def test_no_credential_leaves_the_exporter(echo_servers, make_exporter, tmp_path: Path) -> None:
    plain, tls = echo_servers
    config = exporter_config(tmp_path, plain, tls)
    config_path = tmp_path / "exporter.yml"
    config_path.write_text(yaml.safe_dump(config))
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exporter = make_exporter(config_path, "--log.level=debug", f"--web.config.file={web}",
                             env=ENV)
    auth = ("prometheus", SCRAPE_PASSWORD)
    bodies: dict[str, str] = {}
    with httpx.Client(base_url=exporter.url, timeout=30, auth=auth) as client:
        for target in config["targets"]:
            response = client.get("/probe", params={"target": target["name"]})
            assert response.status_code == 200
            bodies[f"probe {target['name']}"] = response.text
            assert value(response.text, "citrix_license_up") == 0, target["name"]
        for path in ("/", "/metrics", "/probe?target=nope", "/probe", "/nothing",
                     "/probe?target=ddc-401&module=nope", "/-/healthy"):
            bodies[path] = client.get(path).text
        # The exporter's own basic auth: a wrong and a right password, in logs at debug level.
        bodies["401"] = client.get("/metrics", auth=("prometheus", SCRAPE_PASSWORD[:-1])).text
        bodies["401 user"] = client.get("/", auth=(SCRAPE_PASSWORD, SCRAPE_PASSWORD)).text

        # A reload that fails, with the credentials inline (refused) and a broken key.
        broken = json.loads(json.dumps(config))
        broken["modules"]["winrm"]["winrm"]["password"] = WINRM_PASSWORD
        broken["modules"]["ddc"]["controller"]["password"] = DDC_PASSWORD
        broken["modules"]["cloud"]["cloud"]["client_secret"] = CLOUD_SECRET
        broken["modules"]["ddc"]["timeout"] = "never"
        config_path.write_text(yaml.safe_dump(broken))
        reload = client.post("/-/reload")
        assert reload.status_code == 500
        assert "inline secrets are not accepted" in reload.text
        bodies["reload"] = reload.text
        bodies["metrics after reload"] = client.get("/metrics").text
    check = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", "--config.check",
         f"--config.file={config_path}"],
        capture_output=True, text=True, timeout=30, env={**ENV, "PATH": ""},
    )
    assert check.returncode == 1
    bodies["config.check"] = check.stdout + check.stderr

    # Every probe failed for a reason the log gives: the echo reached the exporter.
    for target in config["targets"]:
        exporter.wait_for_log(rf"(collector failed|list unavailable).*(target={target['name']}|"
                              r"customer_id=echo)")
    exporter.stop()
    log = exporter.log()
    assert "level=debug" in log  # debug logging really was on
    assert "basic authentication failed" in log
    for line in exporter.lines:
        if leaks(line):
            print("LEAK", line)
    found = {where: leaks(text) for where, text in [*bodies.items(), ("log", log)]}
    assert not any(found.values()), {k: v for k, v in found.items() if v}


# ---------------------------------------------------------------------------------------------
# Credentials go to configured targets only: not where a redirect points


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with 401 (asking for Basic) and records what it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []  # shared with the test on purpose

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        Recorder.seen.append(f"{self.command} {self.path} {self.headers} {body}")
        self.send_response(401)
        self.send_header("WWW-Authenticate", "Basic realm=elsewhere")
        self.send_header("WWW-Authenticate", "Negotiate")
        self.send_header("WWW-Authenticate", "NTLM")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST


def redirector(location: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(307)
            self.send_header("Location", location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

    return Redirect


def test_redirects_do_not_take_credentials_elsewhere(make_exporter, tmp_path: Path) -> None:
    Recorder.seen = []
    elsewhere = Server((HOST, 0), Recorder)
    elsewhere_url = f"http://{HOST}:{elsewhere.server_address[1]}"
    servers = [elsewhere, Server((HOST, 0), redirector(elsewhere_url))]
    cert, key = certificate()
    (tmp_path / "r.crt").write_bytes(cert)
    (tmp_path / "r.key").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "r.crt", tmp_path / "r.key")
    tls = Server((HOST, 0), redirector(elsewhere_url))
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    servers.append(tls)
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        plain_port, tls_port = servers[1].server_address[1], tls.server_address[1]
        config = exporter_config(tmp_path, plain_port, tls_port)
        ntlm = {**config["modules"]["winrm"]["winrm"], "auth": "ntlm"}
        ntlm.pop("allow_unencrypted")
        config["modules"]["winrm-ntlm"] = {"timeout": "5s", "collectors": ["winrm"],
                                           "winrm": ntlm}
        config["targets"] = [
            {"name": "winrm-basic", "address": HOST, "module": "winrm",
             "winrm_url": f"http://{HOST}:{plain_port}/wsman"},
            {"name": "winrm-ntlm", "address": HOST, "module": "winrm-ntlm",
             "winrm_url": f"http://{HOST}:{plain_port}/wsman"},
            {"name": "ddc", "address": HOST, "module": "ddc",
             "controllers": [f"https://{HOST}:{tls_port}"]},
            {"name": "cloud", "address": HOST, "module": "cloud", "cloud_fqdn": "ls.echo.test"},
        ]
        exporter = make_exporter(config, env=ENV)
        for target in config["targets"]:
            response = exporter.get(f"/probe?target={target['name']}")
            assert value(response.text, "citrix_license_up") == 0, target["name"]
        sent = "\n".join(Recorder.seen)
        assert not leaks(sent), sent
        assert "Authorization" not in sent, sent
        assert not Recorder.seen, "a request followed a redirect to another server:\n" + sent
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_password_sharing_words_with_metric_names_leaves_the_answers_parseable(
    make_exporter, tmp_path: Path
) -> None:
    """Secrets are scrubbed from label values, not from names: a password beginning with
    "second" (and holding "licens") must not turn ``_seconds`` into ``_<hidden>s``."""
    from prometheus_client.parser import text_string_to_metric_families

    password = "seconds-license-Pw1"
    config = {
        "modules": {"winrm": {"timeout": "2s", "collectors": ["winrm"], "winrm": {
            "scheme": "http", "auth": "basic", "allow_unencrypted": True,
            "username": "monitor", "password_env": "WORDY_PASSWORD"}}},
        # A closed port: the probe fails, and its answer still names every family.
        "targets": [{"name": "ls", "address": HOST, "module": "winrm",
                     "winrm_url": f"http://{HOST}:9/wsman"}],
    }
    exporter = make_exporter(config, env={"WORDY_PASSWORD": password})
    with httpx.Client(base_url=exporter.url, timeout=30) as client:
        answers = {"/metrics": client.get("/metrics").text,
                   "/probe": client.get("/probe", params={"target": "ls"}).text}
    names = {path: {f.name for f in text_string_to_metric_families(body)}
             for path, body in answers.items()}
    assert "process_cpu_seconds" in names["/metrics"], answers["/metrics"]
    assert "citrix_license_probe_duration_seconds" in names["/probe"], answers["/probe"]
    assert "citrix_license_up" in names["/probe"]
    assert all("<hidden>" not in body for body in answers.values())
