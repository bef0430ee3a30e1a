"""The README's first command: `citrix-license-exporter demo`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from citrix_license_exporter.simulator.scenario import bundled_scenarios


def test_demo_serves_simulated_fleet_and_stops_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "citrix_license_exporter.cli", "demo",
         "--web.listen-address=127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        base = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
            match = re.match(r"Exporter:\s+(\S+)/", line)
            if match:
                base = match.group(1)
        output = "".join(lines)
        assert base is not None, output
        assert "SIMULATED" in output
        names = [s.name for s in bundled_scenarios()]
        for name in names:
            assert f"/probe?target={name}" in output
        assert "DEMO" in httpx.get(base + "/", timeout=10).text
        healthy = next(n for n in names if n == "net-healthy")
        text = httpx.get(f"{base}/probe?target={healthy}", timeout=30).text
        assert "citrix_license_up 1.0" in text
        # The demo follows a SIMULATED Citrix feed (issue 14 item 7): the catalog refresh
        # metrics are live, and the feed's License Server item is in the effective catalog.
        feed = re.search(r"SIMULATED Citrix feed (https://\S+)", output)
        assert feed is not None, output
        own = ""
        until = time.monotonic() + 30
        while time.monotonic() < until:
            own = httpx.get(f"{base}/metrics", timeout=10).text
            if "citrix_license_release_catalog_last_refresh_success" in own:
                break
            time.sleep(0.2)
        assert "citrix_license_release_catalog_last_refresh_success 1.0" in own
        assert f'citrix_license_release_catalog_releases{{source="{feed.group(1)}"}} 1.0' in own
        assert "citrix_license_release_catalog_last_refresh_timestamp_seconds" in own
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
