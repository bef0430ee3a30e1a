from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from citrix_license_exporter.config import (
    ConfigError,
    Secret,
    load_config,
    parse_config,
    parse_duration,
)

GOOD = """
modules:
  default:
    timeout: 8s
    collectors: [probe]
  windows:
    collectors: [winrm, probe]
    winrm:
      username: 'CORP\\svc-monitor'
      password_file: secret.txt
      cache_interval: 15m
targets:
  - name: ls-paris
    address: ls-paris.corp.example
  - name: ls-lyon
    address: 10.0.0.5
    module: windows
    telemetry: manual
    ports: {web_services: 8443}
"""


def parse(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> object:
    return parse_config(textwrap.dedent(text), "cfg.yml", base_dir=tmp_path, environ=env or {})


def problems(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path, env)
    return info.value.lines()


def test_valid_config(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("hunter2\n")
    config = parse_config(GOOD, "cfg.yml", base_dir=tmp_path, environ={})
    paris = config.find_target("ls-paris")
    lyon = config.find_target("10.0.0.5")
    assert paris is not None and lyon is not None
    assert paris.module == "default" and config.modules["default"].timeout == 8.0
    assert lyon.name == "ls-lyon" and lyon.telemetry == "manual"
    windows = config.modules["windows"]
    assert windows.primary == "winrm"
    assert windows.winrm is not None
    assert windows.winrm.password == Secret("hunter2")
    assert windows.winrm.cache_interval == 900.0
    assert windows.winrm.effective_port == 5986
    assert lyon.port(windows, "web_services") == 8443
    assert lyon.port(windows, "license_manager") == 27000
    assert "hunter2" not in repr(config)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    lines = problems("modules:\n  default: [\n", tmp_path)
    assert len(lines) == 1
    assert lines[0].startswith("cfg.yml: line ") and "invalid YAML" in lines[0]


def test_unknown_key_is_named_with_its_path(tmp_path: Path) -> None:
    lines = problems("modules:\n  default:\n    timout: 5s\n", tmp_path)
    assert len(lines) == 1
    assert lines[0].startswith("cfg.yml: modules.default.timout: unknown key (allowed: ")
    assert "timeout" in lines[0]


def test_bad_duration(tmp_path: Path) -> None:
    lines = problems("modules:\n  default:\n    timeout: soon\n", tmp_path)
    assert lines == ["cfg.yml: modules.default.timeout: 'soon' is not a duration such as "
                     "10s, 15m or 24h (line 3)"]


def test_unknown_collector(tmp_path: Path) -> None:
    lines = problems("modules:\n  default:\n    collectors: [probe, snmp]\n", tmp_path)
    assert lines[0].startswith("cfg.yml: modules.default.collectors[1]: unknown collector 'snmp'")


def test_primary_must_be_a_listed_collector(tmp_path: Path) -> None:
    lines = problems("modules:\n  default:\n    primary: winrm\n", tmp_path)
    assert lines == ["cfg.yml: modules.default.primary: 'winrm' is not in this module's "
                     "collectors (line 3)"]


def test_target_needs_address_and_known_module(tmp_path: Path) -> None:
    lines = problems(
        "modules: {default: {}}\ntargets:\n  - name: a\n  - {name: b, address: x, module: nope}\n",
        tmp_path,
    )
    assert "cfg.yml: targets[0].address: required (line 3)" in lines
    assert "cfg.yml: targets[1].module: no module named 'nope' (line 4)" in lines


def test_duplicate_target_names(tmp_path: Path) -> None:
    lines = problems(
        "modules: {default: {}}\ntargets:\n  - {name: a, address: x}\n  - {name: a, address: y}\n",
        tmp_path,
    )
    assert lines == [
        "cfg.yml: targets[1].name: duplicate target name 'a' (also targets[0]) (line 4)"
    ]


def test_inline_password_refused_without_echoing_it(tmp_path: Path) -> None:
    lines = problems(
        "modules:\n  w:\n    collectors: [winrm]\n    winrm: {username: u, password: "
        "s3cr3t-inline}\n",
        tmp_path,
    )
    assert any("modules.w.winrm.password: inline secrets are not accepted" in line
               for line in lines)
    assert not any("s3cr3t-inline" in line for line in lines)


def test_password_file_missing(tmp_path: Path) -> None:
    lines = problems(
        "modules:\n  w:\n    collectors: [winrm]\n    winrm: {username: u, password_file: nope}\n",
        tmp_path,
    )
    assert len(lines) == 1
    assert lines[0].startswith("cfg.yml: modules.w.winrm.password_file: cannot read ")


def test_password_env_unset_and_set(tmp_path: Path) -> None:
    text = "modules:\n  w:\n    collectors: [winrm]\n    winrm: {username: u, password_env: PW}\n"
    # The variable's name is not echoed: it may be the password, typed there by mistake.
    assert problems(text, tmp_path) == [
        "cfg.yml: modules.w.winrm.password_env: the environment variable named under "
        "password_env is not set (or empty) (line 4)"
    ]
    config = parse_config(text, "cfg.yml", base_dir=tmp_path, environ={"PW": "from-env"})
    winrm = config.modules["w"].winrm
    assert winrm is not None and winrm.password == Secret("from-env")


def test_basic_over_http_needs_explicit_permission(tmp_path: Path) -> None:
    text = ("modules:\n  w:\n    collectors: [winrm]\n    winrm: {username: u, password_env: PW,"
            " auth: basic, scheme: http%s}\n")
    lines = problems(text % "", tmp_path, {"PW": "x"})
    assert len(lines) == 1 and "modules.w.winrm.auth: basic authentication over http" in lines[0]
    parse(text % ", allow_unencrypted: true", tmp_path, {"PW": "x"})


def test_enabled_collector_needs_its_section(tmp_path: Path) -> None:
    lines = problems("modules:\n  w:\n    collectors: [winrm]\n", tmp_path)
    assert lines == ["cfg.yml: modules.w: collector winrm is enabled but the module has no "
                     "winrm section (line 2)"]


def test_wrong_types(tmp_path: Path) -> None:
    lines = problems(
        "modules:\n  d:\n    probe: {ports: {license_manager: 70000}}\n"
        "    allow_unlisted_targets: yes please\ntargets: {a: 1}\n",
        tmp_path,
    )
    assert "cfg.yml: modules.d.probe.ports.license_manager: expected a port number 1-65535, " \
           "got 70000 (line 3)" in lines
    assert "cfg.yml: modules.d.allow_unlisted_targets: expected true or false, got " \
           "'yes please' (line 4)" in lines
    assert "cfg.yml: targets: expected a list, got a mapping (line 5)" in lines


def test_no_modules(tmp_path: Path) -> None:
    assert problems("targets: []\n", tmp_path) == [
        "cfg.yml: modules: at least one module is required"
    ]


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    lines = problems(
        "modules:\n  d: {timeout: -1s, collectors: [probe, probe]}\n"
        "targets:\n  - {name: 'bad name!', address: x}\n",
        tmp_path,
    )
    keys = sorted(line.split(": ")[1] for line in lines)
    assert keys == ["modules.d.collectors", "modules.d.timeout", "targets[0].module",
                    "targets[0].name"], lines


def test_bad_release_in_config_catalog(tmp_path: Path) -> None:
    lines = problems(
        "modules: {d: {}}\ncatalog:\n  releases:\n    - {version: '11.17.2.0', build: 99000}\n",
        tmp_path,
    )
    assert lines and all(line.startswith("cfg.yml: catalog.releases[0]") for line in lines)


def test_load_config_reports_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.yml"))
    assert "cannot read file" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("15m", 900), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), (30, 30)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "1x", True, -5])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
