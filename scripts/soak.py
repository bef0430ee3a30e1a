#!/usr/bin/env python3
"""Soak the exporter: thousands of probes against a mixed healthy and faulty SIMULATED fleet,
measuring the exporter process' memory (VmRSS), open file descriptors and threads from /proc.

    python scripts/soak.py                       # the full soak (5000 probes), figures printed
    python scripts/soak.py --probes 400 --json out.json

Everything runs on 127.0.0.1: the simulators in this process, the exporter as a separate process
started the way users start it. Collector caches are shortened (WinRM not cached at all), so
every probe really talks to its simulated server. The figures of docs/reliability.md come from
this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import Scenario, parse_scenario

POOL = {"pld": "XDT_PLT_UD", "count": 100, "in_use": 40, "overdraft": 10,
        "license_type": "Retail", "sa_days": 200}
DOWN = dict.fromkeys(("license_manager", "vendor_daemon", "web_services"), "refuse")
HANG = dict.fromkeys(("license_manager", "vendor_daemon", "web_services"), "hang")
LISTENING = re.compile(r"msg=listening address=(\S+)")
UP = re.compile(r"^citrix_license_up 1(\.0)?$", re.M)


def fleet_scenarios() -> list[Scenario]:
    """Six healthy and six faulty License Servers (network, WinRM, controller, cloud)."""
    raw: list[dict[str, Any]] = [
        {"name": "ok-net"},
        {"name": "ok-winrm", "winrm": {"pools": [POOL], "uploads": {"days": 5}}},
        {"name": "ok-winrm-2", "winrm": {"pools": [POOL, POOL], "uploads": {"days": 30}}},
        {"name": "ok-controller", "controller": {}},
        {"name": "ok-cloud", "cloud": {}},
        {"name": "ok-net-2", "network": {"certificate_days_left": 20}},
        {"name": "bad-refuse", "network": {"ports": DOWN}},
        {"name": "bad-hang", "network": {"ports": HANG}},
        {"name": "bad-winrm-password", "winrm": {"fault": "wrong_password"}},
        {"name": "bad-winrm-xml", "winrm": {"fault": "garbage_xml"}},
        {"name": "bad-controller", "controller": {"fault": "error"}},
        {"name": "bad-cloud", "cloud": {"fault": "malformed", "customer_id": "soak-bad"}},
    ]
    return [parse_scenario(item, f"soak:{item['name']}") for item in raw]


def exporter_config(fleet: Fleet, folder: Path) -> Path:
    config = fleet.exporter_config(folder, timeout="5s")
    for module in config["modules"].values():
        if "winrm" in module:
            module["winrm"]["cache_interval"] = "0s"  # every probe reads WinRM
        for section in ("controller", "cloud"):
            if section in module:
                module[section]["cache_interval"] = "1s"
    path = folder / "exporter.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The exporter process and what /proc says about it


@dataclass
class Sample:
    probes: int
    seconds: float
    rss_kib: int
    fds: int
    threads: int


def proc_figures(pid: int) -> tuple[int, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


class Exporter:
    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.levels: Counter[str] = Counter()
        self._ready = threading.Event()
        self.url = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citrix_license_exporter.cli", f"--config.file={config}",
             "--web.listen-address=127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30) or not self.url:
            self.stop()
            raise RuntimeError("the exporter did not start:\n" + "\n".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            if len(self.lines) < 20_000:
                self.lines.append(line)
            level = re.search(r"\blevel=(\w+)", line)
            self.levels[level.group(1) if level else "other"] += 1
            if match := LISTENING.search(line):
                self.url = f"http://{match.group(1)}"
                self._ready.set()
        self._ready.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def running(env: dict[str, str] | None = None) -> Iterator[tuple[Fleet, Exporter]]:
    with tempfile.TemporaryDirectory(prefix="cle-soak-") as tmp, Fleet(fleet_scenarios()) as fleet:
        exporter = Exporter(exporter_config(fleet, Path(tmp)), env)
        try:
            yield fleet, exporter
        finally:
            exporter.stop()


# ---------------------------------------------------------------------------------------------
# The soak


@dataclass
class Result:
    probes: int
    concurrency: int
    seconds: float
    statuses: dict[str, int]
    up: dict[str, int]
    samples: list[Sample] = field(default_factory=list)
    baseline: Sample | None = None
    peak_rss_kib: int = 0
    settled: Sample | None = None
    log_levels: dict[str, int] = field(default_factory=dict)
    tracebacks: int = 0
    #: The first log lines at level error (or with a traceback), for the report.
    error_lines: list[str] = field(default_factory=list)
    alive: bool = True
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def rss_growth_kib(self) -> int:
        assert self.baseline is not None
        assert self.settled is not None
        return self.settled.rss_kib - self.baseline.rss_kib

    def summary(self) -> str:
        assert self.baseline is not None
        assert self.settled is not None
        rate = self.probes / self.seconds if self.seconds else 0.0
        b, s = self.baseline, self.settled
        rss_mib = [x.rss_kib / 1024 for x in self.samples]
        return "\n".join([
            f"probes: {self.probes} in {self.seconds:.1f} s ({rate:.0f}/s), "
            f"concurrency {self.concurrency}",
            f"HTTP statuses: {dict(self.statuses)}",
            f"answers by target: {dict(self.up)}",
            f"after warm-up ({b.probes} probes): RSS {b.rss_kib / 1024:.1f} MiB, "
            f"{b.fds} fds, {b.threads} threads",
            f"at the end, settled:        RSS {s.rss_kib / 1024:.1f} MiB, "
            f"{s.fds} fds, {s.threads} threads",
            f"RSS growth after warm-up: {self.rss_growth_kib / 1024:+.1f} MiB "
            f"(peak {self.peak_rss_kib / 1024:.1f} MiB, median of samples "
            f"{statistics.median(rss_mib):.1f} MiB)",
            "RSS MiB by probes done: " + ", ".join(
                f"{x.probes}: {x.rss_kib / 1024:.0f}"
                for x in self.samples[:: max(1, len(self.samples) // 12)]
            ),
            f"log lines by level: {dict(self.log_levels)}; tracebacks: {self.tracebacks}; "
            f"exporter alive: {self.alive}",
        ])


def settle(pid: int, baseline: Sample, timeout: float = 20.0) -> tuple[int, int, int]:
    """Figures once the probe threads that outlive their scrape (hanging targets) have ended."""
    end = time.monotonic() + timeout
    figures = proc_figures(pid)
    while time.monotonic() < end:
        figures = proc_figures(pid)
        if figures[1] <= baseline.fds and figures[2] <= baseline.threads:
            break
        time.sleep(0.25)
    return figures


def soak(probes: int = 5000, concurrency: int = 8, warmup: int = 200,
         scrape_timeout: float = 2.0, sample_every: int = 100,
         env: dict[str, str] | None = None) -> Result:
    with running(env) as (fleet, exporter):
        pid = exporter.proc.pid
        targets = [s.name for s in fleet.servers]
        statuses: Counter[str] = Counter()
        up: Counter[str] = Counter()
        result = Result(probes, concurrency, 0.0, {}, {})
        lock = threading.Lock()
        done = 0
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(scrape_timeout)}
        started = time.monotonic()
        limits = httpx.Limits(max_connections=concurrency * 2)
        with httpx.Client(base_url=exporter.url, timeout=30, limits=limits) as client:

            def one(i: int) -> None:
                nonlocal done
                target = targets[i % len(targets)]
                response = client.get("/probe", params={"target": target}, headers=headers)
                is_up = UP.search(response.text) is not None
                with lock:
                    statuses[str(response.status_code)] += 1
                    up[f"{target} up={int(is_up)}"] += 1
                    done += 1
                    count = done
                if i % 50 == 0:  # the exporter's own pages too, as Prometheus scrapes them
                    client.get("/metrics")
                    client.get("/")
                if count % sample_every == 0:
                    rss, fds, threads = proc_figures(pid)
                    sample = Sample(count, time.monotonic() - started, rss, fds, threads)
                    with lock:
                        result.samples.append(sample)
                        result.peak_rss_kib = max(result.peak_rss_kib, rss)

            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(one, range(warmup)))
                time.sleep(scrape_timeout + 1)  # let the warm-up's hanging fetches end
                rss, fds, threads = proc_figures(pid)
                result.baseline = Sample(warmup, time.monotonic() - started, rss, fds, threads)
                list(pool.map(one, range(warmup, probes)))
            result.seconds = time.monotonic() - started
            rss, fds, threads = settle(pid, result.baseline)
            result.settled = Sample(probes, time.monotonic() - started, rss, fds, threads)
            healthy = client.get("/-/healthy").status_code == 200
            result.alive = exporter.proc.poll() is None and healthy
        result.statuses = dict(statuses)
        result.up = dict(sorted(up.items()))
        result.samples.sort(key=lambda s: s.probes)
        result.log_levels = dict(exporter.levels)
        result.tracebacks = sum("Traceback" in line for line in exporter.lines)
        result.error_lines = [line[:2000] for line in exporter.lines
                              if "level=error" in line or "Traceback" in line][:50]
        result.environment = {
            "python": platform.python_version(), "cpus": str(os.cpu_count()),
            "machine": platform.machine(), "kernel": platform.release(),
        }
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--scrape-timeout", type=float, default=2.0,
                        help="X-Prometheus-Scrape-Timeout-Seconds sent with every probe")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the exporter, e.g. MALLOC_ARENA_MAX=2")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    result = soak(args.probes, args.concurrency, args.warmup, args.scrape_timeout, env=env)
    print(result.summary())
    if args.json is not None:
        doc = asdict(result)
        doc["rss_growth_kib"] = result.rss_growth_kib
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    ok = (result.alive and result.tracebacks == 0 and set(result.statuses) == {"200"})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
