"""The ``winrm.kerberos`` and ``winrm.max_instances`` keys: every mistake named with its key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.collectors.winrm import KerberosConfig
from citrix_license_exporter.config import ConfigError, load_config


def load(tmp_path: Path, winrm: dict[str, Any]) -> Any:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"modules": {"m": {
        "collectors": ["winrm"], "primary": "winrm", "winrm": winrm}}}), encoding="utf-8")
    return load_config(str(path))


def problems(tmp_path: Path, winrm: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, winrm)
    # Lines are listed in the file's order and end with the line (settings branch): compared
    # here without it, in a fixed order.
    return sorted(re.sub(r" \(line \d+\)$", "", line) for line in info.value.lines())


def test_kerberos_keys_load(tmp_path: Path) -> None:
    (tmp_path / "svc.keytab").write_bytes(b"\x05\x02")
    config = load(tmp_path, {"auth": "kerberos", "username": "svc", "max_instances": 500,
                             "kerberos": {"realm": "CORP.EXAMPLE.COM",
                                          "spn": "WSMAN/ls01.corp.example.com",
                                          "keytab": "svc.keytab"}})
    winrm = config.modules["m"].winrm
    assert winrm.kerberos == KerberosConfig(realm="CORP.EXAMPLE.COM",
                                            spn="WSMAN/ls01.corp.example.com",
                                            keytab=str(tmp_path / "svc.keytab"))
    assert winrm.max_instances == 500
    # No credential at all: the credential cache KRB5CCNAME names.
    assert load(tmp_path, {"auth": "kerberos"}).modules["m"].winrm.kerberos == KerberosConfig()


def test_kerberos_mistakes_are_named(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("Kerberos-Config-Secret-1\n", encoding="utf-8")
    lines = problems(tmp_path, {
        "auth": "kerberos", "password_file": "pw", "max_instances": 0,
        "kerberos": {"spn": "HTTP", "realm": "bad realm", "keytab": "missing.keytab",
                     "kdc": "x"}})
    path = tmp_path / "config.yml"
    assert lines == sorted([
        f"{path}: modules.m.winrm.max_instances: expected a positive integer, got 0",
        f"{path}: modules.m.winrm.kerberos.kdc: unknown key (allowed: ccache, keytab, realm, "
        "spn)",
        f"{path}: modules.m.winrm.kerberos.realm: expected a realm name such as "
        "CORP.EXAMPLE.COM",
        f"{path}: modules.m.winrm.kerberos.spn: expected SERVICE/host, e.g. "
        "HTTP/ls01.corp.example.com",
        f"{path}: modules.m.winrm.kerberos.keytab: {tmp_path / 'missing.keytab'} does not exist",
        f"{path}: modules.m.winrm: auth kerberos takes one credential source, got "
        "password_file/password_env and kerberos.keytab",
        f"{path}: modules.m.winrm.username: required for auth kerberos with a password or "
        "keytab (the client principal, user or user@REALM)",
    ])
    assert not any("Kerberos-Config-Secret-1" in line for line in lines)


def test_kerberos_section_needs_auth_kerberos(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x-secret-value\n", encoding="utf-8")
    lines = problems(tmp_path, {"auth": "ntlm", "username": "u", "password_file": "pw",
                                "kerberos": {"realm": "CORP"}, "max_instances": 2_000_000})
    assert [line.split(": ", 1)[1] for line in lines] == [
        "modules.m.winrm.kerberos: only for auth kerberos",
        "modules.m.winrm.max_instances: expected at most 1000000, got 2000000",
    ]
