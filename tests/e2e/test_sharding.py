"""Scaling out: two exporter replicas behind one Prometheus job, sharded by ``hashmod``.

docs/deployment.md ("More than one exporter") documents this configuration; the test runs it
with the real Prometheus against a simulated fleet of WinRM License Servers and shows what the
documentation promises: every License Server is probed by exactly one replica, so its WMI is
queried by that replica alone (one collection per cache interval, not one per replica).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from citrix_license_exporter.simulator.fleet import Fleet
from citrix_license_exporter.simulator.scenario import parse_scenario
from citrix_license_exporter.simulator.winrm import SimulatedWinRM

from ..conftest import require_tool
from ..support.exporter import ExporterProcess
from ..support.prometheus import Prometheus, wait_until
from ..support.stack import winrm

REPLICAS = 2
SERVERS = [f"ls-shard-{i}" for i in range(6)]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
DOC_REPLICA = re.compile(r"citrix-license-exporter-(\d+)\.example:9957")


def documented_probe_job() -> dict[str, Any]:
    """The probe job of docs/deployment.md's "N identical exporters, hashmod sharding"."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### N identical exporters, hashmod sharding", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    jobs = yaml.safe_load(block)["scrape_configs"]
    job: dict[str, Any] = next(j for j in jobs if j["metrics_path"] == "/probe")
    return job


def sharded_scrape_config(targets: list[str], replicas: list[str]) -> dict[str, Any]:
    """The documented job, pointed at this test's License Servers and exporter replicas, with
    test clocks. Its relabel rules are the documentation's, unchanged but for the addresses."""
    job = documented_probe_job()
    shard_rules = [r for r in job["relabel_configs"] if r.get("action") == "hashmod"]
    assert [r["modulus"] for r in shard_rules] == [len(replicas)], "the doc shards over two"
    for rule in job["relabel_configs"]:
        if "replacement" in rule:
            rule["replacement"] = DOC_REPLICA.sub(
                lambda m: replicas[int(m.group(1))], rule["replacement"])
    return {**job, "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": targets}]}


def expected_shard(target: str, modulus: int) -> int:
    """Prometheus' hashmod: the low 8 bytes of the MD5 of the value, big-endian, mod N."""
    digest = hashlib.md5(target.encode("utf-8")).digest()
    return int.from_bytes(digest[8:], "big") % modulus


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    scenarios = [
        parse_scenario({
            "name": name,
            "description": "a healthy server of a sharded fleet",
            "network": {"certificate_days_left": 300},
            "winrm": winrm(),  # the e2e stack's healthy server: current build, daily uploads
        }, f"test_sharding:{name}")
        for name in SERVERS
    ]
    with Fleet(scenarios) as running:
        yield running


def test_each_license_server_is_probed_and_queried_by_one_replica(
    fleet: Fleet, tmp_path: Path
) -> None:
    require_tool("prometheus")
    config = fleet.write_exporter_config(tmp_path / "exporter" / "config.yml")
    replicas = [ExporterProcess(f"--config.file={config}") for _ in range(REPLICAS)]
    prometheus: Prometheus | None = None
    try:
        addresses = [r.wait_ready().removeprefix("http://") for r in replicas]
        prometheus_yml = tmp_path / "prometheus.yml"
        prometheus_yml.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [sharded_scrape_config(SERVERS, addresses)],
        }), encoding="utf-8")
        prometheus = Prometheus(prometheus_yml, tmp_path / "data", tmp_path / "prometheus.log")
        shards = {name: expected_shard(name, REPLICAS) for name in SERVERS}
        assert set(shards.values()) == set(range(REPLICAS)), "every replica gets a share"

        def scraped_three_times() -> list[dict[str, Any]] | None:
            result = prometheus.query(
                'count_over_time(citrix_license_up{job="citrix-license"}[1m]) >= 3'
            )
            return result if len(result) == len(SERVERS) else None

        series = wait_until(scraped_three_times, 60, "three probes of every License Server",
                            explain=lambda: "\n".join(r.log() for r in replicas))
        # One series per License Server, and it comes from the replica hashmod picked.
        by_instance = {s["metric"]["instance"]: s["metric"]["exporter"] for s in series}
        assert by_instance == {name: addresses[shards[name]] for name in SERVERS}
        up = prometheus.query('citrix_license_up{job="citrix-license"}')
        assert {s["metric"]["instance"]: float(s["value"][1]) for s in up} == dict.fromkeys(
            SERVERS, 1.0)
        # WMI: after several probes within one cache interval (15 minutes), each server has
        # seen exactly one collection, as with one exporter: one PowerShell shell and the same
        # enumerations as every other server. A second replica would have doubled both.
        per_server = {}
        for name in SERVERS:
            sim = fleet.server(name).interface(SimulatedWinRM).simulator
            per_server[name] = (sim.requests.count("Create"), sim.requests.count("Enumerate"))
        assert {n: c[0] for n, c in per_server.items()} == dict.fromkeys(SERVERS, 1), per_server
        assert len({c[1] for c in per_server.values()}) == 1, per_server
    finally:
        if prometheus is not None:
            prometheus.stop()
        for replica in replicas:
            replica.stop()

