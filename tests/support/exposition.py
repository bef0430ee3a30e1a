"""Parse the exporter's text exposition; list what it really exposes across every scenario."""

from __future__ import annotations

import functools
import tempfile
from importlib import resources
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def samples(text: str) -> list[Sample]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels``; None if absent."""
    found = [v for n, lab, v in samples(text) if n == name and labels.items() <= lab.items()]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


def family_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """Every metric (and sample) name the exporter exposes on /probe and /metrics when run
    against every bundled simulator scenario."""
    from citrix_license_exporter.simulator.fleet import Fleet
    from citrix_license_exporter.simulator.scenario import bundled_scenarios

    from .exporter import ExporterProcess

    names: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp, Fleet(bundled_scenarios()) as fleet:
        config = fleet.write_exporter_config(Path(tmp, "config.yml"))
        # A file catalog source (a copy of the bundled catalog), so the catalog refresh metrics
        # are exposed too.
        Path(tmp, "releases.yaml").write_bytes(
            resources.files("citrix_license_exporter.citrix").joinpath("releases.yaml").read_bytes()
        )
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
        document["catalog"] = {"sources": [{"file": "releases.yaml"}]}
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
        with ExporterProcess(f"--config.file={config}") as exporter:
            names |= family_names(exporter.get("/metrics").text)
            for server in fleet.servers:
                names |= family_names(exporter.get(f"/probe?target={server.name}").text)
    return frozenset(names)
