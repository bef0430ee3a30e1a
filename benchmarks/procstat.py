"""What a process costs, from /proc, and what machine the numbers come from."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (all its threads, live and ended), from
    /proc/<pid>/stat fields 14 and 15 (clock ticks, usually 10 ms)."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the largest resident set the process has had."""
    return _status_kib(pid, "VmHWM") * 1024


def threads(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    match = re.search(r"^Threads:\s+(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    ram_gib: float
    kernel: str
    python: str

    def describe(self) -> str:
        return (
            f"{self.cpus} CPUs ({self.cpu_model}), {self.ram_gib:.1f} GiB RAM, "
            f"Linux {self.kernel}, Python {self.python}"
        )


def machine() -> Machine:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            model = match.group(1).strip()
    meminfo = Path("/proc/meminfo").read_text(encoding="ascii")
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    ram = int(match.group(1)) / 1024 / 1024 if match else 0.0
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=model,
        ram_gib=ram,
        kernel=platform.release(),
        python=platform.python_version(),
    )
