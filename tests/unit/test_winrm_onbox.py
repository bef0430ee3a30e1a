"""The fixed on-box command and the parser of its output (citrix/onbox.py)."""

from __future__ import annotations

import base64

import pytest

from citrix_license_exporter.citrix.licensing import ParseError
from citrix_license_exporter.citrix.onbox import (
    HEADER,
    build_script,
    command_line,
    encode_command,
    match_script,
    parse_output,
    stderr_summary,
)

TAIL = 262144


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def output(*records: str, header: str = HEADER, end: bool = True) -> bytes:
    lines = [header, *records] + (["end"] if end else [])
    return ("\r\n".join(lines) + "\r\n").encode()


GOOD = (
    f"registry_version {b64('11.17.2.0 build 56200')}",
    "uninstall_version -",
    f"ls {b64('C:/LS')} 1",
    f"log 5000 {base64.b64encode(b'tail bytes').decode()}",
    f"file {b64('upload_1795744800.zip')} 48213",
    f"file {b64('Citrix.opt')} 12",
)


def test_command_line_fits_cmd_exe() -> None:
    executable, arguments = command_line(TAIL)
    assert executable == "powershell.exe"
    assert arguments[:3] == ["-NoProfile", "-NonInteractive", "-EncodedCommand"]
    # cmd.exe, which WinRS starts the command in, accepts at most 8191 characters.
    assert len(" ".join([executable, *arguments])) < 8000


def test_script_is_read_only() -> None:
    script = build_script(TAIL).lower()
    for verb in ("set-", "remove-", "new-item", "invoke-", "start-", "stop-", "out-file",
                 "iex", "downloadstring", "[io.file]::write", "'write'", "create"):
        assert verb not in script
    assert f"[math]::min($s.length,{TAIL})" in script


def test_simulator_recognises_exactly_the_script() -> None:
    executable, arguments = command_line(4096)
    assert match_script(executable, arguments) == 4096
    assert match_script("POWERSHELL.EXE", arguments) == 4096
    changed = build_script(4096).replace("'end'", "'end';Remove-Item C:\\x")
    assert match_script(executable, [*arguments[:3], encode_command(changed)]) is None
    assert match_script("cmd.exe", arguments) is None
    assert match_script(executable, [*arguments[:3], "not base64!"]) is None
    assert match_script(executable, arguments[1:]) is None


def test_good_output() -> None:
    data = parse_output(output(*GOOD), TAIL)
    assert data.registry_version == "11.17.2.0 build 56200"
    assert data.uninstall_version is None
    assert (data.ls_path, data.ls_exists) == ("C:/LS", True)
    assert (data.log_size, data.log_tail, data.log_truncated) == (5000, b"tail bytes", True)
    assert [f.name for f in data.files] == ["upload_1795744800.zip", "Citrix.opt"]


def test_no_log_and_empty_log() -> None:
    records = [r for r in GOOD if not r.startswith("log")]
    assert parse_output(output(*records, "log -"), TAIL).log_size is None
    empty = parse_output(output(*records, "log 0 "), TAIL)
    assert (empty.log_size, empty.log_tail, empty.log_truncated) == (0, b"", False)


@pytest.mark.parametrize(
    ("records", "kwargs", "message"),
    [
        (GOOD, {"header": "Windows PowerShell"}, "does not start with its header"),
        (GOOD, {"end": False}, r"incomplete \(no end record\)"),
        ((*GOOD, "surprise 1"), {}, "unknown record 'surprise'"),
        ((*GOOD, "ls eA== 1"), {}, "record ls appears twice"),
        (GOOD[1:], {}, "record registry_version is missing"),
        (("registry_version !!!", *GOOD[1:]), {}, "registry version is not Base64"),
        ((*GOOD[:3], "log 12 " + "QUJD" * 10), {}, "log tail of 30 bytes is too long"),
        ((*GOOD[:3], "log big QUJD"), {}, "log size 'big' is not a size"),
        ((*GOOD, "file xx"), {}, "malformed file record"),
        ((*GOOD[:2], "ls eA== yes", *GOOD[3:]), {}, "malformed ls record"),
    ],
)
def test_malformed_output(records: tuple[str, ...], kwargs: dict[str, object],
                          message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_output(output(*records, **kwargs), TAIL)  # type: ignore[arg-type]


def test_non_ascii_output() -> None:
    with pytest.raises(ParseError, match="not ASCII"):
        parse_output(output(*GOOD) + "é".encode(), TAIL)


def test_tail_longer_than_asked_is_refused() -> None:
    with pytest.raises(ParseError, match="too long"):
        parse_output(output(*GOOD), 4)


def test_stderr_summary_unpacks_clixml() -> None:
    clixml = (b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/'
              b'powershell/2004/04"><S S="Error">Get-ChildItem : Access to the path is denied.'
              b"_x000D__x000A_</S><S S=\"Error\">At line:1 char:1_x000D__x000A_</S></Objs>")
    assert stderr_summary(clixml) == "Get-ChildItem : Access to the path is denied."
    assert stderr_summary(b"\r\n'x' is not recognized\r\n") == "'x' is not recognized"
    assert stderr_summary(b"") == "no error text"


@pytest.mark.parametrize(
    ("registry", "uninstall", "expected"),
    [
        ("11.17.2.0 build 56200", "11.17.2.0 build 44000", ("11.17.2.0 build 56200", "registry")),
        ("11.17.2.0", "11.17.2.0 build 44000", ("11.17.2.0 build 44000", "uninstall")),
        (None, "11.17.2.0 build 44000", ("11.17.2.0 build 44000", "uninstall")),
        ("11.17.2.0", None, ("11.17.2.0", "registry")),  # the probe reports it as unparseable
        (None, None, (None, None)),
    ],
)
def test_version_choice(registry: str | None, uninstall: str | None,
                        expected: tuple[str | None, str | None]) -> None:
    from citrix_license_exporter.collectors.winrm import choose_version

    assert choose_version(registry, uninstall) == expected


def test_windows_setup_doc_shows_the_script_verbatim() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent.parent / "docs" / "windows-setup.md").read_text("utf-8")
    assert f"```powershell\n{build_script(TAIL)}```" in doc
