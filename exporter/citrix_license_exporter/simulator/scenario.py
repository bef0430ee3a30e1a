"""Scenario files: one YAML document describes one simulated License Server.

```yaml
name: ls-current
description: Current build, uploads daily.
network:
  ports:                      # license_manager, vendor_daemon, web_services
    vendor_daemon: refuse     # ok | refuse | hang | slow | reset
  slow_seconds: 3
  certificate_days_left: 300  # negative: already expired
winrm: {...}                  # see simulator/winrm.py
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PORT_NAMES = ("license_manager", "vendor_daemon", "web_services")
FAULTS = ("ok", "refuse", "hang", "slow", "reset")


class ScenarioError(ValueError):
    pass


@dataclass
class NetworkScenario:
    ports: dict[str, str] = field(default_factory=lambda: dict.fromkeys(PORT_NAMES, "ok"))
    slow_seconds: float = 3.0
    certificate_days_left: float = 300.0


@dataclass
class Scenario:
    name: str
    description: str
    network: NetworkScenario
    #: Sections for other simulated interfaces (winrm, controller, cloud), validated by them.
    sections: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


def parse_scenario(data: object, source: str) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{source}: name is required")
    net_raw = data.get("network") or {}
    if not isinstance(net_raw, dict):
        raise ScenarioError(f"{source}: network must be a mapping")
    unknown = set(net_raw) - {"ports", "slow_seconds", "certificate_days_left"}
    if unknown:
        raise ScenarioError(f"{source}: network: unknown keys {sorted(unknown)}")
    ports = dict.fromkeys(PORT_NAMES, "ok")
    for key, fault in (net_raw.get("ports") or {}).items():
        if key not in PORT_NAMES or fault not in FAULTS:
            raise ScenarioError(f"{source}: network.ports.{key}: {fault!r} (faults: {FAULTS})")
        ports[key] = fault
    network = NetworkScenario(
        ports=ports,
        slow_seconds=float(net_raw.get("slow_seconds", 3.0)),
        certificate_days_left=float(net_raw.get("certificate_days_left", 300.0)),
    )
    sections = {k: v for k, v in data.items() if k not in ("name", "description", "network")}
    return Scenario(name, str(data.get("description", "")), network, sections, source)


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


def bundled_scenarios() -> list[Scenario]:
    """The demo fleet shipped with the package (simulator/scenarios/*.yaml), sorted by name."""
    folder = resources.files(__package__) / "scenarios"
    scenarios = [
        parse_scenario(yaml.safe_load(entry.read_text(encoding="utf-8")), f"scenarios/{entry.name}")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    ]
    return sorted(scenarios, key=lambda s: s.name)


def load_folder(folder: Path) -> list[Scenario]:
    return sorted((load_scenario(p) for p in folder.glob("*.yaml")), key=lambda s: s.name)
