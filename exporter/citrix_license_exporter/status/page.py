"""The status page as HTML: a ``FleetStatus`` in, bytes out.

No JavaScript and no asset from elsewhere (the style sheet is inline; the page refreshes itself
with ``<meta http-equiv="refresh">``). Every value is HTML-escaped here; the whole page then
goes through the exporter's secret redaction like every other answer (web.py).
"""

from __future__ import annotations

import html
import time
from urllib.parse import urlencode

from .model import FleetStatus, RecentProbe, Row

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#1d2733;background:#fff}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%;font-size:.88em}
th,td{border:1px solid #cfd6de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.demo{background:#fff3cd;border:1px solid #e0c060;padding:.5em .8em;margin:.6em 0}
.state{font-weight:600;white-space:nowrap}
tr.overdue td{background:#fbd5d5}tr.overdue .state{color:#9b1c1c}
tr.down td{background:#e9d5f5}tr.down .state{color:#5b1f80}
tr.deadline-soon td{background:#fde8c8}tr.deadline-soon .state{color:#8a4b00}
tr.telemetry-failing td,tr.collector-failing td,tr.port-down td,tr.certificate-expiring td
{background:#fdf6c3}
tr.telemetry-failing .state,tr.collector-failing .state,tr.port-down .state,
tr.certificate-expiring .state{color:#6b5900}
tr.ok td{background:#e3f5e6}tr.ok .state{color:#1e6b30}
tr.never-probed td{background:#f1f1f1;color:#555}
tr.fail td{background:#fbe3e3}small{color:#4a5561}code{font-size:.95em}
.kind{display:inline-block;border:1px solid #9aa5b1;border-radius:3px;padding:0 .3em;
font-size:.85em;margin-right:.3em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;font-size:.9em}
dt{font-weight:600}dd{margin:0}
"""

#: Shown for a value that is not known (an en dash).
NONE = "\u2013"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time(ts: float | None) -> str:
    if ts is None:
        return NONE
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _date(ts: float | None) -> str:
    if ts is None:
        return NONE
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _link(path: str, text: str, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f'<a href="{_e(path + query)}">{_e(text)}</a>'


def _deadline(row: Row) -> str:
    if row.deadline is None:
        return NONE if row.up is not False else "unknown"
    span = _date(row.deadline - 1)  # the deadline instant is the end of the last good day
    if row.deadline_latest is not None and row.deadline_latest > row.deadline:
        span += f" … {_date(row.deadline_latest - 1)}"
    days = row.days_left or 0.0
    left = f"{-days:.0f} days overdue" if days <= 0 else f"{days:.0f} days left"
    return (f'{_e(span)}<br><small title="{_e(row.deadline_explanation or "")}">{_e(left)}; '
            f"{_e(row.deadline_rule or '')}</small>")


def _telemetry(row: Row, now: float) -> str:
    if row.telemetry_last_attempt_ok is None and row.telemetry_last_success is None:
        return NONE
    parts = []
    if row.telemetry_last_success is not None:
        parts.append(f"last upload {_age(now - row.telemetry_last_success)} ago")
    else:
        parts.append("no successful upload in the log")
    if row.telemetry_last_attempt_ok is not None:
        parts.append("last attempt " + ("succeeded" if row.telemetry_last_attempt_ok
                                        else "FAILED"))
    if row.telemetry_manual:
        parts.append("manual reporting")
    return "<br>".join(_e(p) for p in parts)


def _usage(row: Row) -> str:
    if not row.usage:
        return NONE
    return "<br>".join(
        f"{_e(u.product)}: {u.in_use} / {u.installed}" for u in row.usage
    )


def _reason(row: Row) -> str:
    if row.up is None:
        return "never probed since the exporter started"
    parts = []
    if row.reason:
        kind = f'<span class="kind">{_e(row.kind)}</span> ' if row.kind else ""
        parts.append(kind + _e(row.reason))
    failing = [c for c in row.collectors if not c.success and row.reason
               and not row.reason.startswith(c.name + ":")]
    for collector in failing:
        kind = f'<span class="kind">{_e(collector.kind)}</span> ' if collector.kind else ""
        parts.append(kind + _e(f"{collector.name}: {collector.error}"))
    return "<br>".join(parts) or NONE


def _row(row: Row, now: float) -> str:
    links = [_link("probe", "metrics", target=row.name),
             _link("probe", "debug", target=row.name, debug="true")]
    if row.probe_id is not None:
        links.append(_link("logs", "last log", id=str(row.probe_id)))
    version = NONE
    if row.version:
        version = _e(row.version)
    probed = "never" if row.probed_at is None else (
        f"{_e(_time(row.probed_at))}<br><small>{_age(now - row.probed_at)} ago, "
        f"took {row.duration or 0:.2f} s</small>"
    )
    up = {True: "up", False: "DOWN", None: NONE}[row.up]
    return (
        f'<tr class="{_e(row.state)}" data-target="{_e(row.name)}" data-state="{_e(row.state)}">'
        f'<td><strong>{_e(row.name)}</strong><br><small>{_e(row.address)} · '
        f"{_e(row.module)}</small></td>"
        f'<td class="state">{_e(row.state_text)}<br><small>{up}</small></td>'
        f"<td>{_reason(row)}</td>"
        f"<td>{version}</td>"
        f"<td>{_deadline(row)}</td>"
        f"<td>{_telemetry(row, now)}</td>"
        f"<td>{_usage(row)}</td>"
        f"<td>{_e(_date(row.certificate_expiry))}</td>"
        f"<td>{probed}</td>"
        f"<td>{' · '.join(links)}</td></tr>"
    )


def _recent(probe: RecentProbe) -> str:
    result = "success" if probe.up else "failure"
    kind = f'<span class="kind">{_e(probe.kind)}</span> ' if probe.kind else ""
    return (
        f'<tr class="{"" if probe.up else "fail"}"><td>{_e(_time(probe.started))}</td>'
        f"<td>{_e(probe.target)}</td><td>{_e(probe.module)}</td><td>{result}</td>"
        f"<td>{kind}{_e(probe.reason or '')}</td>"
        f'<td class="num">{probe.duration:.3f} s</td>'
        f"<td>{_link('logs', 'log', id=str(probe.id))}</td></tr>"
    )


def _exporter(status: FleetStatus) -> str:
    info = status.exporter
    reload = ("successful" if info.reload_ok else "FAILED (the previous configuration is kept)")
    sources = ", ".join(f"{origin}: {count}" for origin, count in info.catalog_sources) or NONE
    if info.refresh_sources:
        refreshed = ("never yet" if info.refresh_ok is None else
                     ("ok" if info.refresh_ok else "FAILING (last good catalogs kept)"))
        refresh = (f"{_e(', '.join(info.refresh_sources))}: last attempt {_e(refreshed)}, "
                   f"last success {_e(_time(info.refresh_time) if info.refresh_time else NONE)}")
    else:
        refresh = "none configured (bundled catalog and catalog.releases only)"
    return (
        "<dl>"
        f"<dt>Version</dt><dd>{_e(info.version)}</dd>"
        f"<dt>Configuration</dt><dd><code>{_e(info.config_path)}</code>: last load {reload}, "
        f"last success {_e(_time(info.reload_time))}</dd>"
        f"<dt>Release catalog</dt><dd>newest release {_e(info.catalog_latest or NONE)}; "
        f"releases by source: {_e(sources)}</dd>"
        f"<dt>Catalog sources</dt><dd>{refresh}</dd>"
        "</dl>"
    )


def render_status(status: FleetStatus) -> bytes:
    now = status.now
    demo = (
        '<p class="demo"><strong>DEMO:</strong> every target below is a SIMULATED License '
        "Server running inside this process on 127.0.0.1. No real Citrix server is "
        "contacted.</p>" if status.demo else ""
    )
    counts: dict[str, int] = {}
    for row in status.rows:
        counts[row.state_text] = counts.get(row.state_text, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no targets configured"
    rows = "\n".join(_row(row, now) for row in status.rows) or (
        '<tr><td colspan="10">no targets configured</td></tr>'
    )
    recent = "\n".join(_recent(p) for p in status.recent) or (
        '<tr><td colspan="7">no probe yet</td></tr>'
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{status.refresh_seconds}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Citrix License Exporter: fleet status</title><style>{STYLE}</style></head><body>
<h1>Citrix License Exporter</h1>{demo}
<p>Fleet status at {_e(_time(now))}: {_e(summary)}. Each row shows the target's most recent
probe (Prometheus' scrapes, or the links on the right). Sorted by urgency: update overdue,
down, soonest update deadline, failing telemetry. Links: <a href="metrics">exporter
metrics</a> · <a href="-/healthy">/-/healthy</a> · <a href="-/ready">/-/ready</a>.</p>
<h2>Targets</h2>
<table id="targets"><thead><tr><th>target</th><th>state</th><th>reason</th>
<th>version</th><th>update deadline</th><th>telemetry</th><th>licenses in use / installed</th>
<th>certificate expiry</th><th>probed</th><th>links</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Exporter</h2>
{_exporter(status)}
<h2>Recent probes</h2>
<p><small>The last {len(status.recent)} probes, newest first (at most 100 are kept).</small></p>
<table id="recent"><thead><tr><th>time</th><th>target</th><th>module</th><th>result</th>
<th>reason</th><th>duration</th><th>log</th></tr></thead>
<tbody>
{recent}
</tbody></table>
</body></html>
"""
    return page.encode("utf-8")
