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
