"""The running exporter's state: the config in force, the effective catalog, the prober.

A reload builds everything new first and swaps it in only when all of it is valid, so a bad
file never leaves the exporter half-configured.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import __version__
from .catalog_sources import CatalogRefresher, RefreshStatus
from .citrix.catalog import Catalog, load_bundled, merge
from .collectors import registry
from .collectors.base import Collector
from .config import Config, ConfigError, load_config
from .history import ProbeHistory
from .probe import Prober

log = logging.getLogger(__name__)


def default_collectors() -> dict[str, Collector]:
    """Every registered collector (collectors/registry.py), by the name modules use in
    ``collectors:``."""
    return dict(registry.collectors())


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
    #: The recent probes and each target's latest result (status page, /probe?debug=true).
    history: ProbeHistory = field(default_factory=ProbeHistory)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._catalog_lock = threading.Lock()
        #: Follows ``catalog.sources`` (catalog_sources.py); runs between start() and stop().
        self.refresher = CatalogRefresher(self.config.catalog, on_change=self._update_catalog)

    def start(self) -> None:
        """Start background work: read the file catalog sources, then follow every source."""
        self.refresher.start()
        self._update_catalog()

    def stop(self) -> None:
        # A fetch in progress is abandoned (daemon thread) rather than waited for.
        self.refresher.stop(timeout=1.0)

    def _update_catalog(self) -> None:
        """Recompute the effective catalog from the config in force and the sources' last good
        catalogs (called on start, on reload and by the refresher when a source changed)."""
        with self._catalog_lock:
            self.catalog = effective_catalog(self.config, self.refresher.catalogs())

    def catalog_refresh_status(self) -> RefreshStatus | None:
        """The catalog sources' refresh status; None when the config names no source."""
        status = self.refresher.status()
        return status if status.sources else None

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
            except ConfigError as exc:
                self.last_reload_successful = False
                for line in exc.lines():
                    log.error("configuration problem", extra={"fields": {"problem": line}})
                log.error(
                    "reload failed, keeping the previous configuration",
                    extra={"fields": {"file": self.config_path, "problems": len(exc.problems)}},
                )
                return False, str(exc)
            # Sources that stay keep their last good catalog; file sources are re-read now and
            # new URL sources are fetched by the refresher's thread (the reload does not wait).
            self.refresher.update(config.catalog)
            with self._catalog_lock:
                self.config = config
                self.catalog = effective_catalog(config, self.refresher.catalogs())
            # The prober's cache is keyed by each fetch's effective settings (probe.fetch_key):
            # servers whose settings did not change keep their data, the others are fetched
            # anew on their next probe.
            self.history.forget_except({target.name for target in config.targets})
            self.last_reload_successful = True
            self.last_reload_success_time = time.time()
            log.info(
                "configuration reloaded",
                extra={"fields": {"file": self.config_path, "targets": len(config.targets),
                                  "modules": len(config.modules)}},
            )
            return True, "configuration reloaded"



def effective_catalog(config: Config, sources: Sequence[Catalog] = ()) -> Catalog:
    """Per build, the first of: the user's own releases (``catalog.releases``), the sources'
    last good catalogs in configured order, the bundled catalog."""
    bundled = load_bundled()
    if not config.catalog.releases and not sources:
        return bundled
    own = Catalog(releases=config.catalog.releases, generated=None)
    return merge(own, *sources, bundled)
