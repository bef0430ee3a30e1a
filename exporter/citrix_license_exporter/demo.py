"""``citrix-license-exporter demo``: the exporter watching a fleet of SIMULATED License Servers.

Everything runs in this process on 127.0.0.1. No real Citrix License Server is contacted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

from .cli import run_server
from .simulator.feed import SimulatedFeed
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
        SimulatedFeed() as feed,
    ):
        config_path = write_config(fleet, feed, Path(args.config_out or Path(tmp, "demo.yml")))
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
            print(f"SIMULATED Citrix feed {feed.url} (catalog source)", file=sys.stderr)
            print(f"Config:          {config_path}", file=sys.stderr)
            print("Stop with Ctrl-C.", file=sys.stderr, flush=True)

        return run_server(args, demo=True, announce=announce)


def write_config(fleet: Fleet, feed: SimulatedFeed, path: Path) -> Path:
    """The fleet's exporter configuration, following the simulated Citrix feed as its catalog
    source (refreshed every minute, so the catalog refresh metrics and alerts are live)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = fleet.exporter_config(path.parent)
    config["catalog"] = feed.catalog_source(path.parent)
    path.write_text(
        "# Generated for SIMULATED License Servers and a SIMULATED Citrix feed on 127.0.0.1.\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return path
