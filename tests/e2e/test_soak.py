"""A shortened soak (scripts/soak.py): 400 probes against a mixed healthy and faulty SIMULATED
fleet. Memory, file descriptors and threads of the exporter process must not grow after the
warm-up; every probe must be answered 200 and the log must hold no traceback of the exporter's
own. The full run (thousands of probes) and its figures are in docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
#: Libraries whose own log lines are not the exporter's (see test_no_third_party_tracebacks).
THIRD_PARTY = re.compile(r"\blogger=(pypsrp|spnego|urllib3|requests|httpx|httpcore)\b")


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_script"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
def test_short_soak_stays_flat() -> None:
    soak = load_soak()
    result = soak.soak(probes=400, concurrency=8, warmup=150, scrape_timeout=1.5,
                       sample_every=50)
    print(result.summary())  # shown with -s, and in the report on failure
    assert result.alive
    assert result.statuses == {"200": 400}
    # Each kind of target answered as it should: healthy ones up, broken ones visible.
    down = {key.split()[0] for key in result.up if key.endswith("up=0")}
    assert {"bad-refuse", "bad-hang", "bad-winrm-password", "bad-winrm-xml"} <= down, result.up
    assert not {"ok-net", "ok-net-2", "ok-controller", "ok-cloud"} & down, result.up
    baseline, settled = result.baseline, result.settled
    assert settled.fds <= baseline.fds + 2, (baseline, settled)
    assert settled.threads <= baseline.threads + 2, (baseline, settled)
    # After warm-up, 250 more probes: the heap may settle into its arenas but must not grow
    # with the number of probes (a leak of one answer per probe would be tens of MB).
    assert result.rss_growth_kib < 24 * 1024, result.summary()
    own_errors = [line for line in result.error_lines if not THIRD_PARTY.search(line)]
    assert not own_errors, own_errors[:3]
