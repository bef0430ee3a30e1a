"""The settings layer: YAML with lines, duplicate keys, range checks at load time, secrets that
are never echoed, credentials only where the config sends them, the missing-file hint
(issue 15's settings bullet, issue 16 #3 #5 #10, issue 17 item 5)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from citrix_license_exporter.citrix.catalog import MAX_DATE, Catalog, Release, load_bundled, merge
from citrix_license_exporter.citrix.policy import assess
from citrix_license_exporter.citrix.versions import LicenseServerVersion
from citrix_license_exporter.config import (
    MAX_POLICY_MONTHS,
    ConfigError,
    TargetConfig,
    parse_config,
)

SECRET_LOOKING = "S3cr3t-Horse-Battery-9"


def problems(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "cfg.yml", base_dir=tmp_path, environ=env or {})
    return info.value.lines()


# ---------------------------------------------------------------------------------------------
# YAML: the line of the problem, duplicate keys


def test_syntax_error_names_the_line_where_the_problem_starts(tmp_path: Path) -> None:
    text = "modules:\n  default:\n    collectors: [probe, winrm\n    timeout: 10s\n" \
        "targets:\n  - {name: a, address: b}\n"
    lines = problems(text, tmp_path)
    assert len(lines) == 1
    # The unclosed '[' is on line 3; PyYAML alone points at where it gave up.
    assert lines[0].startswith("cfg.yml: line 3: invalid YAML: while parsing a flow sequence"), \
        lines


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    lines = problems(
        """\
        modules:
          default:
            timeout: 5s
            collectors: [probe]
            timeout: 50s
        """,
        tmp_path,
    )
    assert lines == ["cfg.yml: modules.default.timeout: key given twice, on lines 3 and 5; "
                     "keep one of them"]


def test_validation_problems_carry_the_line_of_their_key(tmp_path: Path) -> None:
    lines = problems("# comment\nmodules:\n  default:\n\n    timeout: never\n", tmp_path)
    assert lines == ["cfg.yml: modules.default.timeout: 'never' is not a duration such as "
                     "10s, 15m or 24h (line 5)"]


def test_aliases_are_not_walked_again(tmp_path: Path) -> None:
    # "Billion laughs": nine levels of ten aliases. Walking each alias once keeps this cheap.
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines = problems("\n".join(levels) + "\nmodules: {d: {}}\n", tmp_path)
    assert [line.split(":")[1].strip() for line in lines] == [f"a{i}" for i in range(9)]


# ---------------------------------------------------------------------------------------------
# Every value is range-checked at load time (issue 16 #3)


@pytest.mark.parametrize(
    ("snippet", "key", "reason"),
    [
        ("policy: {months: 100000}", "policy.months", "expected at most 120"),
        ("policy: {months: 0}", "policy.months", "expected a positive integer"),
        ("policy: {minimum_builds: [{build: 40000, deadline: 99999-01-01}]}",
         "policy.minimum_builds[0].deadline", "expected a date"),
        ("policy: {minimum_builds: [{build: 40000, deadline: 3500-01-01}]}",
         "policy.minimum_builds[0].deadline", "expected a date between"),
        ("policy: {six_month_rule_from_build: 10000000000}", "policy.six_month_rule_from_build",
         "expected at most"),
        ("modules: {m: {timeout: .inf}}", "modules.m.timeout", "expected a duration"),
        ("modules: {m: {timeout: 30d}}", "modules.m.timeout", "must be at most 1h"),
        ("modules: {m: {probe: {ports: {web_services: 0}}}}", "modules.m.probe.ports.web_services",
         "expected a port number 1-65535"),
        ("modules: {m: {probe: {ports: {smtp: 25}}}}", "modules.m.probe.ports.smtp",
         "unknown key (allowed: license_manager, vendor_daemon, web_services)"),
        ("modules: {m: {collectors: [winrm], winrm: {auth: kerberos, cache_interval: 999d}}}",
         "modules.m.winrm.cache_interval", "must be at most 30d"),
        ("modules: {m: {collectors: [winrm], winrm: {auth: kerberos, max_response_bytes: "
         "99999999999}}}", "modules.m.winrm.max_response_bytes", "expected at most"),
        ("modules: {m: {collectors: [winrm], winrm: {auth: kerberos, log_tail_bytes: 8000000}}}",
         "modules.m.winrm", "log_tail_bytes does not fit in max_response_bytes"),
        ("catalog: {refresh_interval: 400d}", "catalog.refresh_interval", "must be at most 30d"),
        ("catalog: {timeout: 0s}", "catalog.timeout", "must be greater than zero"),
    ],
)
def test_values_out_of_range_are_refused_at_load(
    tmp_path: Path, snippet: str, key: str, reason: str
) -> None:
    text = snippet if snippet.startswith("modules") else "modules: {d: {}}\n" + snippet
    lines = problems(text + "\n", tmp_path)
    assert any(line.startswith(f"cfg.yml: {key}: {reason}") for line in lines), lines


def test_the_largest_valid_policy_cannot_fail_a_probe(tmp_path: Path) -> None:
    """policy.months at its limit, with a release on the last day the catalog accepts: the
    deadline arithmetic of a probe stays in range (it raised ValueError at months: 100000)."""
    config = parse_config(
        f"modules: {{d: {{}}}}\npolicy: {{months: {MAX_POLICY_MONTHS}, minimum_builds: [], "
        "six_month_rule_from_build: 0}\n", "cfg.yml", base_dir=tmp_path, environ={},
    )
    last = Release(version=LicenseServerVersion.of("11.99.0.0", 999_999_000), released=MAX_DATE,
                   released_after=None, released_by=None, source="test")
    catalog = merge(Catalog((last,)), load_bundled())
    before_last = catalog.releases[-2]  # its deadline comes from the release on MAX_DATE
    result = assess(before_last.version, catalog, config.policy)
    assert result.deadline is not None
    assert result.deadline.at.date() > MAX_DATE


def test_example_configs_still_load(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "winrm-password").write_text("example-pw\n")
    text = (root / "examples" / "config.yml").read_text()
    config = parse_config(text, "config.yml", base_dir=tmp_path, environ={})
    assert set(config.modules) == {"default", "ports_only"}


# ---------------------------------------------------------------------------------------------
# A value that may be a secret is never echoed (issue 16 #10)


SECRET_CONFIG = f"""\
modules:
  w:
    collectors: [winrm]
    winrm: {{username: u, password_env: {SECRET_LOOKING}}}
  c:
    collectors: [controller]
    controller: {{username: u, password_file: '{SECRET_LOOKING}'}}
targets:
  - {{name: a, address: a.example, module: c, controllers: [https://ddc.example]}}
"""


def test_what_is_written_under_env_and_file_keys_is_never_quoted(tmp_path: Path) -> None:
    lines = problems(SECRET_CONFIG, tmp_path)
    text = "\n".join(lines)
    assert "modules.w.winrm.password_env: the environment variable named under password_env " \
           "is not set" in text
    assert "modules.c.controller.password_file: cannot read the file named there" in text
    assert SECRET_LOOKING not in text
    assert SECRET_LOOKING[:6] not in text


def test_config_check_and_the_reload_answer_do_not_echo_it(tmp_path: Path) -> None:
    from citrix_license_exporter.app import ExporterState

    path = tmp_path / "config.yml"
    path.write_text(SECRET_CONFIG)
    check = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", "--config.check",
         f"--config.file={path}"], capture_output=True, text=True, timeout=60, check=False,
    )
    assert check.returncode == 1
    assert "password_env" in check.stderr
    assert SECRET_LOOKING not in check.stdout + check.stderr

    start = subprocess.run(
        [sys.executable, "-m", "citrix_license_exporter.cli", f"--config.file={path}",
         "--web.listen-address=127.0.0.1:0"], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert start.returncode == 1 and "password_env" in start.stderr  # the start-up log
    assert SECRET_LOOKING not in start.stdout + start.stderr

    path.write_text("modules: {d: {}}\n")
    state = ExporterState.load(str(path))
    path.write_text(SECRET_CONFIG)
    ok, body = state.reload()  # the text POST /-/reload answers with its 500
    assert not ok and "password_env" in body
    assert SECRET_LOOKING not in body


# ---------------------------------------------------------------------------------------------
# Credentials go only where the config sends them (issue 16 #5)


PAIRING = """\
modules:
  network: {collectors: [probe]}
  winrm:
    collectors: [winrm, probe]
    winrm: {username: u, password_env: PW}
  winrm_any:
    collectors: [winrm]
    allow_unlisted_targets: true
    winrm: {username: u, password_env: PW}
targets:
  - {name: partner-ls, address: partner.example, module: network}
  - {name: own-ls, address: own.example, module: winrm}
  - {name: shared-ls, address: shared.example, module: network, allowed_modules: [winrm]}
"""


def test_a_module_with_credentials_is_only_used_where_the_config_pairs_it(tmp_path: Path) -> None:
    config = parse_config(PAIRING, "cfg.yml", base_dir=tmp_path, environ={"PW": "pw-1234"})
    refused = config.resolve("partner-ls", "winrm")
    assert isinstance(refused, str) and "sends credentials" in refused
    assert "allowed_modules" in refused
    by_address = config.resolve("partner.example", "winrm")  # the same target by address
    assert isinstance(by_address, str)
    for name, module in (("own-ls", "winrm"), ("own-ls", None), ("shared-ls", "winrm"),
                         ("own-ls", "network"), ("partner-ls", None)):
        resolved = config.resolve(name, module)
        assert not isinstance(resolved, str), (name, module, resolved)
        assert resolved[1].name == (module or resolved[0].module)
    # An unlisted host only with a module that opts in for any host.
    unlisted = config.resolve("elsewhere.example", "winrm_any")
    assert not isinstance(unlisted, str) and unlisted[0].address == "elsewhere.example"
    assert isinstance(config.resolve("elsewhere.example", "winrm"), str)


def test_allowed_modules_must_name_modules(tmp_path: Path) -> None:
    lines = problems(PAIRING.replace("allowed_modules: [winrm]", "allowed_modules: [wimrm]"),
                     tmp_path, {"PW": "x" * 8})
    assert lines == ["cfg.yml: targets[2].allowed_modules: no module named 'wimrm' (line 13)"]


def test_targets_built_by_code_still_work() -> None:
    target = TargetConfig(name="t", address="127.0.0.1", module="m")
    assert target.allowed_modules == () and target.ports == {}


# ---------------------------------------------------------------------------------------------
# Started without a configuration file (issue 17 item 5)


def test_without_a_config_file_the_exporter_says_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "citrix-license-exporter.yml"
    for extra in ([], ["--config.check"]):
        result = subprocess.run(
            [sys.executable, "-m", "citrix_license_exporter.cli", f"--config.file={missing}",
             "--web.listen-address=127.0.0.1:0", *extra],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        )
        assert result.returncode == 1
        assert f"no configuration file at {missing}" in result.stderr
        assert "--config.file=PATH" in result.stderr
        assert "citrix-license-exporter demo" in result.stderr


def test_module_parameter_sends_no_credentials_to_an_unpaired_target(tmp_path: Path) -> None:
    """Over real HTTP: ``module=winrm`` for a target configured with the network module is a
    400, and the WinRM endpoint the target names never sees a connection."""
    import socket
    import threading

    import httpx

    from citrix_license_exporter.app import ExporterState
    from citrix_license_exporter.web import ExporterServer

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    path = tmp_path / "config.yml"
    path.write_text(PAIRING.replace(
        "module: network}",
        f"module: network, winrm_url: 'http://127.0.0.1:{port}/wsman'}}", 1,
    ).replace("winrm: {username: u, password_env: PW}", "winrm: {username: u, password_file: pw,"
              " scheme: http, auth: basic, allow_unencrypted: true}"))
    (tmp_path / "pw").write_text("pairing-secret-1\n")
    state = ExporterState.load(str(path))
    server = ExporterServer(("127.0.0.1", 0), state)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.ready.set()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/probe"
        answer = httpx.get(url, params={"target": "partner-ls", "module": "winrm"}, timeout=30)
        assert answer.status_code == 400
        assert "sends credentials" in answer.text and "pairing-secret" not in answer.text
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        server.shutdown()
        server.server_close()
        listener.close()
