"""What the exporter remembers of its probes: the last ``MAX_PROBES`` (with their log lines and
the metrics they answered, for ``/logs?id=`` and the status page) and the latest result of
each configured target (for the status page's fleet table).

Memory is bounded three ways: at most ``MAX_PROBES`` records, at most ``MAX_BYTES`` of log and
metrics text over all of them (the oldest go first), and at most ``MAX_METRICS_CHARS`` of
metrics text per record. The latest-result table holds one entry per configured target name
(its result, without log and metrics text); ``forget_except`` drops targets a reload removed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from .collectors.base import FailureKind
from .config import redact
from .probe import ProbeResult

MAX_PROBES = 100
MAX_BYTES = 8 * 1024 * 1024
MAX_METRICS_CHARS = 256 * 1024
#: A guard for targets probed without being configured (allow_unlisted_targets): they are in
#: the recent probes, but only configured targets have a row of their own.
MAX_TARGETS = 10_000


@dataclass(frozen=True)
class ProbeRecord:
    id: int
    target: str
    module: str
    started: float  # Unix seconds
    duration: float
    up: bool
    reason: str | None  # the first failure's reason (the primary collector's when down)
    kind: FailureKind | None
    deadline: float  # seconds the probe was given
    deadline_reason: str
    lines: tuple[str, ...]
    metrics: str
    result: ProbeResult | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return sum(len(line) for line in self.lines) + len(self.metrics)

    def debug_text(self) -> str:
        """What ``/probe?debug=true`` answers (blackbox_exporter's layout)."""
        return (
            f"Logs for the probe (id {self.id}, target {self.target}, module {self.module}):\n"
            + "".join(line + "\n" for line in self.lines)
            + "\n\nMetrics that would have been returned:\n"
            + self.metrics
        )


def first_failure(result: ProbeResult) -> tuple[str | None, FailureKind | None]:
    """The reason and kind to show for a probe: the primary collector's failure, else the
    first failing collector's, else none."""
    failed = [o for o in result.outcomes if not o.success]
    primary = next((o for o in failed if o.collector == result.module.primary), None)
    chosen = primary or (failed[0] if failed else None)
    if chosen is None:
        return None, None
    return f"{chosen.collector}: {chosen.error}", chosen.kind or FailureKind.INTERNAL


class ProbeHistory:
    def __init__(self, max_probes: int = MAX_PROBES, max_bytes: int = MAX_BYTES) -> None:
        self.max_probes = max_probes
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recent: OrderedDict[int, ProbeRecord] = OrderedDict()
        self._bytes = 0
        self._latest: dict[str, ProbeRecord] = {}

    def record(
        self,
        result: ProbeResult,
        *,
        lines: tuple[str, ...],
        metrics: str,
        duration: float,
        deadline: float,
        deadline_reason: str = "",
        configured: bool = True,
        started: float | None = None,
    ) -> ProbeRecord:
        if len(metrics) > MAX_METRICS_CHARS:
            metrics = metrics[:MAX_METRICS_CHARS] + "\n# [cut: more than the history keeps]\n"
        reason, kind = first_failure(result)
        with self._lock:
            record = ProbeRecord(
                id=next(self._ids),
                target=result.target.name,
                module=result.module.name,
                started=started if started is not None else time.time() - duration,
                duration=duration,
                up=result.up,
                reason=redact(reason) if reason else None,
                kind=kind,
                deadline=deadline,
                deadline_reason=deadline_reason,
                lines=lines,
                metrics=metrics,
            )
            self._recent[record.id] = record
            self._bytes += record.size
            while self._recent and (
                len(self._recent) > self.max_probes or self._bytes > self.max_bytes
            ):
                _, old = self._recent.popitem(last=False)
                self._bytes -= old.size
            if configured:
                if record.target not in self._latest and len(self._latest) >= MAX_TARGETS:
                    self._latest.clear()
                # The row of the status page: the result, without the text (that stays in
                # the recent list for as long as the list keeps it).
                self._latest[record.target] = replace(record, lines=(), metrics="",
                                                      result=result)
        return record

    def recent(self) -> list[ProbeRecord]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._recent.values()))

    def get(self, probe_id: int) -> ProbeRecord | None:
        with self._lock:
            return self._recent.get(probe_id)

    def latest(self, target: str) -> ProbeRecord | None:
        with self._lock:
            return self._latest.get(target)

    def forget_except(self, targets: set[str]) -> None:
        with self._lock:
            for name in [n for n in self._latest if n not in targets]:
                del self._latest[name]

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes
