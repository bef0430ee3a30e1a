"""The winrm module section: what the WinRM collector relies on from config.py."""

from __future__ import annotations

import pytest

from citrix_license_exporter.config import ConfigError, parse_config


def test_ntlm_needs_a_username() -> None:
    text = "modules:\n  w:\n    collectors: [winrm]\n    winrm: {password_env: PW}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yml", environ={"PW": "x"})
    assert "c.yml: modules.w.winrm.username: required for auth ntlm (line 4)" in info.value.lines()


def test_kerberos_may_use_the_credential_cache() -> None:
    text = "modules:\n  w:\n    collectors: [winrm]\n    winrm: {auth: kerberos}\n"
    winrm = parse_config(text, "c.yml", environ={}).modules["w"].winrm
    assert winrm is not None
    assert (winrm.username, winrm.password, winrm.effective_port) == ("", None, 5986)


def test_services_default_to_the_four_of_the_evidence_and_a_module_sets_its_own() -> None:
    base = "modules:\n  w:\n    collectors: [winrm]\n    winrm:\n      auth: kerberos\n"
    winrm = parse_config(base, "c.yml", environ={}).modules["w"].winrm
    assert winrm is not None
    assert [(s.name, s.required) for s in winrm.services] == [
        ("Citrix Licensing", True), ("CitrixWebServicesforLicensing", True),
        ("Citrix_GTLicensingProv", True), ("CtxLSPortSvc", True)]
    assert winrm.count_includes_overdraft is True
    text = base + (
        "      count_includes_overdraft: false\n"
        "      services:\n"
        "        - Citrix Licensing\n"
        "        - {name: Citrix Licensing WMI, required: false}\n"
    )
    winrm = parse_config(text, "c.yml", environ={}).modules["w"].winrm
    assert winrm is not None
    assert [(s.name, s.required) for s in winrm.services] == [
        ("Citrix Licensing", True), ("Citrix Licensing WMI", False)]
    assert winrm.count_includes_overdraft is False


def test_bad_service_list_and_overdraft_flag_name_the_key() -> None:
    text = (
        "modules:\n  w:\n    collectors: [winrm]\n    winrm:\n      auth: kerberos\n"
        "      count_includes_overdraft: maybe\n"
        "      services: [Citrix Licensing, \"O'Brien\"]\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yml", environ={})
    lines = info.value.lines()
    assert any(line.startswith("c.yml: modules.w.winrm.services: [1]: expected a service name")
               for line in lines), lines
    assert "c.yml: modules.w.winrm.count_includes_overdraft: expected true or false, got " \
           "'maybe' (line 6)" in lines
