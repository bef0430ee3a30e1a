"""A fleet of simulated License Servers, and the exporter configuration that watches it.

Besides the network ports, a scenario may ask for further simulated interfaces (WinRM, Delivery
Controller, Citrix Cloud): each module's ``from_scenario`` starts its interface when the
scenario has its section, and the interface says how the exporter reaches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from .network import HOST, SimulatedNetwork
from .scenario import Scenario


class SimulatedInterface(Protocol):
    @property
    def module_name(self) -> str:
        """The exporter module this interface needs (``module_config`` gives its YAML)."""
        ...

    def module_config(self, secrets_dir: Path) -> dict[str, Any]: ...

    def target_fields(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _interface_starters() -> list[Callable[[Scenario], SimulatedInterface | None]]:
    # Imported here: these modules pull in pyspnego, cryptography and the HTTPS servers.
    from . import cloud, controller, winrm

    return [winrm.from_scenario, controller.from_scenario, cloud.from_scenario]

NETWORK_MODULE = "network"


@dataclass
class SimulatedServer:
    scenario: Scenario
    network: SimulatedNetwork
    interfaces: list[SimulatedInterface] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def module_name(self) -> str:
        # The last interface decides the module; the network probe is in every module.
        return self.interfaces[-1].module_name if self.interfaces else NETWORK_MODULE

    def target_config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "address": HOST,
            "module": self.module_name,
            "ports": self.network.ports,
        }
        for interface in self.interfaces:
            entry.update(interface.target_fields())
        return entry

    def interface(self, kind: type[Any]) -> Any:
        return next(i for i in self.interfaces if isinstance(i, kind))

    def close(self) -> None:
        for interface in self.interfaces:
            with contextlib.suppress(Exception):
                interface.close()
        self.network.close()


def start_server(scenario: Scenario) -> SimulatedServer:
    server = SimulatedServer(scenario, SimulatedNetwork(scenario.name, scenario.network))
    try:
        for start in _interface_starters():
            interface = start(scenario)
            if interface is not None:
                server.interfaces.append(interface)
    except BaseException:
        server.close()
        raise
    return server


class Fleet:
    def __init__(self, scenarios: Iterable[Scenario]) -> None:
        self.servers: list[SimulatedServer] = []
        try:
            for scenario in scenarios:
                self.servers.append(start_server(scenario))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server(self, name: str) -> SimulatedServer:
        return next(s for s in self.servers if s.name == name)

    def exporter_config(self, secrets_dir: Path, timeout: str = "5s") -> dict[str, Any]:
        """An exporter configuration watching every server of the fleet."""
        modules: dict[str, Any] = {NETWORK_MODULE: {"timeout": timeout, "collectors": ["probe"]}}
        for server in self.servers:
            for interface in server.interfaces:
                if interface.module_name not in modules:
                    module = interface.module_config(secrets_dir)
                    module.setdefault("timeout", timeout)
                    modules[interface.module_name] = module
        return {
            "modules": modules,
            "targets": [server.target_config() for server in self.servers],
        }

    def write_exporter_config(self, path: Path, timeout: str = "5s") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        config = self.exporter_config(path.parent, timeout)
        path.write_text(
            "# Generated for SIMULATED License Servers on 127.0.0.1 (demo / tests).\n"
            + yaml.safe_dump(config, sort_keys=False),
            encoding="utf-8",
        )
        return path

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()
