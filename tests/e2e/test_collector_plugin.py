"""A collector is one unit: this module alone adds one (issue 15) and sees it configured,
probed and documented.

The ``echo`` collector below has a settings model (``url``, ``field``), a fetch (a JSON document
from a real HTTP server on 127.0.0.1, started by the test), one gauge family and a docs entry.
Registering it is one line (``registry.registered``); config.py, app.py and metrics.py are not
touched. The exporter then runs in-process (the registration lives in this process) and is
probed over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.core import Metric

from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.collectors import registry
from citrix_license_exporter.collectors.base import (
    CollectorDocs,
    CollectorError,
    CollectorUnit,
    Deadline,
    FailureKind,
)
from citrix_license_exporter.config import (
    ConfigError,
    ModuleConfig,
    SectionModel,
    TargetConfig,
    load_config,
    parse_config,
)
from citrix_license_exporter.exposition import ProbeRenderer
from citrix_license_exporter.metrics import PREFIX, single
from citrix_license_exporter.probe import Prober, ProbeResult

from ..support.exporter import serving, write
from ..support.exposition import value
from ..unit.test_docs import COLLECTORS_DOC, METRICS_DOC, collector_doc_problems

HOST = "127.0.0.1"
BUILTIN = ("probe", "winrm", "controller", "cloud")


# ---------------------------------------------------------------------------------------------
# The collector: everything it is, in one place


class EchoConfig(SectionModel):
    """``modules.<module>.echo``."""

    url: str
    field: str


@dataclass(frozen=True)
class EchoData:
    value: float
    license_server_version: str | None = None


class EchoCollector(CollectorUnit[EchoData, EchoConfig]):
    name = "echo"
    data_type = EchoData
    config_model = EchoConfig
    docs = CollectorDocs(
        summary="One number from a JSON document (a test collector)",
        families=(f"{PREFIX}_echo_value",),
    )

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> EchoData:
        config = self.settings(module)
        if config is None:
            raise CollectorError("no echo section", kind=FailureKind.INTERNAL)
        with urllib.request.urlopen(config.url, timeout=deadline.remaining()) as answer:
            document = json.load(answer)
        found = document.get(config.field)
        if not isinstance(found, int | float):
            raise CollectorError(f"no number under {config.field!r}", kind=FailureKind.PARSE)
        return EchoData(float(found))

    def families(self, data: EchoData, result: ProbeResult) -> Iterable[Metric]:
        yield single("echo_value", "The number the echo collector read.", data.value)


# ---------------------------------------------------------------------------------------------
# Fixtures: the collector registered, a real HTTP server for it to read, the exporter


@pytest.fixture
def echo() -> Iterator[EchoCollector]:
    with registry.registered(EchoCollector()) as collector:
        assert isinstance(collector, EchoCollector)
        yield collector
    assert registry.names() == BUILTIN


@pytest.fixture
def document_server() -> Iterator[tuple[str, list[str]]]:
    """Serves ``{"answer": 42}`` at /value; yields its URL and the paths it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps({"answer": 42, "text": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_address[1]}/value", asked
    server.shutdown()
    server.server_close()
    thread.join(5)


def echo_config(url: str, section: str | None = None) -> str:
    section = section if section is not None else f"      url: {url}\n      field: answer\n"
    return (
        "modules:\n"
        "  m:\n"
        "    collectors: [echo]\n"
        "    echo:\n"
        f"{section}"
        "targets:\n"
        "  - {name: t, address: 127.0.0.1, module: m}\n"
    )


@pytest.fixture
def exporter(tmp_path: Path, echo: EchoCollector,
             document_server: tuple[str, list[str]]) -> Iterator[str]:
    url, _ = document_server
    config = write(tmp_path / "exporter.yml", echo_config(url))
    with serving(config, HOST) as server:
        yield f"http://{HOST}:{server.server_address[1]}"


# ---------------------------------------------------------------------------------------------
# Configured, probed, documented


def test_a_collector_added_in_one_module_is_probed(
    exporter: str, document_server: tuple[str, list[str]]
) -> None:
    answer = httpx.get(f"{exporter}/probe", params={"target": "t"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert value(answer.text, "citrix_license_up") == 1
    assert value(answer.text, "citrix_license_collector_success", collector="echo") == 1
    assert value(answer.text, "citrix_license_echo_value") == 42
    assert "# HELP citrix_license_echo_value The number the echo collector read." in answer.text
    _, asked = document_server
    assert asked == ["/value"]  # the value came from the server, fetched by the probe


def test_the_collectors_section_is_validated_with_file_line_and_key_path(
    tmp_path: Path, echo: EchoCollector, document_server: tuple[str, list[str]]
) -> None:
    url, _ = document_server
    path = write(tmp_path / "exporter.yml",
                 echo_config(url, f"      url: {url}\n      feild: answer\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.lines() == [
        f"{path}: modules.m.echo.field: required (line 4)",
        f"{path}: modules.m.echo.feild: unknown key (allowed: field, url) (line 6)",
    ]
    # The section typed, when it is right; a module that enables echo must have it.
    good = load_config(str(write(tmp_path / "good.yml", echo_config(url))))
    section = echo.settings(good.modules["m"])
    assert isinstance(section, EchoConfig) and section.field == "answer"
    missing = write(tmp_path / "missing.yml", echo_config(url).replace("    echo:\n", ""))
    missing.write_text(missing.read_text().replace(f"      url: {url}\n      field: answer\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_config(str(missing))
    assert caught.value.lines() == [
        f"{missing}: modules.m: collector echo is enabled but the module has no echo section "
        "(line 2)",
    ]
    # The module's own keys name the new section among the allowed ones.
    typo = write(tmp_path / "typo.yml", echo_config(url).replace("    echo:\n", "    ecko:\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(typo))
    assert caught.value.lines()[-1] == (
        f"{typo}: modules.m.ecko: unknown key (allowed: allow_unlisted_targets, cloud, "
        "collectors, controller, echo, primary, probe, timeout, winrm) (line 4)"
    )


def test_the_docs_include_the_collectors_entry(echo: EchoCollector) -> None:
    reference = registry.reference()
    assert (
        "| `echo` | `echo:` (required) | no | no | One number from a JSON document (a test "
        "collector) | `citrix_license_echo_value` |"
    ) in reference.splitlines()
    # The docs check sees what the new collector still lacks...
    metrics_doc = METRICS_DOC.read_text(encoding="utf-8")
    collectors_doc = COLLECTORS_DOC.read_text(encoding="utf-8")
    assert collector_doc_problems([echo], metrics_doc, collectors_doc) == [
        "docs/collectors.md: the generated reference is out of date (paste the output of "
        "citrix_license_exporter.collectors.registry.reference())",
        "echo: citrix_license_echo_value not in an at-a-glance table of docs/metrics.md",
        "echo: citrix_license_echo_value not in a section heading of docs/metrics.md",
    ]
    # ...and nothing once its entry is written and the reference regenerated.
    block = registry.generated_block(collectors_doc)
    assert block is not None
    documented = metrics_doc + (
        "\n| `citrix_license_echo_value` | | `echo` | the echoed number |\n"
        "\n### `citrix_license_echo_value`\n"
    )
    assert collector_doc_problems(
        [echo], documented, collectors_doc.replace(block, reference)) == []
    # A family the module defines but its docs entry leaves out is caught too.
    echo.docs = CollectorDocs(summary=echo.docs.summary, families=())
    assert collector_doc_problems(
        [echo], documented, collectors_doc.replace(block, registry.reference())) == [
        "echo: its module defines ['citrix_license_echo_value'] but its docs entry does not "
        "list them",
    ]


def test_an_unregistered_collector_is_refused_listing_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "exporter.yml", echo_config("http://127.0.0.1:1/value"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.lines() == [
        f"{path}: modules.m.collectors[0]: unknown collector 'echo' (known: probe, winrm, "
        "controller, cloud) (line 3)",
        f"{path}: modules.m.echo: unknown key (allowed: allow_unlisted_targets, cloud, "
        "collectors, controller, primary, probe, timeout, winrm) (line 4)",
    ]


def test_data_of_another_type_fails_the_collector_with_a_reason(
    echo: EchoCollector, document_server: tuple[str, list[str]]
) -> None:
    """The exposition hands ``families`` only the collector's ``data_type``: a fetch that
    returns something else is a failed collector, not a crashed answer."""

    class Untyped:
        name = "echo"
        cached = False

        def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> object:
            return {"value": 42.0}

    url, _ = document_server
    config = parse_config(echo_config(url), "exporter.yml")
    target, module = config.targets[0], config.modules["m"]
    prober = Prober({"echo": Untyped()})
    result = asyncio.run(prober.probe(target, module, Deadline.after(5), load_bundled(),
                                      config.policy))
    body, _, exposed = ProbeRenderer(prober).render(result, 0.1, "")
    text = body.decode("utf-8")
    assert value(text, "citrix_license_up") == 0
    assert value(text, "citrix_license_collector_failure", collector="echo", kind="parse") == 1
    assert "citrix_license_echo_value" not in text
    outcome = exposed.outcome("echo")
    assert outcome is not None and outcome.error == (
        "the collected data could not be exposed: TypeError: the echo collector handed on "
        "dict, not EchoData")


def test_a_name_is_registered_once(echo: EchoCollector) -> None:
    with pytest.raises(ValueError, match="a collector named 'echo' is already registered"):
        registry.register(EchoCollector())
    assert registry.get("echo") is echo
