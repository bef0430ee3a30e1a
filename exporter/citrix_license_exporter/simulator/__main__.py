"""``python -m citrix_license_exporter.simulator``: a fleet of SIMULATED License Servers in a
process of its own, and the exporter configuration that watches it.

    python -m citrix_license_exporter.simulator --config.out /tmp/fleet/exporter.yml
    python -m citrix_license_exporter.simulator --scenarios DIR --replicate 100 \\
        --config.out /tmp/fleet/exporter.yml --timeout 10s

Scenarios come from a folder of scenario files (default: the bundled demo fleet);
``--replicate N`` starts N copies of each (named ``<name>-0001`` ...), which is how the
benchmarks (benchmarks/run.py) generate fleets of hundreds of servers. Once every server
listens, the configuration is written and one line ``ready servers=N config=PATH`` is printed
on stdout; the fleet then runs until SIGTERM, SIGINT or the end of stdin (with ``--stdin``).

Running the fleet apart from the exporter keeps the simulators' CPU out of the exporter's
process when measuring it. Everything listens on 127.0.0.1; nothing here is a real Citrix
server.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from .fleet import Fleet
from .scenario import Scenario, bundled_scenarios, load_folder


def replicate(scenarios: Sequence[Scenario], copies: int) -> list[Scenario]:
    """``copies`` copies of each scenario, named ``<name>-0001`` ... (1: the scenarios as is)."""
    if copies <= 1:
        return list(scenarios)
    return [
        dataclasses.replace(
            scenario,
            name=f"{scenario.name}-{index:04d}",
            network=dataclasses.replace(scenario.network, ports=dict(scenario.network.ports)),
        )
        for scenario in scenarios
        for index in range(1, copies + 1)
    ]


def raise_open_files_limit() -> int:
    """Every simulated server holds several listening sockets: lift the soft limit to the
    hard one. Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def close_in_parallel(fleet: Fleet) -> None:
    """Each WinRM simulator takes up to its poll interval to stop: close them side by side."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda server: server.close(), fleet.servers))
    fleet.servers.clear()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m citrix_license_exporter.simulator",
        description="Run a fleet of SIMULATED Citrix License Servers on 127.0.0.1.",
    )
    parser.add_argument("--scenarios", default=None,
                        help="folder of scenario files (default: the bundled demo fleet)")
    parser.add_argument("--replicate", type=int, default=1, metavar="N",
                        help="start N copies of every scenario (default 1)")
    parser.add_argument("--config.out", dest="config_out", required=True,
                        help="write the exporter configuration (and its secret files) here")
    parser.add_argument("--timeout", default="5s",
                        help="the modules' timeout in the written configuration (default 5s)")
    parser.add_argument("--stdin", action="store_true",
                        help="also stop when stdin is closed (for a parent process)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scenarios = load_folder(Path(args.scenarios)) if args.scenarios else bundled_scenarios()
    if not scenarios:
        print(f"no scenario files in {args.scenarios}", file=sys.stderr)
        return 1
    scenarios = replicate(scenarios, args.replicate)
    limit = raise_open_files_limit()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    with Fleet(scenarios) as fleet:
        config = fleet.write_exporter_config(Path(args.config_out), timeout=args.timeout)
        print(
            f"SIMULATED fleet: {len(fleet.servers)} servers on 127.0.0.1 started in "
            f"{time.monotonic() - started:.1f} s (open files limit {limit})",
            file=sys.stderr,
        )
        print(f"ready servers={len(fleet.servers)} config={config}", flush=True)
        if args.stdin:
            def watch_stdin() -> None:
                sys.stdin.read()
                stop.set()

            threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
        stop.wait()
        close_in_parallel(fleet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
