"""The WinRM client stack (pypsrp, requests, urllib3, pyspnego, the Kerberos bindings: ~16 MB of
RSS) is imported by the first WinRM collection, not by loading a configuration
(collectors/winrm.py's module doc; docs/performance.md "What RSS holds").

The exporter runs as a process, the way users run it, under a small wrapper that calls the
CLI's ``main`` and, on request, writes the names in ``sys.modules`` to a file. Two observables:
those names, and the shared objects in /proc/<pid>/maps (gssapi's and krb5's C extensions,
which pyspnego loads). Both are checked after a network probe answered, then again after a
WinRM probe in the same process, which shows that they do see the stack when it is loaded.
httpx, imported by the first HTTP client (transport.py), is checked the same way."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import parse_scenario

from ..support.exporter import ExporterProcess
from ..support.exposition import samples, value

#: Run with ``python -c WRAPPER REQUEST ANSWER <exporter flags>``: when REQUEST appears, the
#: sorted module names go to ANSWER (written whole, then renamed).
WRAPPER = r"""
import os, sys, threading, time
request, answer = sys.argv[1], sys.argv[2]

def answer_requests():
    while True:
        if os.path.exists(request):
            os.unlink(request)
            names = sorted(sys.modules.copy())
            with open(answer + ".tmp", "w", encoding="utf-8") as out:
                out.write("\n".join(names))
            os.replace(answer + ".tmp", answer)
        time.sleep(0.02)

threading.Thread(target=answer_requests, daemon=True).start()
from citrix_license_exporter.cli import main
sys.exit(main(sys.argv[3:]))
"""

#: Top-level packages of the WinRM client stack, none of which a network probe needs.
STACK = ("pypsrp", "requests", "urllib3", "spnego", "gssapi", "krb5")
#: Shared objects of the stack (pyspnego loads gssapi's and krb5's extensions on import).
SHARED_OBJECT = re.compile(r"/site-packages/(gssapi|krb5)/[^\s]*\.so\b")

WINRM_SERVER = {
    "name": "ls-winrm",
    "winrm": {
        "version": "11.17.2.0 build 56200",
        "pools": [{"pld": "XDT_PLT_UD", "count": 100, "in_use": 7, "sa_days": 200}],
        "licenses": [{"serial": "SIM-1", "pld": "XDT_PLT_UD", "expires_days": 45}],
        "uploads": {"days": 30, "failing_days": 0},
    },
}


class Inspected(ExporterProcess):
    """The exporter under WRAPPER: ``modules()`` are the names imported so far."""

    def __init__(self, folder: Path, config: Path) -> None:
        self.request, self.answer = folder / "modules.request", folder / "modules.txt"
        super().__init__(f"--config.file={config}",
                         launcher=("-c", WRAPPER, str(self.request), str(self.answer)))

    def modules(self, timeout: float = 10.0) -> set[str]:
        self.answer.unlink(missing_ok=True)
        self.request.touch()
        end = time.monotonic() + timeout
        while not self.answer.exists():
            assert time.monotonic() < end, "the wrapper did not answer:\n" + self.log()
            time.sleep(0.02)
        return set(self.answer.read_text(encoding="utf-8").split("\n"))

    def stack_loaded(self) -> tuple[list[str], list[str]]:
        """The stack's packages in sys.modules, and its shared objects in the process' maps."""
        names = self.modules()
        packages = sorted(p for p in STACK if p in names or any(
            n.startswith(p + ".") for n in names))
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text(encoding="utf-8")
        return packages, sorted(set(SHARED_OBJECT.findall(maps)))


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    scenarios = [parse_scenario({"name": "ls-network"}, "test:ls-network"),
                 parse_scenario(WINRM_SERVER, "test:ls-winrm")]
    with Fleet(scenarios) as running:
        yield running


def write_config(fleet: Fleet, folder: Path, *, winrm: bool) -> Path:
    config = fleet.exporter_config(folder, timeout="5s")
    if not winrm:
        config["targets"] = [t for t in config["targets"] if t["name"] == "ls-network"]
        config["modules"] = {name: m for name, m in config["modules"].items()
                             if "winrm" not in m}
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_a_network_only_exporter_never_imports_the_winrm_client(fleet: Fleet) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(fleet, folder, winrm=False)
        assert "winrm" not in config.read_text(encoding="utf-8")
        with Inspected(folder, config) as exporter:
            response = exporter.get("/probe?target=ls-network")
            assert response.status_code == 200
            assert value(response.text, "citrix_license_up") == 1
            names = exporter.modules()
            # The collector unit is loaded (the registry lists it), its client is not.
            assert "citrix_license_exporter.collectors.winrm" in names
            assert "citrix_license_exporter.collectors.winrm_client" not in names
            assert exporter.stack_loaded() == ([], [])
            # Nor httpx: no controller, cloud or catalog URL source (transport.py's module doc).
            assert not {"httpx", "httpcore"} & names


def test_the_first_winrm_collection_imports_it_and_works(fleet: Fleet) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(fleet, folder, winrm=True)
        with Inspected(folder, config) as exporter:
            # A configuration with a WinRM module loads without the stack, too.
            network = exporter.get("/probe?target=ls-network")
            assert value(network.text, "citrix_license_up") == 1
            assert exporter.stack_loaded() == ([], [])

            text = exporter.get("/probe?target=ls-winrm").text
            assert value(text, "citrix_license_up") == 1
            assert value(text, "citrix_license_collector_success", collector="winrm") == 1
            assert [v for n, _, v in samples(text) if n == "citrix_license_in_use"] == [7]
            packages, shared = exporter.stack_loaded()
            assert {"pypsrp", "requests", "urllib3", "spnego"} <= set(packages)
            assert shared  # gssapi's or krb5's extension modules, mapped by pyspnego

