"""The running exporter's state: the config in force, the effective catalog, the prober.

A reload builds everything new first and swaps it in only when all of it is valid, so a bad
file never leaves the exporter half-configured.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.core import Metric

from . import __version__
from .citrix.catalog import Catalog, load_bundled, merge
from .collectors.base import Collector
from .config import Config, ConfigError, load_config
from .probe import Prober

log = logging.getLogger(__name__)


def default_collectors() -> dict[str, Collector]:
    """Every collector the exporter knows, by the name modules use in ``collectors:``."""
    from .collectors.network import NetworkCollector
    from .collectors.winrm import WinRMCollector

    collectors: dict[str, Collector] = {"probe": NetworkCollector(), "winrm": WinRMCollector()}
    for name, factory in COLLECTOR_FACTORIES.items():
        collectors[name] = factory()
    return collectors


#: Collectors defined in their own modules register a factory here (see collectors/*.py).
COLLECTOR_FACTORIES: dict[str, Callable[[], Collector]] = {}


@dataclass
class ExporterState:
    config_path: str
    config: Config
    catalog: Catalog
    prober: Prober
    last_reload_successful: bool = True
    last_reload_success_time: float = 0.0
    version: str = __version__
    python_version: str = platform.python_version()
    demo: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.extra_family_sources: list[Callable[[], Iterable[Metric]]] = []

    @classmethod
    def load(
        cls,
        config_path: str,
        collectors: Mapping[str, Collector] | None = None,
    ) -> ExporterState:
        """Load the config at start; a ConfigError propagates (the exporter does not start)."""
        config = load_config(config_path)
        return cls(
            config_path=config_path,
            config=config,
            catalog=effective_catalog(config),
            prober=Prober(collectors if collectors is not None else default_collectors()),
            last_reload_success_time=time.time(),
        )

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file. On any problem keep the old config and log every problem."""
        with self._lock:
            try:
                config = load_config(self.config_path)
                catalog = effective_catalog(config)
            except ConfigError as exc:
                self.last_reload_successful = False
                for line in exc.lines():
                    log.error("configuration problem", extra={"fields": {"problem": line}})
                log.error(
                    "reload failed, keeping the previous configuration",
                    extra={"fields": {"file": self.config_path, "problems": len(exc.problems)}},
                )
                return False, str(exc)
            self.config, self.catalog = config, catalog
            self.prober.clear_cache()
            self.last_reload_successful = True
            self.last_reload_success_time = time.time()
            log.info(
                "configuration reloaded",
                extra={"fields": {"file": self.config_path, "targets": len(config.targets),
                                  "modules": len(config.modules)}},
            )
            return True, "configuration reloaded"

    def extra_families(self) -> Iterable[Metric]:
        for source in self.extra_family_sources:
            yield from source()


def effective_catalog(config: Config) -> Catalog:
    """The user's own releases (from the config) override the bundled catalog per build."""
    bundled = load_bundled()
    if not config.catalog_releases:
        return bundled
    own = Catalog(releases=tuple(sorted(config.catalog_releases, key=lambda r: r.version)),
                  generated=None)
    return merge(own, bundled)
