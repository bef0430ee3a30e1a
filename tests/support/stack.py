"""The whole monitoring stack on 127.0.0.1, for end-to-end tests:

    simulated fleet (in process) <- exporter (process) <- Prometheus (process, bundled rules)
        -> Alertmanager (process, examples/alertmanager.yml) -> webhook receiver (in process)

One stack serves the whole test session (Prometheus needs about 5.5 s before its first scraped
series shows, so starting it per test would dominate the run time). Test modules share it
through ``shared_stack()``; the first user starts it, the last one stops it, prints the run
time and asserts that no process it started is left.

What differs from production, and why:

- Clocks. Rule evaluation and the exporter's own scrape every second, the probes every two
  seconds, the cached collectors 5 seconds; Alertmanager's ``group_wait`` 0s, ``group_interval`` 1s.
  The bundled rules' ``for`` and ``keep_firing_for`` are divided by ``CLOCK_SCALE`` (5m
  becomes 5s, 30m 30s) in a copy of the rules: same expressions, same labels and annotations,
  same order in which the alerts of one server start and stop, shorter clocks. A ``for`` still
  spans more than two probes, so one late probe does not fire an alert, as in production.
  Windows inside expressions (``[1h]``) and thresholds are left alone.
- Receivers. Every receiver of examples/alertmanager.yml that sends somewhere is replaced, in a
  copy made by code, by a webhook to the test's receiver; receivers that send nowhere stay
  empty. Routes, matchers, grouping and inhibitions are the example's own. Time-based muting
  (``mute_time_intervals``/``active_time_intervals``) is dropped so the test does not depend
  on the hour it runs at.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.simulator.fleet import Fleet, SimulatedServer
from citrix_license_exporter.simulator.scenario import Scenario, parse_scenario

from .exporter import ExporterProcess
from .prometheus import (
    Alertmanager,
    Prometheus,
    WebhookReceiver,
    children_of,
    group_members,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "rules"
THRESHOLDS = RULES_DIR / "thresholds.yml"
ALERTMANAGER_EXAMPLE = ROOT / "examples" / "alertmanager.yml"

#: Production durations are divided by this in the test's copy of the rules (5m: 5s, 30m: 30s):
#: a `for` of 5m still spans more than two probes, so a probe late on a busy machine does not
#: page, as one late scrape does not in production.
CLOCK_SCALE = 60
#: Rule evaluation and the exporter's own scrape.
INTERVAL = "1s"
#: The probe job, every 2 s with a 2 s timeout (so a 1.5 s probe deadline): a 1 s timeout leaves
#: a probe 0.5 s, less than a WinRM refetch takes on a busy two-core machine (the scrape that
#: triggers a refetch waits for it), and late probes would make the short-clocked alerts flap.
PROBE_INTERVAL = "2s"
#: The cached collectors' interval in the test (WinRM in production: 15m, Citrix's limit).
CACHE_INTERVAL = "5s"

DEFAULT_JOBS = {"probe": "citrix-license", "exporter": "citrix-license-exporter"}


# ---------------------------------------------------------------------------------------------
# The simulated fleet of the end-to-end tests


def _scenario(name: str, description: str, **sections: Any) -> Scenario:
    return parse_scenario(
        {"name": name, "description": description, **sections}, f"tests/support/stack.py:{name}"
    )


ALL_REFUSE = {"license_manager": "refuse", "vendor_daemon": "refuse", "web_services": "refuse"}
NEWEST = "11.17.2.0 build 56200"  # the newest build of the bundled release catalog
#: A site-local policy rule of the test's exporter config: every server on build 56200 within
#: DUE_SOON_DAYS days. It gives the fleet a server inside the warning band of the update
#: deadline (the bundled catalog alone has none at every date the tests may run on).
LOCAL_MINIMUM_BUILD = 56200
DUE_SOON_DAYS = 20


def winrm(version: str = NEWEST, *, failing_days: int = 0, expires_days: float | None = None,
          auth: str = "basic", services: dict[str, str] | None = None) -> dict[str, Any]:
    """A WinRM section: low license usage, Subscription Advantage far away, daily uploads.
    Basic authentication over HTTP is the cheapest for the CPU; one server uses NTLM."""
    license_entry: dict[str, Any] = {"serial": "E2E-0001", "pld": "XDT_PLT_UD"}
    if expires_days is None:
        license_entry["expires"] = "permanent"
    else:
        license_entry["expires_days"] = expires_days
    return {
        "auth": auth,
        "scheme": "http",
        "version": version,
        "pools": [
            {"pld": "XDT_PLT_UD", "purchased": 200, "in_use": 120, "overdraft": 20, "sa_days": 300},
            {"pld": "MPS_ENT_CCU", "purchased": 50, "in_use": 10, "overdraft": 5, "sa_days": 300},
        ],
        "licenses": [license_entry],
        "uploads": {"days": 10, "failing_days": failing_days},
        "services": services or {},
    }


def e2e_scenarios() -> list[Scenario]:
    """Servers in different states. ``e2e-stop-me`` and ``e2e-upgrade-me`` are changed at run
    time by tests/e2e/test_alerting_e2e.py; the others keep their state for the whole session,
    so the dashboard's panels always have something to show whatever ran before."""
    return [
        _scenario("e2e-current", "Newest build, uploads succeed, nothing to report.",
                  winrm=winrm(auth="ntlm")),
        _scenario("e2e-due-soon", "Build 53100: inside the warning band of the update deadline "
                  "(the local minimum-build rule).", winrm=winrm("11.17.2.0 build 53100")),
        _scenario("e2e-overdue", "Build 46000, long past its update deadline.",
                  winrm=winrm("11.17.2.0 build 46000")),
        _scenario("e2e-telemetry-failing", "Newest build; the telemetry upload has failed for "
                  "the last 3 days.", winrm=winrm(failing_days=3)),
        _scenario("e2e-license-expiring", "Newest build; a license expires in 10 days.",
                  winrm=winrm(expires_days=10)),
        _scenario("e2e-services", "Newest build; Web Services for Licensing installed but "
                  "stopped, the Citrix Licensing Support Service (CtxLSPortSvc) not installed.",
                  winrm=winrm(services={"CitrixWebServicesforLicensing": "Stopped",
                                        "CtxLSPortSvc": "NotInstalled"})),
        _scenario("e2e-upgrade-me", "Build 52100 (overdue) with failing uploads; the test "
                  "upgrades it and lets an upload succeed.",
                  winrm=winrm("11.17.2.0 build 52100", failing_days=2)),
        _scenario("e2e-stop-me", "Newest build, certificate expiring in 20 days; the test stops "
                  "it.", network={"certificate_days_left": 20}, winrm=winrm()),
        _scenario("e2e-site-caching", "A Delivery Controller site in the supplemental grace "
                  "period that cannot reach this License Server (license caching mode).",
                  controller={"sites": [{"name": "Branch", "license_server_status": "Inaccessible",
                                         "grace_active": True, "grace_hours_left": 100}]}),
        _scenario("e2e-cert-critical", "Web Services certificate expires in 3 days.",
                  network={"certificate_days_left": 3}),
        _scenario("e2e-vendor-down", "The CITRIX vendor daemon refuses connections.",
                  network={"ports": {"vendor_daemon": "refuse"}}),
        _scenario("e2e-unreachable", "Every licensing port refuses connections.",
                  network={"ports": dict(ALL_REFUSE)}),
    ]


def e2e_policy(today: dt.date | None = None) -> dict[str, Any]:
    """The default minimum builds plus the local one (see LOCAL_MINIMUM_BUILD)."""
    today = today or dt.datetime.now(dt.UTC).date()
    return {
        "minimum_builds": [
            {"build": 40000, "deadline": "2023-03-31"},
            {"build": 51000, "deadline": "2026-04-15"},
            {"name": f"local_minimum_build_{LOCAL_MINIMUM_BUILD}", "build": LOCAL_MINIMUM_BUILD,
             "deadline": (today + dt.timedelta(days=DUE_SOON_DAYS)).isoformat()},
        ]
    }


# ---------------------------------------------------------------------------------------------
# Changing simulated servers at run time


def stop_server(server: SimulatedServer) -> None:
    """Take a simulated License Server off the network: every port refuses, WinRM is gone."""
    for port_name in server.network.listeners:
        server.network.set_fault(port_name, "refuse")
    for interface in server.interfaces:
        interface.close()


def change_winrm(server: SimulatedServer, **changes: Any) -> None:
    """Change what a simulated server's WinRM endpoint answers from now on, e.g.
    ``version="11.17.2.0 build 56200"`` or ``failing_days=0`` (WinRMScenario fields).

    The WinRM simulator has no public mutation API yet; this swaps the scenario and the derived
    state it reads on every request (plain attribute reads, so the swap is atomic for it)."""
    from citrix_license_exporter.simulator.winrm import ServerState, SimulatedWinRM

    interface = server.interface(SimulatedWinRM)
    simulator = interface.simulator
    scenario = dataclasses.replace(simulator.scenario, **changes)
    state = ServerState(scenario, time.time())
    simulator.scenario, simulator.state = scenario, state
    interface.section = scenario


# ---------------------------------------------------------------------------------------------
# Configuration of Prometheus and Alertmanager


DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    text = str(text).strip()
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


def scaled(duration: str, scale: float = CLOCK_SCALE) -> str:
    """``duration`` divided by ``scale``, rounded up to whole seconds (0 stays 0)."""
    seconds = parse_duration(duration)
    return f"{math.ceil(seconds / scale)}s" if seconds > 0 else "0s"


def bundled_rule_files(folder: Path = RULES_DIR) -> list[Path]:
    """The Prometheus rule files in rules/ (YAML documents with top-level ``groups``)."""
    files = []
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "groups" in data:
            files.append(path)
    return files


def fast_rules(data: dict[str, Any], scale: float = CLOCK_SCALE) -> dict[str, Any]:
    """A copy of a rule file with every ``for``/``keep_firing_for`` divided by ``scale`` and
    every group ``interval`` dropped (the global 1s applies). Nothing else changes."""
    out = copy.deepcopy(data)
    for group in out.get("groups", []):
        group.pop("interval", None)
        for rule in group.get("rules", []):
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = scaled(rule[key], scale)
    return out


def thresholds() -> dict[str, Any]:
    if not THRESHOLDS.exists():
        return {}
    data = yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def job_names() -> dict[str, str]:
    jobs = dict(DEFAULT_JOBS)
    jobs.update(thresholds().get("jobs") or {})
    return jobs


def prometheus_config(
    targets: Sequence[str], exporter_address: str, alertmanager_address: str, rules_glob: str
) -> dict[str, Any]:
    """The README's multi-target scrape configuration, with the test's short intervals."""
    jobs = job_names()
    return {
        "global": {
            "scrape_interval": INTERVAL,
            "scrape_timeout": INTERVAL,
            "evaluation_interval": INTERVAL,
        },
        "rule_files": [rules_glob],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]
        },
        "scrape_configs": [
            {
                "job_name": jobs["probe"],
                "scrape_interval": PROBE_INTERVAL,
                "scrape_timeout": PROBE_INTERVAL,
                "metrics_path": "/probe",
                "static_configs": [{"targets": list(targets)}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter_address},
                ],
            },
            {
                "job_name": jobs["exporter"],
                "static_configs": [{"targets": [exporter_address]}],
            },
        ],
    }


TIMING = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
TIME_MUTING = ("mute_time_intervals", "active_time_intervals")


def webhook_alertmanager_config(original: dict[str, Any], webhook_url: str) -> dict[str, Any]:
    """examples/alertmanager.yml with its receivers pointed at ``webhook_url`` and short
    timings. Receivers that notify nobody (no ``*_configs``) stay that way."""
    config = copy.deepcopy(original)
    config.pop("templates", None)  # only used by the replaced integrations
    config.pop("time_intervals", None)
    config.pop("mute_time_intervals", None)
    global_section = config.get("global") or {}
    config["global"] = {"resolve_timeout": global_section.get("resolve_timeout", "5m")}
    for receiver in config.get("receivers", []):
        integrations = [key for key in receiver if key.endswith("_configs")]
        for key in integrations:
            del receiver[key]
        if integrations:
            receiver["webhook_configs"] = [
                {"url": f"{webhook_url}/{receiver['name']}", "send_resolved": True}
            ]

    def fix(route: dict[str, Any], root: bool) -> None:
        for key in TIME_MUTING:
            route.pop(key, None)
        for key, value in TIMING.items():
            if root or key in route:
                route[key] = value
        for child in route.get("routes", []) or []:
            fix(child, False)

    fix(config["route"], True)
    return config


# ---------------------------------------------------------------------------------------------
# The stack


@dataclass
class Stack:
    root: Path
    scenarios: list[Scenario] = field(default_factory=e2e_scenarios)

    def __post_init__(self) -> None:
        self.webhook: WebhookReceiver | None = None
        self.fleet: Fleet | None = None
        self.exporter: ExporterProcess | None = None
        self.alertmanager: Alertmanager | None = None
        self.prometheus: Prometheus | None = None
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.rule_files: list[Path] = []

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.webhook = WebhookReceiver()
        self.fleet = Fleet(self.scenarios)
        config = self.fleet.exporter_config(self.root, timeout="5s")
        config["policy"] = e2e_policy()
        for module in config["modules"].values():
            # Let a change to a simulated server show within seconds instead of after the
            # production cache interval (Citrix asks for 15 minutes between WMI polls).
            for section in module.values():
                if isinstance(section, dict) and "cache_interval" in section:
                    section["cache_interval"] = CACHE_INTERVAL
        config_path = self.root / "exporter.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.exporter = ExporterProcess(f"--config.file={config_path}")
        exporter_address = self.exporter.wait_ready().removeprefix("http://")

        am_example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text(encoding="utf-8"))
        am_config = webhook_alertmanager_config(am_example, self.webhook.url)
        am_path = self.root / "alertmanager.yml"
        am_path.write_text(yaml.safe_dump(am_config, sort_keys=False), encoding="utf-8")
        self.alertmanager = Alertmanager(
            am_path, self.root / "alertmanager-data", self.root / "alertmanager.log"
        )

        rules_dir = self.root / "rules"
        rules_dir.mkdir()
        for path in bundled_rule_files():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            copy_path = rules_dir / path.name
            copy_path.write_text(yaml.safe_dump(fast_rules(data), sort_keys=False),
                                 encoding="utf-8")
            self.rule_files.append(copy_path)
        prom_config = prometheus_config(
            [s.name for s in self.scenarios],
            exporter_address,
            self.alertmanager.url.removeprefix("http://"),
            str(rules_dir / "*.yml"),
        )
        prom_path = self.root / "prometheus.yml"
        prom_path.write_text(yaml.safe_dump(prom_config, sort_keys=False), encoding="utf-8")
        self.prometheus = Prometheus(
            prom_path, self.root / "prometheus-data", self.root / "prometheus.log"
        )
        self.wait_scraped()
        self.ready_after = time.monotonic() - self.started

    def wait_scraped(self, timeout: float = 60.0) -> None:
        """Until Prometheus holds a successful scrape of every target and the exporter."""
        prometheus = self.prom
        jobs = job_names()
        wanted = {s.name for s in self.scenarios}

        def scraped() -> bool:
            result = prometheus.query(f'up{{job=~"{jobs["probe"]}|{jobs["exporter"]}"}} == 1')
            seen = {r["metric"].get("instance") for r in result}
            return wanted <= seen and len(seen) > len(wanted)

        wait_until(scraped, timeout, "the first scrape of every target",
                   explain=prometheus.process.log)

    def stop(self) -> None:
        for part in (self.prometheus, self.alertmanager):
            if part is not None:
                part.stop()
        if self.exporter is not None:
            self.exporter.stop()
        if self.fleet is not None:
            self.fleet.close()
        if self.webhook is not None:
            self.webhook.stop()

    def leftovers(self) -> list[str]:
        """Processes this stack started that are still alive (must be empty after stop())."""
        found = []
        for part in (self.prometheus, self.alertmanager):
            if part is not None:
                alive = group_members(part.process.pgid)
                if alive or part.process.alive():
                    found.append(f"{part.process.name} (group {part.process.pgid}: {alive})")
        if self.exporter is not None and self.exporter.proc.poll() is None:
            found.append(f"exporter (pid {self.exporter.proc.pid})")
        return found

    # -- access --------------------------------------------------------------------------------

    @property
    def prom(self) -> Prometheus:
        assert self.prometheus is not None, "the stack is not running"
        return self.prometheus

    @property
    def am(self) -> Alertmanager:
        assert self.alertmanager is not None, "the stack is not running"
        return self.alertmanager

    @property
    def hook(self) -> WebhookReceiver:
        assert self.webhook is not None, "the stack is not running"
        return self.webhook

    @property
    def simulated(self) -> Fleet:
        assert self.fleet is not None, "the stack is not running"
        return self.fleet


# ---------------------------------------------------------------------------------------------
# One stack per test session, shared by every test module that uses the fixture


class _Shared:
    lock = threading.Lock()
    stack: Stack | None = None
    users = 0
    tmp: str | None = None
    children_before: set[int] = set()


def require_binaries() -> None:
    missing = [b for b in ("prometheus", "prometheus-alertmanager") if shutil.which(b) is None]
    if missing:
        message = (f"{', '.join(missing)} not installed "
                   "(apt-get install prometheus prometheus-alertmanager; .ci/run does)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def acquire() -> Stack:
    with _Shared.lock:
        if _Shared.stack is None:
            require_binaries()
            # A test run ended by SIGTERM (a CI or shell timeout) still tears the stack down:
            # pytest runs the finalizers on KeyboardInterrupt. (SIGKILL is covered by the
            # processes' parent-death signal, see prometheus.py.)
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _interrupt)
            _Shared.children_before = set(children_of(os.getpid()))
            _Shared.tmp = tempfile.mkdtemp(prefix="cle-e2e-")
            _Shared.stack = Stack(Path(_Shared.tmp)).start()
        _Shared.users += 1
        return _Shared.stack


def release(config: pytest.Config | None = None) -> None:
    """Drop one user; the last one stops the stack and checks that nothing is left running."""
    with _Shared.lock:
        _Shared.users -= 1
        if _Shared.users > 0 or _Shared.stack is None:
            return
        stack, _Shared.stack = _Shared.stack, None
        stack.stop()
        leftovers = stack.leftovers()
        new_children = set(children_of(os.getpid())) - _Shared.children_before
        elapsed = time.monotonic() - stack.started
        line = (f"e2e stack: up {elapsed:.1f}s in total, ready (first scrape of every "
                f"target) after {stack.ready_after or float('nan'):.1f}s")
        capture = config.pluginmanager.get_plugin("capturemanager") if config else None
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print(f"\n{line}", file=sys.stderr)
        else:
            print(line, file=sys.stderr)
        if _Shared.tmp is not None and not leftovers:
            shutil.rmtree(_Shared.tmp, ignore_errors=True)
        assert not leftovers, f"processes left running: {leftovers}"
        assert not new_children, f"child processes left running: {sorted(new_children)}"


def shared_stack(config: pytest.Config) -> Iterator[Stack]:
    """The body of a session-scoped fixture giving the shared stack; each test module that
    needs it declares one (pytest keeps one fixture definition per module, the stack itself
    is started once and stopped after the last of them)::

        @pytest.fixture(scope="session")
        def e2e_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
            yield from shared_stack(request.config)
    """
    stack = acquire()
    try:
        yield stack
    finally:
        release(config)
