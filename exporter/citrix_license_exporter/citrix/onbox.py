"""The one fixed command the exporter runs on the License Server, and the parser of its output.

WMI (read by WS-Management Enumerate) has no access to files, so one small, read-only
PowerShell script reads what only the file system and registry know: the installed version,
the end of the uploader log and the names of the waiting upload bundles. It prints one record
per line, values in Base64, and interprets nothing: every byte is judged in Python (here and in
uploader_log.py), where it is tested. docs/windows-setup.md shows the script verbatim.

Output (ASCII, one record per line)::

    citrix-license-exporter 1
    registry_version <base64 UTF-8 | ->
    uninstall_version <base64 UTF-8 | ->
    ls <base64 path> <1 | 0>            # whether the LS folder exists
    log <file size> <base64 tail>  |  log -
    file <base64 name> <size>           # zero or more, files in LS\\resource\\usage
    end
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..redaction import shorten
from .licensing import ParseError, excerpt

TAIL_PLACEHOLDER = "__TAIL_BYTES__"
MAX_FILES = 5000
HEADER = "citrix-license-exporter 1"

#: ASSUMPTIONS (docs/windows-setup.md): the registry key and value, the Uninstall entry's
#: DisplayName, and the LS folder under "Program Files (x86)".
SCRIPT_TEMPLATE = (
    "$ErrorActionPreference='Stop'\n"
    "function E($s){if($null -eq $s -or \"$s\" -eq ''){'-'}else{"
    "[Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes([string]$s))}}\n"
    f"'{HEADER}'\n"
    "$v=$null;try{$v=(Get-ItemProperty -LiteralPath "
    "'HKLM:\\SOFTWARE\\WOW6432Node\\Citrix\\LicenseServer\\Install' -Name Version)"
    ".Version}catch{}\n"
    "'registry_version '+(E $v)\n"
    "$d=$null;foreach($k in 'HKLM:\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\"
    "Uninstall','HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall'){try{"
    "foreach($i in Get-ChildItem -LiteralPath $k){$p=Get-ItemProperty -LiteralPath $i.PSPath;"
    "if($p.DisplayName -eq 'Citrix Licensing'){$d=$p.DisplayVersion}}}catch{}}\n"
    "'uninstall_version '+(E $d)\n"
    "$ls=Join-Path ${env:ProgramFiles(x86)} 'Citrix\\Licensing\\LS'\n"
    "'ls '+(E $ls)+' '+[int](Test-Path -LiteralPath $ls -PathType Container)\n"
    "$f=Join-Path $ls 'Logs\\log_ctxuploader.log'\n"
    "if(Test-Path -LiteralPath $f -PathType Leaf){"
    "$s=[IO.File]::Open($f,'Open','Read','ReadWrite');try{"
    f"$n=[Math]::Min($s.Length,{TAIL_PLACEHOLDER});$null=$s.Seek(-$n,'End');"
    "$b=New-Object byte[] $n;$r=0;while($r -lt $n){$c=$s.Read($b,$r,$n-$r);"
    "if($c -le 0){break};$r+=$c};"
    "'log '+$s.Length+' '+[Convert]::ToBase64String($b,0,$r)}finally{$s.Dispose()}}"
    "else{'log -'}\n"
    "$u=Join-Path $ls 'resource\\usage'\n"
    "if(Test-Path -LiteralPath $u -PathType Container){Get-ChildItem -LiteralPath $u -File|"
    f"Select-Object -First {MAX_FILES}|ForEach-Object{{'file '+(E $_.Name)+' '+$_.Length}}}}\n"
    "'end'\n"
)

EXECUTABLE = "powershell.exe"
FIXED_ARGUMENTS = ("-NoProfile", "-NonInteractive", "-EncodedCommand")


def build_script(tail_bytes: int) -> str:
    if tail_bytes <= 0:
        raise ValueError("tail_bytes must be positive")
    return SCRIPT_TEMPLATE.replace(TAIL_PLACEHOLDER, str(int(tail_bytes)))


def encode_command(script: str) -> str:
    """PowerShell's -EncodedCommand: Base64 of the UTF-16LE script."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def command_line(tail_bytes: int) -> tuple[str, list[str]]:
    """The executable and arguments the exporter runs in a WinRS cmd shell."""
    return EXECUTABLE, [*FIXED_ARGUMENTS, encode_command(build_script(tail_bytes))]


_TEMPLATE_RE = re.compile(
    "^" + re.escape(SCRIPT_TEMPLATE).replace(re.escape(TAIL_PLACEHOLDER), r"(\d{1,10})") + "$"
)


def match_script(executable: str, arguments: list[str]) -> int | None:
    """The tail size when ``executable arguments`` is exactly the exporter's command, else None.

    Used by the simulator, which runs nothing else.
    """
    if executable.lower() != EXECUTABLE or len(arguments) != len(FIXED_ARGUMENTS) + 1:
        return None
    if tuple(arguments[:-1]) != FIXED_ARGUMENTS:
        return None
    try:
        script = base64.b64decode(arguments[-1], validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        return None
    match = _TEMPLATE_RE.match(script)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# Output


@dataclass(frozen=True)
class OnBoxFile:
    name: str
    size: int


@dataclass(frozen=True)
class OnBoxData:
    registry_version: str | None
    uninstall_version: str | None
    ls_path: str
    ls_exists: bool
    log_size: int | None  # None: no uploader log file
    log_tail: bytes
    files: tuple[OnBoxFile, ...]

    @property
    def log_truncated(self) -> bool:
        return self.log_size is not None and self.log_size > len(self.log_tail)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"on-box script output: {what} is not Base64") from None


def _text(value: str, what: str) -> str | None:
    if value == "-":
        return None
    try:
        return _b64(value, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"on-box script output: {what} is not UTF-8") from None


def _int(value: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise ParseError(f"on-box script output: {what} {excerpt(value)} is not a size")
    return int(value)


def parse_output(stdout: bytes, tail_bytes: int) -> OnBoxData:
    """Parse the script's stdout strictly: every record known, the header first, ``end`` last."""
    try:
        text = stdout.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("on-box script output is not ASCII") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != HEADER:
        first = excerpt(lines[0]) if lines else "nothing"
        raise ParseError(f"on-box script output does not start with its header (got {first})")
    if lines[-1] != "end":
        raise ParseError("on-box script output is incomplete (no end record)")
    values: dict[str, list[str]] = {}
    files: list[OnBoxFile] = []
    for line in lines[1:-1]:
        key, _, rest = line.partition(" ")
        parts = rest.split(" ") if rest else []
        if key == "file":
            if len(parts) != 2:
                raise ParseError("on-box script output: malformed file record")
            name = _text(parts[0], "file name")
            if name is None:
                raise ParseError("on-box script output: file record without a name")
            files.append(OnBoxFile(name, _int(parts[1], "file size")))
        elif key in ("registry_version", "uninstall_version", "ls", "log"):
            if key in values:
                raise ParseError(f"on-box script output: record {key} appears twice")
            values[key] = parts
        else:
            raise ParseError(f"on-box script output: unknown record {excerpt(key)}")
    for key in ("registry_version", "uninstall_version", "ls", "log"):
        if key not in values:
            raise ParseError(f"on-box script output: record {key} is missing")
    if len(files) > MAX_FILES:
        raise ParseError("on-box script output: too many file records")

    def single(key: str) -> str:
        if len(values[key]) != 1:
            raise ParseError(f"on-box script output: malformed {key} record")
        return values[key][0]

    ls = values["ls"]
    if len(ls) != 2 or ls[1] not in ("0", "1"):
        raise ParseError("on-box script output: malformed ls record")
    log = values["log"]
    if log == ["-"]:
        log_size, tail = None, b""
    elif len(log) in (1, 2):
        log_size = _int(log[0], "log size")
        tail = _b64(log[1], "log tail") if len(log) == 2 else b""
        if len(tail) > tail_bytes or len(tail) > log_size:
            raise ParseError(f"on-box script output: log tail of {len(tail)} bytes is too long")
    else:
        raise ParseError("on-box script output: malformed log record")
    return OnBoxData(
        registry_version=_text(single("registry_version"), "registry version"),
        uninstall_version=_text(single("uninstall_version"), "uninstall version"),
        ls_path=_text(ls[0], "LS path") or "",
        ls_exists=ls[1] == "1",
        log_size=log_size,
        log_tail=tail,
        files=tuple(files),
    )


_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)


def stderr_summary(stderr: bytes, limit: int = 160) -> str:
    """The first line of what the command wrote to stderr (PowerShell CLIXML unpacked)."""
    text = stderr.decode("utf-8", errors="replace")
    if text.startswith("#< CLIXML"):
        parts = _CLIXML_ERROR.findall(text)
        text = "".join(parts).replace("_x000D_", "").replace("_x000A_", "\n")
    for line in text.splitlines():
        if line.strip():
            cleaned = "".join(ch if ch.isprintable() else "?" for ch in line.strip())
            return shorten(cleaned, limit)
    return "no error text"
