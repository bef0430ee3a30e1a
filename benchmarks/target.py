"""The cheap target of ``make bench``: benchmarks/target.c (one epoll loop in C) serves the
network ports of every simulated target itself and is the latency delay line in front of the
simulated WinRM servers, in place of the Python simulator's port threads and
benchmarks/latency_proxy.py. Both of those together used about as much CPU per round as the
exporter on the same 2 cores (docs/performance.md), which hid the exporter's cost.

Building needs a C compiler and OpenSSL's headers (``make bench-deps``: gcc, libssl-dev);
without them ``benchmarks.run`` falls back to the Python proxy and says so in the table.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from citrix_license_exporter.simulator.network import make_self_signed

SOURCE = Path(__file__).with_name("target.c")
#: As the benchmark's network scenario (write_scenarios: certificate_days_left).
CERTIFICATE_DAYS = 300


def build(workdir: Path) -> tuple[Path | None, str]:
    """Compile the target into ``workdir``: (the binary, "") or (None, why not)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (apt-get install gcc libssl-dev)"
    binary = workdir / "target"
    result = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(SOURCE), "-lssl", "-lcrypto"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    if result.returncode != 0:
        return None, f"{compiler} failed (libssl-dev missing?): {result.stderr.strip()[-300:]}"
    return binary, ""


def certificate(workdir: Path) -> tuple[Path, Path]:
    cert, key = make_self_signed("bench-target", CERTIFICATE_DAYS, ip_addresses=("127.0.0.1",))
    cert_path, key_path = workdir / "target-cert.pem", workdir / "target-key.pem"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return cert_path, key_path


def spec(config: dict[str, Any], limit: int) -> tuple[str, list[tuple[dict[str, Any], str]]]:
    """The target's listener lines for the first ``limit`` targets, and what each line
    replaces: (the target's ``ports`` dict, a port name) or (the target, "winrm_url")."""
    lines: list[str] = []
    slots: list[tuple[dict[str, Any], str]] = []
    for target in (config.get("targets") or [])[:limit]:
        for name in (target.get("ports") or {}):
            # Web Services for Licensing is the TLS port (docs/collectors.md, network).
            lines.append("tls" if name == "web_services" else "tcp")
            slots.append((target["ports"], name))
        url = target.get("winrm_url")
        if url:
            lines.append(f"fwd {urlsplit(url).port or 5985}")
            slots.append((target, "winrm_url"))
    return "".join(f"{line}\n" for line in lines), slots


def retarget(config: dict[str, Any], limit: int, slots: list[tuple[dict[str, Any], str]],
             ports: list[int]) -> dict[str, Any]:
    """``config`` with every port and winrm_url of the first ``limit`` targets replaced by the
    target's listener (modified in place: ``slots`` point into it)."""
    if len(ports) != len(slots):
        raise RuntimeError(f"target gave {len(ports)} ports for {len(slots)} listeners")
    for (holder, name), port in zip(slots, ports, strict=True):
        if name == "winrm_url":
            parts = urlsplit(holder[name])
            holder[name] = urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path,
                                       parts.query, parts.fragment))
        else:
            holder[name] = port
    return {**config, "targets": (config.get("targets") or [])[:limit]}


def ready_ports(line: str) -> list[int]:
    """The ports from the target's ``ready listeners=N ports=P1,P2`` line."""
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return [int(p) for p in fields.get("ports", "").split(",") if p]
