"""A real MIT Kerberos realm on 127.0.0.1 (k5test: kdb5_util, krb5kdc), one per test session.

Principals:
- ``user@KRBTEST.COM`` (k5test's own, password ``realm.password("user")``), also kinit'ed
  into ``realm.ccache`` (what KRB5CCNAME names);
- ``svc-keytab@`` with its key in ``client_keytab``;
- ``short@`` whose tickets live ``SHORT_LIFE`` seconds (ticket renewal tests);
- the WinRM services ``HTTP/localhost`` and ``WSMAN/ls01.krbtest.test``, their keys in
  ``service_keytab`` (the simulator's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REALM = "KRBTEST.COM"
SHORT_LIFE = 6
SERVICES = ("HTTP/localhost", "WSMAN/ls01.krbtest.test")
FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@dataclass
class KDC:
    realm: Any  # k5test.K5Realm
    service_keytab: str
    client_keytab: str
    passwords: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        return dict(self.realm.env)

    def closed_port_config(self) -> str:
        """A krb5.conf whose KDC port has nothing listening (KDC unreachable)."""
        return self.config_for_kdc(free_port())

    def config_for_kdc(self, port: int) -> str:
        """A krb5.conf like the realm's whose KDC is at ``port`` on 127.0.0.1."""
        path = Path(self.realm.tmpdir, f"krb5-kdc-{port}.conf")
        text = Path(self.realm.env["KRB5_CONFIG"]).read_text(encoding="utf-8")
        path.write_text(text.replace(f"127.0.0.1:{self.realm.portbase}", f"127.0.0.1:{port}"),
                        encoding="utf-8")
        return str(path)


    @contextlib.contextmanager
    def skewed_clock(self, offset: str) -> Iterator[None]:
        """The KDC restarted with its clock ``offset`` away (libfaketime), and back after."""
        if not os.path.exists(FAKETIME_LIBRARY):
            raise RuntimeError("libfaketime missing: install Debian's faketime")
        self.realm.stop_kdc()
        self.realm.start_kdc(env={**self.realm.env, "LD_PRELOAD": FAKETIME_LIBRARY,
                                  "FAKETIME": offset, "FAKETIME_DONT_RESET": "1"})
        try:
            yield
        finally:
            self.realm.stop_kdc()
            self.realm.start_kdc()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _free_portbase() -> int:
    """Ten consecutive free ports (TCP and UDP) for k5test's KDC and friends."""
    for _ in range(50):
        base = free_port()
        if base > 65000:
            continue
        sockets = []
        try:
            for offset in range(10):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    sockets.append(s)
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no ten free consecutive ports")


def start_kdc() -> KDC:
    import k5test

    for tool in ("kdb5_util", "krb5kdc", "kadmin.local", "kinit"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise RuntimeError(f"{tool} missing: install krb5-kdc, krb5-admin-server, krb5-user")
    krb5_conf = {
        "libdefaults": {
            # The names the tests use are the names the exporter asks for: no DNS games.
            "dns_canonicalize_hostname": "false",
            "rdns": "false",
            "dns_lookup_realm": "false",
            "udp_preference_limit": "1",
        },
        "realms": {"$realm": {"kdc": "127.0.0.1:$port0"}},
        "domain_realm": {"localhost": "$realm", ".krbtest.test": "$realm"},
    }
    # As in Active Directory, every principal must preauthenticate (a timestamp encrypted with
    # its key), so a wrong password or a skewed clock is refused by the KDC itself.
    kdc_conf = {"realms": {"$realm": {"default_principal_flags": "+preauth"}}}
    realm = k5test.K5Realm(realm=REALM, portbase=_free_portbase(), krb5_conf=krb5_conf,
                           kdc_conf=kdc_conf, create_host=False)
    passwords = {"user": realm.password("user"), "short": "Short-Lived-Password-3x"}
    realm.addprinc(f"short@{REALM}", passwords["short"])
    realm.run_kadminl(["modprinc", "-maxlife", f"{SHORT_LIFE}s", f"short@{REALM}"])
    realm.addprinc(f"svc-keytab@{REALM}")
    client_keytab = os.path.join(realm.tmpdir, "svc-keytab.keytab")
    realm.extract_keytab(f"svc-keytab@{REALM}", client_keytab)
    service_keytab = os.path.join(realm.tmpdir, "service.keytab")
    for service in SERVICES:
        realm.addprinc(f"{service}@{REALM}")
        realm.extract_keytab(f"{service}@{REALM}", service_keytab)
    return KDC(realm, service_keytab, client_keytab, passwords)


@contextlib.contextmanager
def silent_kdc() -> Iterator[int]:
    """A port where a KDC accepts TCP connections and UDP datagrams and never answers."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    try:
        yield port
    finally:
        tcp.close()
        udp.close()
