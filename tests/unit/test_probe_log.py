"""The per-probe log (probelog.py) and the probe history (history.py): what is captured from
which thread or task, and the bounds on memory."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from typing import Any

from citrix_license_exporter import history as history_module
from citrix_license_exporter import probelog
from citrix_license_exporter.citrix.catalog import load_bundled
from citrix_license_exporter.citrix.policy import PolicyConfig
from citrix_license_exporter.collectors.base import CollectorError, Deadline, FailureKind
from citrix_license_exporter.config import ModuleConfig, Secret, TargetConfig
from citrix_license_exporter.history import ProbeHistory
from citrix_license_exporter.metrics import probe_families
from citrix_license_exporter.probe import Prober, ProbeResult

log = logging.getLogger("citrix_license_exporter.test")


def test_lines_of_worker_threads_with_a_copied_context_are_captured() -> None:
    with probelog.capture() as probe_log:
        log.info("in the probe")
        copied = threading.Thread(target=contextvars.copy_context().run,
                                  args=(log.debug, "in a copied thread"))
        bare = threading.Thread(target=log.warning, args=("in a bare thread",))
        for thread in (copied, bare):
            thread.start()
            thread.join()
    log.info("after the probe")
    text = "\n".join(probe_log.lines)
    assert 'msg="in the probe"' in text and 'msg="in a copied thread"' in text
    # A raw thread starts with an empty context: not this probe's line.
    assert "bare thread" not in text and "after the probe" not in text


def test_asyncio_tasks_of_two_probes_keep_their_own_lines() -> None:
    async def one(name: str) -> tuple[str, ...]:
        with probelog.capture() as probe_log:
            for step in range(3):
                log.debug("step", extra={"fields": {"probe": name, "step": step}})
                await asyncio.sleep(0)
            await asyncio.to_thread(log.debug, f"from a worker of {name}")
        return probe_log.lines

    async def both() -> list[tuple[str, ...]]:
        return list(await asyncio.gather(one("a"), one("b")))

    a, b = asyncio.run(both())
    assert len(a) == len(b) == 4
    assert all("probe=a" in line or "worker of a" in line for line in a)
    assert all("probe=b" in line or "worker of b" in line for line in b)


def test_debug_lines_are_captured_while_stderr_shows_info(caplog: Any) -> None:
    from citrix_license_exporter.log import setup_logging

    setup_logging("info")
    try:
        handler = logging.getLogger().handlers[0]
        with probelog.capture() as probe_log:
            log.debug("a detail")
        assert any("a detail" in line for line in probe_log.lines)
        assert handler.level == logging.INFO  # stderr still filters debug lines
    finally:
        logging.getLogger().handlers.clear()


def test_a_probe_log_is_bounded() -> None:
    with probelog.capture() as probe_log:
        for n in range(probelog.MAX_LINES + 50):
            log.info("x" * 10_000, extra={"fields": {"n": n}})
    lines = probe_log.lines
    assert len(lines) == probelog.MAX_LINES + 1
    assert lines[-1] == f"[50 more lines dropped: at most {probelog.MAX_LINES} per probe]"
    assert all(len(line) <= probelog.MAX_LINE_CHARS + 60 for line in lines)


def test_captured_lines_are_scrubbed_of_secrets() -> None:
    secret = Secret("Log-Canary-93be1f")  # registering a secret makes redact() know it
    with probelog.capture() as probe_log:
        log.warning("peer echoed %s", secret.reveal())
    assert "Log-Canary-93be1f" not in "\n".join(probe_log.lines)


class Failing:
    name = "probe"
    cached = False

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def collect(self, target: TargetConfig, module: ModuleConfig, deadline: Deadline) -> Any:
        log.info("about to fail")
        raise self.exc


def probe_with(exc: Exception) -> ProbeResult:
    module = ModuleConfig(name="m", collectors=("probe",), primary="probe")
    target = TargetConfig(name="t", address="127.0.0.1", module="m")
    probe = Prober({"probe": Failing(exc)}).probe(target, module, Deadline.after(5),
                                                  load_bundled(), PolicyConfig())
    if inspect.isawaitable(probe):  # the engine on an event loop

        async def wait() -> ProbeResult:
            return await probe

        return asyncio.run(wait())
    return probe


def test_an_unexpected_exception_is_the_internal_kind() -> None:
    result = probe_with(RuntimeError("a bug"))
    outcome = result.outcome("probe")
    assert outcome is not None and outcome.kind is FailureKind.INTERNAL
    assert outcome.error == "RuntimeError: a bug"
    families = {f.name: f for f in probe_families(result)}
    failure = {s.labels["kind"]: s.value for s in families[
        "citrix_license_collector_failure"].samples}
    assert failure["internal"] == 1 and sum(failure.values()) == 1


def test_the_collector_kind_reaches_the_outcome() -> None:
    outcome = probe_with(CollectorError("too big", kind=FailureKind.LIMIT)).outcome("probe")
    assert outcome is not None and outcome.kind is FailureKind.LIMIT


def record(history: ProbeHistory, name: str = "t", metrics: str = "m 1\n",
           lines: tuple[str, ...] = ("a line",)) -> Any:
    return history.record(probe_with(CollectorError("down", kind=FailureKind.REFUSED))
                          if name == "down" else _ok(name),
                          lines=lines, metrics=metrics, duration=0.1, deadline=5.0)


def _ok(name: str) -> ProbeResult:
    from citrix_license_exporter.probe import Outcome

    module = ModuleConfig(name="m", collectors=("probe",), primary="probe")
    target = TargetConfig(name=name, address="127.0.0.1", module="m")
    return ProbeResult(target, module, (Outcome("probe", True, 0.1, data=None),))


def test_history_keeps_the_last_probes_newest_first() -> None:
    history = ProbeHistory(max_probes=100)
    records = [record(history, f"t{n}") for n in range(150)]
    recent = history.recent()
    assert len(recent) == 100
    assert [r.id for r in recent] == [r.id for r in reversed(records[50:])]
    assert history.get(records[0].id) is None
    assert history.get(records[-1].id) == records[-1]


def test_history_is_bounded_in_bytes() -> None:
    history = ProbeHistory(max_probes=100, max_bytes=10_000)
    for n in range(20):
        record(history, f"t{n}", metrics="x" * 3_000)
    assert history.bytes <= 10_000
    assert len(history.recent()) == 3


def test_one_record_keeps_at_most_its_share_of_metrics(monkeypatch: Any) -> None:
    monkeypatch.setattr(history_module, "MAX_METRICS_CHARS", 100)
    history = ProbeHistory()
    kept = record(history, metrics="y" * 1_000)
    assert len(kept.metrics) < 200 and kept.metrics.endswith("keeps]\n")


def test_latest_per_target_holds_the_result_without_text() -> None:
    history = ProbeHistory(max_probes=1)
    first = record(history, "a", lines=("l",) * 50)
    record(history, "b")
    latest = history.latest("a")
    assert latest is not None and latest.id == first.id
    assert latest.result is not None and latest.lines == () and latest.metrics == ""
    history.forget_except({"b"})
    assert history.latest("a") is None and history.latest("b") is not None


def test_reason_and_kind_of_a_failed_probe() -> None:
    history = ProbeHistory()
    kept = record(history, "down")
    assert not kept.up and kept.kind is FailureKind.REFUSED
    assert kept.reason == "probe: down"
    text = kept.debug_text()
    assert text.startswith("Logs for the probe (id ")
    assert "\n\nMetrics that would have been returned:\nm 1\n" in text


def test_timestamps_follow_the_record_across_seconds() -> None:
    """log.py keeps the text of the last second formatted: a record of another second, earlier
    or later, gets its own."""
    from citrix_license_exporter.log import LogfmtFormatter

    formatter = LogfmtFormatter()

    def stamp(created: float) -> str:
        record = logging.LogRecord("citrix_license_exporter.t", logging.INFO, "f", 1, "m",
                                   None, None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        return formatter.format(record).split(" ")[0]

    assert stamp(0.5) == "ts=1970-01-01T00:00:00.500Z"
    assert stamp(86_400.25) == "ts=1970-01-02T00:00:00.250Z"
    assert stamp(86_400.75) == "ts=1970-01-02T00:00:00.750Z"
    assert stamp(0.0) == "ts=1970-01-01T00:00:00.000Z"


def test_values_are_quoted_as_before() -> None:
    from citrix_license_exporter.log import _logfmt_value

    assert _logfmt_value("plain") == "plain"
    assert _logfmt_value(1.5) == "1.5"
    assert _logfmt_value("") == '""'
    for raw, quoted in (("a b", '"a b"'), ("a=b", '"a=b"'), ('a"b', '"a\\"b"'),
                        ("a\\b", '"a\\\\b"'), ("a\nb", '"a\\nb"'), ("a\tb", '"a\tb"')):
        assert _logfmt_value(raw) == quoted


def test_lines_past_the_bound_are_counted_not_formatted(monkeypatch: Any) -> None:
    formatted: list[str] = []
    probelog.install()
    assert probelog._installed is not None
    formatter = probelog._installed.formatter
    assert formatter is not None
    original = formatter.format

    def counting(record: logging.LogRecord) -> str:
        formatted.append(record.getMessage())
        return original(record)

    monkeypatch.setattr(formatter, "format", counting)
    with probelog.capture() as probe_log:
        for n in range(probelog.MAX_LINES + 30):
            log.debug("line %d", n)
    assert len(formatted) == probelog.MAX_LINES
    assert probe_log.lines[-1] == f"[30 more lines dropped: at most {probelog.MAX_LINES} per probe]"
