"""``citrix-license-exporter demo``: the exporter watching a fleet of SIMULATED License Servers.

Everything runs in this process on 127.0.0.1. No real Citrix License Server is contacted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .cli import run_server
from .simulator.fleet import Fleet
from .simulator.scenario import bundled_scenarios, load_folder

BANNER = """\
==============================================================================
 DEMO MODE: {count} SIMULATED Citrix License Servers on 127.0.0.1.
 None of this is a real Citrix server; see docs/simulator.md.
==============================================================================
"""


def run_demo(args: argparse.Namespace) -> int:
    scenarios = load_folder(Path(args.scenarios)) if args.scenarios else bundled_scenarios()
    with (
        tempfile.TemporaryDirectory(prefix="citrix-license-demo-") as tmp,
        Fleet(scenarios) as fleet,
    ):
        config_path = fleet.write_exporter_config(Path(args.config_out or Path(tmp, "demo.yml")))
        args.config_file = str(config_path)

        def announce(base: str) -> None:
            print(BANNER.format(count=len(fleet.servers)), file=sys.stderr)
            print(f"Exporter:        {base}/", file=sys.stderr)
            print(f"Own metrics:     {base}/metrics", file=sys.stderr)
            for server in fleet.servers:
                print(
                    f"SIMULATED {server.name:<28} {base}/probe?target={server.name}",
                    file=sys.stderr,
                )
            print(f"Config:          {config_path}", file=sys.stderr)
            print("Stop with Ctrl-C.", file=sys.stderr, flush=True)

        return run_server(args, demo=True, announce=announce)
