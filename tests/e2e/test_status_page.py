"""The fleet status page at ``/``, rendered by a real headless Chromium (Debian's ``chromium``)
over the demo fleet: the overdue, down and failing-telemetry servers in the order of urgency
and in the state the probes found, a screenshot kept under the test's temporary folder (a CI
artifact), and a page that needs no JavaScript, loads nothing from elsewhere and shows no
secret.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from citrix_license_exporter.simulator.scenario import bundled_scenarios
from citrix_license_exporter.simulator.winrm import PASSWORD

from ..conftest import require_tool
from ..support.chromium import chromium, screenshot, table_rows
from ..support.exporter import ExporterProcess
from ..support.exposition import value

#: Left unprobed, so the page shows a target never probed.
UNPROBED = "net-healthy"


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[ExporterProcess, dict[str, str]]]:
    """``citrix-license-exporter demo``, every target but one probed once; their answers."""
    with ExporterProcess("demo") as exporter:
        answers = {}
        for scenario in bundled_scenarios():
            if scenario.name != UNPROBED:
                response = exporter.get("/probe", params={"target": scenario.name})
                assert response.status_code == 200
                answers[scenario.name] = response.text
        yield exporter, answers


def expected_state(text: str, now: float) -> str:
    """The row state the page must show, from the target's own /probe answer."""
    deadline = value(text, "citrix_license_server_update_deadline_timestamp_seconds")
    if deadline is not None and deadline <= now:
        return "overdue"
    if value(text, "citrix_license_up") == 0:
        return "down"
    if deadline is not None and deadline - now <= 30 * 86400:
        return "deadline-soon"
    if value(text, "citrix_license_telemetry_last_attempt_success") == 0:
        return "telemetry-failing"
    return "other"


def test_status_page_in_chromium(demo: tuple[ExporterProcess, dict[str, str]],
                                 tmp_path: Path) -> None:
    exporter, answers = demo
    binary = require_tool("chromium")
    url = exporter.url + "/"
    now = time.time()
    dom = chromium(binary, url, "--dump-dom")
    rows = table_rows(dom, "targets")
    order = [attrs["data-target"] for attrs, _ in rows]
    states = {attrs["data-target"]: attrs["data-state"] for attrs, _ in rows}
    assert sorted(order) == sorted([*answers, UNPROBED])

    expected = {name: expected_state(text, now) for name, text in answers.items()}
    for name, state in expected.items():
        if state != "other":
            assert states[name] == state, (name, states[name], state)
        else:
            assert states[name] not in ("overdue", "down", "telemetry-failing"), name
    assert states[UNPROBED] == "never-probed"
    # The demo fleet has each kind of trouble the ordering is about.
    assert {"overdue", "down", "telemetry-failing"} <= set(expected.values())

    # Urgency: overdue (soonest deadline first), down, the rest by deadline, then failing
    # telemetry, never probed last.
    def deadline(name: str) -> float:
        found = value(answers[name], "citrix_license_server_update_deadline_timestamp_seconds")
        return found if found is not None else float("inf")

    overdue = [n for n in order if states[n] == "overdue"]
    down = [n for n in order if states[n] == "down"]
    assert order[: len(overdue)] == overdue
    assert overdue == sorted(overdue, key=deadline)
    assert order[len(overdue): len(overdue) + len(down)] == down
    rest = order[len(overdue) + len(down): -1]
    assert [deadline(n) for n in rest] == sorted(deadline(n) for n in rest)
    undated = [n for n in rest if deadline(n) == float("inf")]
    failing = [n for n in undated if states[n] == "telemetry-failing"]
    assert undated[: len(failing)] == failing
    assert order[-1] == UNPROBED

    # What a row says: the reason with its kind when down, versions, links.
    cells = {attrs["data-target"]: cells for attrs, cells in rows}
    unreachable = " ".join(cells["net-unreachable"])
    assert "refused probe: no licensing port reachable" in unreachable
    overdue_row = " ".join(cells[overdue[0]])
    assert re.search(r"\d+ days overdue", overdue_row) and "build" in overdue_row
    assert "never probed" in " ".join(cells[UNPROBED])
    assert 'href="probe?target=net-unreachable&amp;debug=true"' in dom

    # The exporter's own state, the recent probes and the demo banner.
    assert "DEMO:" in dom and "SIMULATED" in dom
    assert "Release catalog" in dom and "last load successful" in dom
    recent = table_rows(dom, "recent")
    assert len(recent) == len(answers)
    assert any("failure" in c and "refused" in " ".join(c) for _, c in recent)

    # No JavaScript, nothing from elsewhere, refreshes itself, no secret.
    page = exporter.get("/").text
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', page)
    assert PASSWORD not in page and PASSWORD not in dom

    shot = screenshot(binary, url, tmp_path / "status-page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000


def test_recent_probe_log_links(demo: tuple[ExporterProcess, dict[str, str]]) -> None:
    exporter, _ = demo
    page = exporter.get("/").text
    ids = re.findall(r'href="logs\?id=(\d+)"', page)
    assert ids
    log = exporter.get(f"/logs?id={ids[0]}")
    assert log.status_code == 200
    assert log.headers["Content-Type"].startswith("text/plain")
    assert "Logs for the probe" in log.text and "Metrics that would have been returned" in log.text
    assert exporter.get("/logs?id=999999").status_code == 404
    assert exporter.get("/logs?id=abc").status_code == 404
