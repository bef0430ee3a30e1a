"""The probe engine's caching and isolation, with in-process collectors standing in for fetches.

These collectors implement the collector contract (collectors/base.py); what is tested is the
engine: how often a fetch happens, what a probe reports while a fetch is slow or failing. A
"slow" fetch is one held at a gate until the test opens it, and the cache's clock is a fake
one the test moves: no outcome depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from citrix_license_exporter import probe as probe_module
from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.citrix.policy import PolicyConfig
from citrix_license_exporter.collectors.base import CollectorError, Deadline
from citrix_license_exporter.collectors.winrm import WinRMConfig
from citrix_license_exporter.config import ModuleConfig, TargetConfig
from citrix_license_exporter.probe import Prober


@dataclass
class Data:
    n: int
    license_server_version: str | None = "11.17.2.0 build 56200"


class CountingCollector:
    """Returns Data(n) for the n-th fetch; can be held at a gate or made failing between
    probes."""

    def __init__(self, name: str, cached: bool) -> None:
        self.name = name
        self.cached = cached
        self.calls = 0
        self.gate: threading.Event | None = None  # set: a fetch waits until it is opened
        self.fail = False
        self.lock = threading.Lock()

    def hold(self) -> threading.Event:
        self.gate = threading.Event()
        return self.gate

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> Any:
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise CollectorError("simulated failure")
        return Data(n)


def setup(interval: float = 60.0) -> tuple[Prober, CountingCollector, CountingCollector,
                                          TargetConfig, ModuleConfig]:
    cached = CountingCollector("winrm", cached=True)
    plain = CountingCollector("probe", cached=False)
    module = ModuleConfig(
        name="m", timeout=5.0, collectors=("winrm", "probe"), primary="winrm",
        winrm=WinRMConfig(username="u", password=None, cache_interval=interval),
    )
    target = TargetConfig(name="t", address="127.0.0.1", module="m")
    return Prober({"winrm": cached, "probe": plain}), cached, plain, target, module


#: The engine runs on one event loop, as in the exporter; the tests call it from threads.
LOOP = asyncio.new_event_loop()
threading.Thread(target=LOOP.run_forever, name="engine-loop", daemon=True).start()


def run(prober: Prober, target: TargetConfig, module: ModuleConfig, seconds: float = 2.0):
    probe = prober.probe(target, module, Deadline.after(seconds), load_bundled(), PolicyConfig())
    return asyncio.run_coroutine_threadsafe(probe, LOOP).result()


def test_cached_collector_fetches_once_per_interval() -> None:
    prober, cached, plain, target, module = setup(interval=60)
    first = run(prober, target, module)
    second = run(prober, target, module)
    assert cached.calls == 1
    assert plain.calls == 2  # the uncached collector runs on every probe
    winrm = second.outcome("winrm")
    assert winrm is not None and winrm.from_cache and winrm.data.n == 1
    assert first.up and second.up
    assert second.assessment is not None and second.version is not None


class FakeClock:
    """The wall clock the probe's cache reads (``time.time``), moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(probe_module, "time",
                        SimpleNamespace(time=fake.time, monotonic=time.monotonic))
    return fake


def wait_until_stored(prober: Prober, calls: int, collector: CountingCollector,
                      target: TargetConfig, module: ModuleConfig) -> None:
    """Until the fetch in flight has stored its outcome (the engine's own state)."""
    end = time.monotonic() + 30
    while collector.calls < calls or prober.fetching(target, module, "winrm"):
        assert time.monotonic() < end, "the fetch never stored its outcome"
        time.sleep(0.01)


def test_concurrent_probes_share_one_fetch() -> None:
    prober, cached, _, target, module = setup()
    gate = cached.hold()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(run(prober, target, module,
                                                                  seconds=30)))
               for _ in range(5)]
    for thread in threads:
        thread.start()
    # The fetch is held at the gate; probes that arrive meanwhile wait for it, later ones get
    # its cached result: either way there is one fetch.
    end = time.monotonic() + 30
    while cached.calls < 1:
        assert time.monotonic() < end
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join()
    assert cached.calls == 1
    assert len(results) == 5 and all(r.up for r in results)


def test_slow_refetch_serves_last_good_data(clock: FakeClock) -> None:
    prober, cached, _, target, module = setup(interval=60.0)
    assert run(prober, target, module).up
    clock.now += 61  # the cached data expires
    gate = cached.hold()  # the refetch outlives the probe's deadline
    result = run(prober, target, module, seconds=0.3)
    outcome = result.outcome("winrm")
    assert outcome is not None
    assert result.up and outcome.from_cache and outcome.data.n == 1
    # While the refetch runs, other probes get the last good data at once.
    again = run(prober, target, module, seconds=0.3).outcome("winrm")
    assert again is not None and again.data.n == 1
    assert cached.calls == 2  # one refetch for both probes
    gate.set()
    wait_until_stored(prober, 2, cached, target, module)
    refreshed = run(prober, target, module).outcome("winrm")
    assert refreshed is not None and refreshed.data.n == 2 and refreshed.from_cache
    assert cached.calls == 2


def test_cold_fetch_past_the_deadline_is_a_failure_and_still_fills_the_cache() -> None:
    prober, cached, _, target, module = setup()
    gate = cached.hold()
    result = run(prober, target, module, seconds=0.2)
    assert not result.up
    outcome = result.outcome("winrm")
    assert outcome is not None and outcome.error == "probe deadline exceeded"
    gate.set()
    wait_until_stored(prober, 1, cached, target, module)
    assert run(prober, target, module).up
    assert cached.calls == 1


def test_failing_collector_hides_nothing_else_and_failure_is_cached_briefly() -> None:
    prober, cached, _plain, target, module = setup()
    cached.fail = True
    result = run(prober, target, module)
    assert not result.up
    probe = result.outcome("probe")
    assert probe is not None and probe.success and probe.data.n == 1
    run(prober, target, module)
    assert cached.calls == 1  # a failure is retried after FAILURE_RETRY_SECONDS, not at once


def test_last_success_survives_a_failure() -> None:
    prober, _, plain, target, module = setup()
    ok = run(prober, target, module).outcome("probe")
    plain.fail = True
    failed = run(prober, target, module).outcome("probe")
    assert ok is not None and failed is not None
    assert not failed.success
    assert failed.last_success == ok.fetched_at


class CrashingCollector:
    name = "probe"
    cached = False

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> Any:
        raise ValueError("month must be in 1..12")


def test_a_crash_is_reported_as_what_it_is_not_as_a_timeout() -> None:
    module = ModuleConfig(name="m", timeout=5.0, collectors=("probe",), primary="probe")
    target = TargetConfig(name="t", address="127.0.0.1", module="m")
    result = run(Prober({"probe": CrashingCollector()}), target, module)
    outcome = result.outcome("probe")
    assert outcome is not None and not outcome.success
    assert outcome.error == "ValueError: month must be in 1..12"
    assert outcome.kind == "internal"


def test_deadline_cancels_a_collector_that_never_returns() -> None:
    started = threading.Event()

    class Hanging:
        name = "probe"
        cached = False

        async def collect_async(self, target: TargetConfig, module: ModuleConfig,
                                deadline: Deadline) -> Any:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    cancelled = threading.Event()
    module = ModuleConfig(name="m", timeout=5.0, collectors=("probe",), primary="probe")
    target = TargetConfig(name="t", address="127.0.0.1", module="m")
    result = run(Prober({"probe": Hanging()}), target, module, seconds=0.2)
    outcome = result.outcome("probe")
    assert started.is_set() and outcome is not None
    assert outcome.error == "probe deadline exceeded" and outcome.kind == "timeout"
    assert cancelled.wait(5), "the collector's work was not cancelled at the deadline"


def test_reload_does_not_refetch_when_settings_are_unchanged(tmp_path) -> None:
    """Issue 16 defect 8: 20 reload-and-probe pairs made 20 WMI collections."""
    from citrix_license_exporter.app import ExporterState

    password = tmp_path / "pw"
    password.write_text("first-Secret-1")
    config = tmp_path / "exporter.yml"
    text = (
        "modules:\n  m:\n    collectors: [winrm]\n    timeout: {timeout}\n"
        "    winrm: {{username: u, password_file: {pw}, cache_interval: 15m}}\n"
        "targets:\n  - {{name: t, address: 127.0.0.1, module: m}}\n"
    )
    config.write_text(text.format(pw=password, timeout="5s"))
    cached = CountingCollector("winrm", cached=True)
    state = ExporterState.load(str(config), collectors={"winrm": cached})

    def probe() -> Any:
        target = state.config.targets[0]
        module = state.config.modules[target.module]
        call = state.prober.probe(target, module, Deadline.after(2), state.catalog,
                                  state.config.policy)
        return asyncio.run_coroutine_threadsafe(call, LOOP).result()

    for _ in range(20):
        assert state.reload()[0]
        assert probe().up
    assert cached.calls == 1
    # A change the fetch does not depend on (the module's timeout) keeps the data too...
    config.write_text(text.format(pw=password, timeout="8s"))
    assert state.reload()[0] and probe().up
    assert cached.calls == 1
    # ...a changed credential does not.
    password.write_text("second-Secret-2")
    assert state.reload()[0] and probe().up
    assert cached.calls == 2


def test_data_that_cannot_be_exposed_fails_the_collector_and_is_not_cached(
    monkeypatch,
) -> None:
    """Issue 16 defect 3: a value that breaks the exposition gives up 0 with a reason, and
    the bad data is not served from the cache as a success."""
    from citrix_license_exporter import metrics, probe
    from citrix_license_exporter.collectors import registry
    from citrix_license_exporter.exposition import ProbeRenderer

    def families(data: Data, result: Any) -> Any:
        if data.n == 1:
            raise OverflowError("date value out of range")
        return [metrics.single("test_value", "A test value.", float(data.n))]

    monkeypatch.setattr(registry.get("winrm"), "exposition", families)
    prober, cached, _, target, module = setup(interval=900)
    renderer = ProbeRenderer(prober)
    body, _, exposed = renderer.render(run(prober, target, module), 0.1, "")
    assert b"citrix_license_up 0.0" in body
    assert b'citrix_license_collector_success{collector="winrm"} 0.0' in body
    winrm = exposed.outcome("winrm")
    assert winrm is not None and winrm.error is not None
    assert "OverflowError: date value out of range" in winrm.error
    # The next probe does not get the bad data as a success from the cache...
    body, _, _ = renderer.render(run(prober, target, module), 0.1, "")
    assert b"citrix_license_up 0.0" in body and cached.calls == 1
    # ...and after the failure retry interval the data is fetched again.
    monkeypatch.setattr(probe, "FAILURE_RETRY_SECONDS", 0.0)
    body, _, _ = renderer.render(run(prober, target, module), 0.1, "")
    assert cached.calls == 2
    assert b"citrix_license_up 1.0" in body and b"citrix_license_test_value 2.0" in body


OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.mark.parametrize("help_text", ["A test value.", 'A "quoted" test value.'])
def test_cached_data_is_encoded_once_for_both_formats_when_they_agree(
    monkeypatch, help_text: str
) -> None:
    """Each probe renders the text format for the probe history as well as the scraper's
    format: cached data whose families come out alike in both is encoded once; a help text
    with a quote (which only OpenMetrics escapes) is encoded per format. The answers are the
    formats' own either way."""
    from citrix_license_exporter import metrics
    from citrix_license_exporter.collectors import registry
    from citrix_license_exporter.exposition import ProbeRenderer, encode

    built: list[int] = []

    def families(data: Data, result: Any) -> Any:
        built.append(data.n)
        return [metrics.single("test_value", help_text, float(data.n))]

    monkeypatch.setattr(registry.get("winrm"), "exposition", families)
    prober, _, _, target, module = setup(interval=900)
    renderer = ProbeRenderer(prober)
    result = run(prober, target, module)
    om, om_type, _ = renderer.render(result, 0.1, OPENMETRICS)
    text, text_type, _ = renderer.render(result, 0.1, "")
    assert om_type.startswith("application/openmetrics-text")
    assert text_type.startswith("text/plain")
    from prometheus_client.exposition import choose_encoder

    for body, accept in ((om, OPENMETRICS), (text, "")):
        encoder, content_type = choose_encoder(accept)
        expected = encode([metrics.single("test_value", help_text, 1.0)], encoder, content_type)
        assert expected in body
    if '"' in help_text:
        assert b'A \\"quoted\\"' in om and b'A "quoted"' in text
        assert len(built) == 2
    else:
        assert len(built) == 1
    # The text kept for the probe history is the text format's, however it is made.
    assert renderer.render_with_text(result, 0.1, OPENMETRICS)[3] == text
    # Later probes of the same cached data build nothing more.
    renderer.render(run(prober, target, module), 0.1, OPENMETRICS)
    renderer.render(run(prober, target, module), 0.1, "")
    assert len(built) == (2 if '"' in help_text else 1)


def test_fresh_data_of_an_uncached_collector_is_not_kept_encoded(monkeypatch) -> None:
    """Only a cached collector's data can be served to a later scrape: the network probe's
    fresh data is encoded for its answer and not kept (nor compressed) beside it."""
    from citrix_license_exporter import metrics
    from citrix_license_exporter.collectors import registry
    from citrix_license_exporter.exposition import ProbeRenderer

    def families(data: Data, result: Any) -> Any:
        return [metrics.single("test_value", "A test value.", float(data.n))]

    monkeypatch.setattr(registry.get("probe"), "exposition", families)
    monkeypatch.setattr(registry.get("winrm"), "exposition", families)
    prober, _, _, target, module = setup(interval=900)
    renderer = ProbeRenderer(prober)
    body, _, _ = renderer.render(run(prober, target, module), 0.1, OPENMETRICS)
    assert body.count(b"citrix_license_test_value 1.0") == 2
    kept = {collector for collector, _, _ in renderer._encoded}
    assert kept == {"winrm"}
