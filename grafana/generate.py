#!/usr/bin/env python3
"""Generate grafana/dashboards/citrix-license.json, the fleet dashboard.

    python grafana/generate.py           # rewrite the dashboard
    python grafana/generate.py --check   # exit 1 when the committed dashboard differs

The dashboard is code (as the monitoring mixins do with jsonnet) so that its colour thresholds
come from rules/thresholds.yml, the file the alerting rules are generated from: a panel turns
orange and red at the same values at which the alerts fire. Change a threshold there, run
`python rules/generate.py` and this script, and commit all of it; tests/unit/test_dashboard.py
fails while the two disagree.

Queries stay within what Prometheus 2.42 accepts (tests run every one of them against the real
Prometheus 2.42 that scraped the exporter and a simulated fleet).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = ROOT / "rules" / "thresholds.yml"
OUTPUT = ROOT / "grafana" / "dashboards" / "citrix-license.json"

UID = "citrix-license-fleet"
TITLE = "Citrix License Servers"  # slug: citrix-license-servers (alerts link to it)
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
EXPORTER_SEL = 'job=~"$exporter_job"'
DAY = 86400
DAYS = "suffix: days"

GREEN, ORANGE, RED, BLUE, TEXT = "green", "orange", "red", "blue", "text"

#: Defaults used when rules/thresholds.yml is missing a value (they equal the shipped file).
DEFAULTS: dict[str, Any] = {
    "update_deadline": {"warning_days": 30, "critical_days": 7},
    "telemetry": {"stale_warning_days": 2, "stale_critical_days": 7},
    "licenses": {
        "expiry_warning_days": 30,
        "expiry_critical_days": 7,
        "subscription_advantage_warning_days": 60,
        "usage_high_ratio": 0.9,
        "usage_full_ratio": 1.0,
    },
    "certificate": {"warning_days": 30, "critical_days": 7},
    "release_catalog": {"stale_days": 274},
    "links": {
        "runbook_base_url":
            "https://github.com/citrix-license-exporter/citrix-license-exporter/blob/main",
    },
}


@dataclass(frozen=True)
class Thresholds:
    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path = THRESHOLDS) -> Thresholds:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
        return cls(data if isinstance(data, dict) else {})

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".")
        value = (self.data.get(section) or {}).get(key)
        return DEFAULTS[section][key] if value is None else value

    def num(self, dotted: str) -> float | int:
        value = self.get(dotted)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"rules/thresholds.yml: {dotted} must be a number, not {value!r}")
        return int(value) if float(value).is_integer() else float(value)


# ---------------------------------------------------------------------------------------------
# Building blocks


def target(expr: str, ref: str = "A", legend: str = "", *, instant: bool = False,
           table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DS,
        "expr": " ".join(expr.split()),
        "refId": ref,
        "legendFormat": legend or "__auto",
        "instant": instant or table,
        "range": not (instant or table),
    }
    if table:
        t["format"] = "table"
    return t


def steps(*pairs: tuple[str, float | None], var: dict[int, str] | None = None) -> dict[str, Any]:
    """Absolute thresholds; ``var`` maps a step index to a variable the step follows (Grafana
    13 ``valueExpr``; older versions use the numeric ``value``, the variable's default)."""
    out = []
    for i, (color, value) in enumerate(pairs):
        step: dict[str, Any] = {"color": color, "value": value}
        if var and i in var:
            step["valueExpr"] = var[i]
        out.append(step)
    return {"mode": "absolute", "steps": out}


def days_left_steps(warning: float, critical: float,
                    var: dict[int, str] | None = None) -> dict[str, Any]:
    """Red up to ``critical`` days left (and past the date), orange up to ``warning``."""
    return steps((RED, None), (ORANGE, critical), (GREEN, warning), var=var)


def days_ago_steps(warning: float, critical: float) -> dict[str, Any]:
    return steps((GREEN, None), (ORANGE, warning), (RED, critical))


def mapping(values: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "value",
            "options": {
                key: {"text": text, "color": color, "index": i}
                for i, (key, (text, color)) in enumerate(values.items())
            },
        }
    ]


UP_DOWN = mapping({"1": ("up", GREEN), "0": ("down", RED)})
OK_FAILED = mapping({"1": ("succeeded", GREEN), "0": ("failed", RED)})
YES_NO = mapping({"1": ("yes", GREEN), "0": ("no", ORANGE)})
RUNNING = mapping({"1": ("running", GREEN), "0": ("not running", RED),
                   "-1": ("not installed", ORANGE)})
ACTIVE = mapping({"1": ("active", RED), "0": ("inactive", GREEN)})


def override(name: str, **props: Any) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key.replace("_", "."), "value": value}
                       for key, value in props.items()],
    }


@dataclass
class Layout:
    """Places panels left to right, top to bottom on Grafana's 24-column grid."""

    x: int = 0
    y: int = 0
    row_height: int = 0
    next_id: int = 1
    panels: list[dict[str, Any]] = field(default_factory=list)

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append({
            "type": "row", "title": title, "id": self._id(), "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
        })
        self.y += 1

    def newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], unit: str,
          *, thresholds: dict[str, Any] | None = None, mappings: list[Any] | None = None,
          overrides: list[dict[str, Any]] | None = None, options: dict[str, Any] | None = None,
          custom: dict[str, Any] | None = None, transformations: list[Any] | None = None,
          color_mode: str = "thresholds", **defaults: Any) -> dict[str, Any]:
    field_defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": thresholds or steps((GREEN, None)),
        "mappings": mappings or [],
        "color": {"mode": color_mode},
        **defaults,
    }
    if custom is not None:
        field_defaults["custom"] = custom
    result: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def stat(title: str, description: str, expr: str, thresholds: dict[str, Any],
         unit: str = "none") -> dict[str, Any]:
    return panel(
        "stat", title, description, [target(expr, instant=True)], unit,
        thresholds=thresholds,
        options={
            "colorMode": "background", "graphMode": "none", "justifyMode": "center",
            "textMode": "value", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                                   "values": False},
        },
        decimals=0,
    )


def timeseries(title: str, description: str, targets: list[dict[str, Any]], unit: str,
               *, thresholds: dict[str, Any] | None = None, stack: bool = False,
               show_thresholds: bool = False, **defaults: Any) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
        "showPoints": "never", "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if show_thresholds else "off"},
    }
    return panel(
        "timeseries", title, description, targets, unit, thresholds=thresholds, custom=custom,
        options={"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                            "calcs": ["lastNotNull"]},
                 "tooltip": {"mode": "multi", "sort": "desc"}},
        color_mode="palette-classic", **defaults,
    )


def state_timeline(title: str, description: str, expr: str, legend: str,
                   value_mappings: list[Any]) -> dict[str, Any]:
    return panel(
        "state-timeline", title, description, [target(expr, legend=legend)], "none",
        thresholds=steps((RED, None), (GREEN, 1)), mappings=value_mappings,
        custom={"fillOpacity": 80, "lineWidth": 0},
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                 "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
                 "tooltip": {"mode": "single", "sort": "none"}},
    )


def table(title: str, description: str, targets: list[dict[str, Any]], unit: str,
          *, overrides: list[dict[str, Any]], organize: dict[str, Any],
          sort_by: str | None = None, merge: bool = True,
          thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    transformations: list[dict[str, Any]] = []
    if merge:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": organize})
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm",
                               "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": False}]
    return panel(
        "table", title, description, targets, unit, thresholds=thresholds, overrides=overrides,
        options=options, transformations=transformations,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "filterable": False},
    )


def organize(rename: dict[str, str], hide: list[str], order: list[str]) -> dict[str, Any]:
    return {
        "excludeByName": dict.fromkeys(hide, True),
        "indexByName": {name: i for i, name in enumerate(order)},
        "renameByName": rename,
    }


def colored(cell: str = "color-text") -> dict[str, Any]:
    return {"type": cell}


# ---------------------------------------------------------------------------------------------
# The dashboard


def build(t: Thresholds) -> dict[str, Any]:
    warn_days = t.num("update_deadline.warning_days")
    crit_days = t.num("update_deadline.critical_days")
    tel_warn = t.num("telemetry.stale_warning_days")
    tel_crit = t.num("telemetry.stale_critical_days")
    lic_warn = t.num("licenses.expiry_warning_days")
    lic_crit = t.num("licenses.expiry_critical_days")
    sa_warn = t.num("licenses.subscription_advantage_warning_days")
    usage_high = t.num("licenses.usage_high_ratio")
    usage_full = t.num("licenses.usage_full_ratio")
    cert_warn = t.num("certificate.warning_days")
    cert_crit = t.num("certificate.critical_days")
    runbooks = str(t.get("links.runbook_base_url")).rstrip("/") + "/docs/runbooks.md"

    deadline_var = {1: "$critical_days", 2: "$warning_days"}
    # The deadline is a range (docs/catalog.md "Deadlines as ranges"): possibly late from the
    # earliest possible day, certainly late from the latest.
    days_remaining = f"instance:citrix_license_update_deadline:days_remaining{{{SEL}}}"
    days_remaining_latest = (
        f"instance:citrix_license_update_deadline_latest:days_remaining{{{SEL}}}"
    )
    deadline_words = f"citrix_license_server_update_deadline_info{{{SEL}}}"
    telemetry_days = f"instance:citrix_license_telemetry_last_success:days_ago{{{SEL}}}"
    usage_ratio = f"instance_feature:citrix_license_usage:ratio{{{SEL}}}"
    cert_expiry = "citrix_license_web_certificate_expiry_timestamp_seconds"
    cert_days = f"({cert_expiry}{{{SEL}}} - time()) / {DAY}"
    lic_days = f"(citrix_license_expiry_timestamp_seconds{{{SEL}}} - time()) / {DAY}"

    lay = Layout()

    # -- at a glance -----------------------------------------------------------------------
    lay.row("Fleet at a glance")
    zero_is_good = steps((GREEN, None), (RED, 1))
    zero_is_good_warn = steps((GREEN, None), (ORANGE, 1))
    lay.add(stat(
        "Servers down",
        "License Servers whose primary collector fails (citrix_license_up 0): the exporter "
        "cannot reach them. Alert: CitrixLicenseServerUnreachable.",
        f"count(citrix_license_up{{{SEL}}} == 0) or vector(0)", zero_is_good), 4, 4)
    lay.add(stat(
        "Update overdue",
        "License Servers past their update deadline even if the release that starts the clock "
        "came out on its latest possible day (Citrix: move to each new release within six "
        "months of its release, CTX477614). Alert: CitrixLicenseUpdateOverdue, critical.",
        f"count({days_remaining_latest} <= 0) or vector(0)", zero_is_good), 4, 4)
    lay.add(stat(
        "Update due within $warning_days days",
        "License Servers whose earliest possible update deadline is less than $warning_days "
        "days away or already passed, but not yet the latest (possibly overdue). Alerts: "
        "CitrixLicenseUpdateDeadlineApproaching, CitrixLicenseUpdateOverdue (warning).",
        f"count(({days_remaining} <= $warning_days) unless on (job, instance, rule) "
        f"({days_remaining_latest} <= 0)) or vector(0)", zero_is_good_warn), 4, 4)
    lay.add(stat(
        "Telemetry failing",
        f"License Servers whose last telemetry upload failed or whose last successful upload "
        f"is more than {tel_warn} days old. Alerts: CitrixLicenseTelemetryUploadFailing, "
        "CitrixLicenseTelemetryUploadStale.",
        f"count(max by (job, instance) ("
        f"(citrix_license_telemetry_last_attempt_success{{{SEL}}} == 0) "
        f"or ({telemetry_days} > {tel_warn}))) or vector(0)", zero_is_good), 4, 4)
    lay.add(stat(
        f"Licenses expiring within {lic_warn} days",
        f"License file entries that expire within {lic_warn} days or have expired (permanent "
        "licenses carry no expiry). Alert: CitrixLicenseExpiring.",
        f"count({lic_days} <= {lic_warn}) or vector(0)", zero_is_good_warn), 4, 4)
    lay.add(stat(
        "Servers watched",
        "License Servers the exporter probes for this selection (series of citrix_license_up).",
        f"count(citrix_license_up{{{SEL}}})", steps((BLUE, None))), 4, 4)

    # -- the fleet table -------------------------------------------------------------------
    fleet_targets = [
        target(f"max by (job, instance) (citrix_license_up{{{SEL}}})", "A", table=True),
        target(f"max by (job, instance, version, build) (citrix_license_server_info{{{SEL}}})",
               "B", table=True),
        target(f"max by (job, instance) (citrix_license_server_newer_releases{{{SEL}}})", "C",
               table=True),
        target(f"min by (job, instance) ({days_remaining})", "D", table=True),
        target(f"max by (job, instance, update) ({deadline_words})", "I", table=True),
        target(f"min by (job, instance) ({days_remaining_latest})", "J", table=True),
        # Onboarding to LAS is what the Delivery Controller's site reports, not the build.
        target(f"max by (job, instance, status) "
               f"(citrix_license_site_license_server_status{{{SEL}}} == 1)", "K", table=True),
        target(f"max by (job, instance) (instance:citrix_license_version_age:days{{{SEL}}})",
               "E", table=True),
        target(f"min by (job, instance) ({telemetry_days})", "F", table=True),
        target(f"max by (job, instance) (citrix_license_telemetry_last_attempt_success{{{SEL}}})",
               "G", table=True),
        target(f"max by (job, instance) (citrix_license_server_las_supported{{{SEL}}})", "H",
               table=True),
    ]
    instance_link = [{
        "title": "Show only ${__value.raw}",
        "url": f"/d/{UID}/citrix-license-servers"
               "?var-instance=${__value.raw}&${__url_time_range}",
    }]
    lay.add(table(
        "License Servers",
        "One row per License Server: running version and build, how many catalog releases are "
        "newer, when to update (a range where a release date is known only within bounds: "
        "the last day on time if that release came out on its earliest and on its latest "
        "possible day), days left until the earliest and the latest possible deadline (red "
        "within $critical_days days and after it, orange within $warning_days days: the alert "
        "bands), how old the running build is, "
        "when telemetry last uploaded successfully and how the last attempt ended, whether the "
        "exporter reaches it, and whether its build can use the License Activation Service "
        "(build 51000 or later; 53100 for offline activation). A capable build does not prove "
        "the server was onboarded to LAS: the LAS state the Delivery Controller's site reports "
        "(column LAS state, panel 'License Server status and caching mode') does, where a "
        "controller is configured. "
        "Click a name to "
        "show only that server.",
        fleet_targets, "none",
        overrides=[
            override("Server", links=instance_link),
            override("Reachable", mappings=UP_DOWN, custom_cellOptions=colored()),
            override("Releases behind", unit="none", decimals=0,
                     thresholds=steps((GREEN, None), (ORANGE, 1), (RED, 2)),
                     custom_cellOptions=colored()),
            override("Update deadline in", unit=DAYS, decimals=0,
                     thresholds=days_left_steps(warn_days, crit_days, deadline_var),
                     custom_cellOptions=colored("color-background")),
            override("Latest deadline in", unit=DAYS, decimals=0,
                     thresholds=days_left_steps(warn_days, crit_days, deadline_var),
                     custom_cellOptions=colored()),
            override("Version age", unit=DAYS, decimals=0),
            override("Last upload OK", unit=DAYS, decimals=1,
                     thresholds=days_ago_steps(tel_warn, tel_crit),
                     custom_cellOptions=colored(), noValue="never"),
            override("Last upload attempt", mappings=OK_FAILED, custom_cellOptions=colored()),
            override("LAS-capable build", mappings=YES_NO, custom_cellOptions=colored()),
        ],
        organize=organize(
            rename={"instance": "Server", "version": "Version", "build": "Build",
                    "Value #A": "Reachable", "Value #C": "Releases behind",
                    "Value #D": "Update deadline in", "Value #E": "Version age",
                    "Value #F": "Last upload OK", "Value #G": "Last upload attempt",
                    "Value #H": "LAS-capable build", "update": "Update",
                    "Value #J": "Latest deadline in", "status": "LAS state (site)"},
            hide=["Time", "job", "Value #B", "Value #I", "Value #K"],
            order=["instance", "Value #A", "version", "build", "Value #C", "update",
                   "Value #D", "Value #J", "Value #E", "Value #F", "Value #G", "Value #H",
                   "status"],
        ),
        sort_by="Update deadline in",
    ), 24, 9)

    # -- update deadline -------------------------------------------------------------------
    lay.row("Update deadline and versions")
    lay.add(panel(
        "bargauge", "Days until the update deadline",
        "Days left until each server's earliest possible update deadline (negative: possibly "
        "overdue; the License Servers table shows the latest possible one and the range in "
        "words), coloured by the $warning_days/$critical_days day variables. The deadline is "
        "the earliest of the policy rules (six months after each newer release; fixed "
        "minimum-build dates).",
        [target(f"min by (instance) ({days_remaining})", legend="{{instance}}", instant=True)],
        DAYS, thresholds=days_left_steps(warn_days, crit_days, deadline_var), decimals=0,
        options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                 "valueMode": "color", "namePlacement": "left",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    ), 12, 8)
    lay.add(timeseries(
        "Releases behind over time",
        "How many releases in the exporter's release catalog are newer than the running build; "
        "a step down is an upgrade.",
        [target(f"max by (instance) (citrix_license_server_newer_releases{{{SEL}}})",
                legend="{{instance}}")],
        "none", decimals=0,
    ), 12, 8)

    # -- licenses --------------------------------------------------------------------------
    lay.row("Licenses")
    lay.add(timeseries(
        "License usage per feature",
        "Licenses in use, purchased and installed (WMI Count, with the overdraft allowance) "
        "per server and feature (PLD, e.g. XDT_PLT_UD). Data from WMI, read at most every "
        "cache interval (15 minutes by default).",
        [target(f"sum by (instance, feature) (citrix_license_in_use{{{SEL}}})",
                "A", "{{instance}} {{feature}} in use"),
         target(f"sum by (instance, feature) (citrix_license_purchased{{{SEL}}})",
                "B", "{{instance}} {{feature}} purchased"),
         target(f"sum by (instance, feature) (citrix_license_installed{{{SEL}}})",
                "C", "{{instance}} {{feature}} installed")],
        "none", decimals=0,
    ), 12, 8)
    lay.add(timeseries(
        "License usage ratio",
        f"Licenses in use divided by licenses purchased, per server and feature (above 100 %: "
        f"overdraft in use). Dashed lines: "
        f"{usage_high:.0%} (CitrixLicenseUsageHigh) and {usage_full:.0%} (CitrixLicenseUsageFull).",
        [target(usage_ratio, legend="{{instance}} {{feature}}")],
        "percentunit", thresholds=steps((GREEN, None), (ORANGE, usage_high), (RED, usage_full)),
        show_thresholds=True, min=0,
    ), 12, 8)
    lay.add(timeseries(
        "Overdraft",
        "Per server and feature: licenses in use beyond those purchased (overdraft being "
        "consumed; alert CitrixLicenseOverdraftInUse) and the overdraft licenses the pools "
        "allow (WMI Overdraft).",
        [target(f"clamp_min(sum by (instance, feature) (citrix_license_in_use{{{SEL}}}) "
                f"- sum by (instance, feature) (citrix_license_purchased{{{SEL}}}), 0)",
                "A", "{{instance}} {{feature}} overdraft in use"),
         target(f"sum by (instance, feature) (citrix_license_overdraft{{{SEL}}})",
                "B", "{{instance}} {{feature}} overdraft allowed")],
        "none", decimals=0, min=0,
    ), 12, 8)
    lay.add(table(
        "License expiry",
        f"Every license file entry with an expiry date (permanent licenses are not listed): "
        f"orange within {lic_warn} days, red within {lic_crit} days and after expiry "
        "(CitrixLicenseExpiring).",
        [target(f"max by (instance, feature, serial) "
                f"(citrix_license_expiry_timestamp_seconds{{{SEL}}}) * 1000", "A", table=True),
         target(f"min by (instance, feature, serial) ({lic_days})", "B", table=True)],
        "none",
        overrides=[
            override("Expires", unit="dateTimeAsIsoNoDateIfToday"),
            override("Days left", unit=DAYS, decimals=0,
                     thresholds=days_left_steps(lic_warn, lic_crit),
                     custom_cellOptions=colored("color-background")),
        ],
        organize=organize(
            rename={"instance": "Server", "feature": "Feature", "serial": "Serial",
                    "Value #A": "Expires", "Value #B": "Days left"},
            hide=["Time"],
            order=["instance", "feature", "serial", "Value #A", "Value #B"],
        ),
        sort_by="Days left",
    ), 12, 8)
    lay.add(table(
        "Subscription Advantage dates",
        f"Subscription Advantage / Customer Success Services date per license pool: product "
        f"versions released after it are not covered. Orange within {sa_warn} days "
        "(CitrixLicenseSubscriptionAdvantageEnding).",
        [target(f"max by (instance, feature, pool) "
                f"(citrix_license_subscription_advantage_timestamp_seconds{{{SEL}}} > 0) * 1000",
                "A", table=True),
         target(f"min by (instance, feature, pool) "
                f"((citrix_license_subscription_advantage_timestamp_seconds{{{SEL}}} > 0) "
                f"- time()) / {DAY}", "B", table=True)],
        "none",
        overrides=[
            override("Subscription Advantage until", unit="dateTimeAsIsoNoDateIfToday"),
            override("Days left", unit=DAYS, decimals=0,
                     thresholds=steps((RED, None), (ORANGE, 0), (GREEN, sa_warn)),
                     custom_cellOptions=colored("color-background")),
        ],
        organize=organize(
            rename={"instance": "Server", "feature": "Feature", "pool": "Pool",
                    "Value #A": "Subscription Advantage until", "Value #B": "Days left"},
            hide=["Time"],
            order=["instance", "feature", "pool", "Value #A", "Value #B"],
        ),
        sort_by="Days left",
    ), 24, 8)

    # -- availability ----------------------------------------------------------------------
    lay.row("Ports, services and certificate")
    lay.add(state_timeline(
        "Licensing ports",
        "TCP connect to each licensing port by role (license_manager: lmadmin, default 27000; "
        "vendor_daemon: the CITRIX vendor daemon, default 7279; web_services: Web Services for "
        "Licensing, default 8083) at every scrape, with the port number probed. "
        "Alert: CitrixLicensePortDown.",
        f"max by (instance, role, port) (citrix_license_port_up{{{SEL}}})",
        "{{instance}} {{role}} :{{port}}", UP_DOWN), 8, 8)
    lay.add(state_timeline(
        "Windows services",
        "The watched licensing Windows services as WMI reports them (over WinRM, cached): "
        "running, installed but not running (alert CitrixLicenseServiceDown), or not "
        "installed (alert CitrixLicenseServiceMissing when the module requires it).",
        f"max by (instance, service) (citrix_license_service_up{{{SEL}}})\nor\n"
        f"-1 * max by (instance, service) "
        f'(citrix_license_service_state{{{SEL}, state="not_installed"}} == 1)',
        "{{instance}} {{service}}", RUNNING), 8, 8)
    lay.add(panel(
        "bargauge", "Web Services certificate: days left",
        f"Days until the TLS certificate of Web Services for Licensing (port 8083) expires: "
        f"orange within {cert_warn} days, red within {cert_crit} days and after expiry "
        "(CitrixLicenseWebCertificateExpiring).",
        [target(f"min by (instance) ({cert_days})", legend="{{instance}}", instant=True)],
        DAYS, thresholds=days_left_steps(cert_warn, cert_crit), decimals=0,
        options={"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                 "valueMode": "color", "namePlacement": "left",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    ), 8, 8)

    # -- telemetry -------------------------------------------------------------------------
    lay.row("Telemetry uploads")
    lay.add(timeseries(
        "Telemetry: days since the last successful upload",
        f"Age of the last successful licensing telemetry upload (log_ctxuploader.log). Uploads "
        f"run daily; dashed lines at {tel_warn} and {tel_crit} days "
        "(CitrixLicenseTelemetryUploadStale).",
        [target(telemetry_days, "A", "{{instance}}")],
        DAYS, thresholds=days_ago_steps(tel_warn, tel_crit), show_thresholds=True, decimals=1,
        min=0,
    ), 12, 8)
    lay.add(timeseries(
        "Telemetry: bundles waiting for upload",
        "Upload bundles waiting in LS\\resource\\usage (a failed upload leaves its bundle; a "
        "server reported by hand collects them until the next manual upload).",
        [target(f"max by (instance) (citrix_license_telemetry_pending_bundles{{{SEL}}})",
                legend="{{instance}}")],
        "none", decimals=0, min=0,
    ), 12, 8)

    # -- site ------------------------------------------------------------------------------
    lay.row("Site licensing state (Delivery Controller)")
    lay.add(state_timeline(
        "Grace periods",
        "Grace periods as the Delivery Controller site reports them: supplemental grace "
        "(all licenses in use, about 15 days of extra connections) and out-of-box grace. "
        "Alert: CitrixLicenseGracePeriodActive.",
        f"max by (instance, site) (citrix_license_site_supplemental_grace_active{{{SEL}}}) "
        f"or label_replace(max by (instance, site) "
        f"(citrix_license_site_out_of_box_grace_active{{{SEL}}}), "
        '"site", "$1 (out of box)", "site", "(.*)")',
        "{{instance}} {{site}}", ACTIVE), 12, 8)
    lay.add(state_timeline(
        "License Server status and caching mode",
        "The License Server status the site reports (LasCompatible and Compatible are "
        "ready; Inaccessible means the site runs in license caching mode). "
        "Alerts: CitrixLicenseCachingModeActive, CitrixLicenseActivationServiceNotReady.",
        f"max by (instance, site, status) "
        f"(citrix_license_site_license_server_status{{{SEL}}}) == 1",
        "{{instance}} {{site}}: {{status}}",
        mapping({"1": ("current", BLUE)})), 12, 8)

    # -- the exporter ----------------------------------------------------------------------
    lay.row("Exporter health")
    lay.add(state_timeline(
        "Collector success",
        "Whether each collector (probe: ports and certificate; winrm: WMI, services, version, "
        "telemetry) succeeded for each server. Alert: CitrixLicenseCollectorFailing.",
        f"max by (instance, collector) (citrix_license_collector_success{{{SEL}}})",
        "{{instance}} {{collector}}", OK_FAILED), 12, 8)
    lay.add(timeseries(
        "Collector duration",
        "How long each collector's last fetch took (for cached data: the fetch that produced "
        "it).",
        [target(f"max by (instance, collector) "
                f"(citrix_license_collector_duration_seconds{{{SEL}}})",
                legend="{{instance}} {{collector}}")],
        "s", min=0,
    ), 12, 8)
    lay.add(timeseries(
        "Probe scrape duration",
        "How long Prometheus' scrape of each /probe took (must stay below the scrape timeout).",
        [target(f"max by (instance) (scrape_duration_seconds{{{SEL}}})", legend="{{instance}}")],
        "s", min=0,
    ), 8, 8)
    lay.add(timeseries(
        "Probes per second",
        "Probes the exporter answered, by module and result, and probes refused because too "
        "many ran at once.",
        [target(f"sum by (module, result) "
                f"(rate(citrix_license_exporter_probes_total{{{EXPORTER_SEL}}}[$__rate_interval]))",
                "A", "{{module}} {{result}}"),
         target(f"sum(rate(citrix_license_exporter_probes_rejected_total{{{EXPORTER_SEL}}}"
                f"[$__rate_interval]))", "B", "rejected")],
        "reqps", min=0,
    ), 8, 8)
    lay.add(panel(
        "stat", "Configuration reload",
        "Whether the exporter's last configuration load succeeded (a failed reload keeps the "
        "previous configuration). Alert: CitrixLicenseExporterConfigReloadFailed.",
        [target(f"min(citrix_license_exporter_config_last_reload_successful{{{EXPORTER_SEL}}})",
                instant=True)],
        "none", thresholds=steps((RED, None), (GREEN, 1)),
        mappings=mapping({"1": ("succeeded", GREEN), "0": ("failed", RED)}),
        options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                 "justifyMode": "center",
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    ), 4, 4)
    lay.add(stat(
        "Release catalog age",
        "Days since the newest release in the exporter's release catalog. When it grows old "
        "Citrix has probably published a newer build: add it to the catalog. "
        "Alert: CitrixLicenseReleaseCatalogStale.",
        f"(time() - max(citrix_license_release_catalog_latest_release_timestamp_seconds"
        f"{{{EXPORTER_SEL}}})) / {DAY}",
        steps((GREEN, None), (ORANGE, t.num("release_catalog.stale_days"))),
        unit=DAYS,
    ), 4, 4)

    return {
        "uid": UID,
        "title": TITLE,
        "description": "Citrix License Servers, the whole fleet at a glance: update deadlines "
                       "(six-month rule), telemetry uploads, licenses, ports, services, "
                       "certificates, site grace states and the exporter's own health.",
        "tags": ["citrix", "citrix-license", "licensing"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "timezone": "utc",
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {"title": "Runbooks", "type": "link", "url": runbooks, "icon": "doc",
             "tooltip": "What each Citrix License alert means and what to do",
             "asDropdown": False, "includeVars": False, "keepTime": False, "tags": [],
             "targetBlank": True},
            {"title": "Citrix License dashboards", "type": "dashboards", "icon": "external link",
             "tooltip": "", "asDropdown": True, "includeVars": True, "keepTime": True,
             "tags": ["citrix-license"], "targetBlank": False},
        ],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
             "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
             "name": "Annotations & Alerts", "type": "dashboard"},
            {"datasource": DS, "enable": True, "hide": False, "iconColor": "red",
             "name": "Citrix License alerts",
             "expr": 'ALERTS{alertname=~"CitrixLicense.+", alertstate="firing", '
                     'instance=~"$instance"}',
             "step": "60s", "titleFormat": "{{alertname}}",
             "textFormat": "{{instance}} ({{severity}})", "tagKeys": "severity",
             "useValueForTime": False},
        ]},
        "templating": {"list": variables(warn_days, crit_days)},
        "panels": lay.panels,
    }


def variables(warn_days: float, crit_days: float) -> list[dict[str, Any]]:
    def query_var(name: str, label: str, query: str, description: str) -> dict[str, Any]:
        return {
            "name": name, "label": label, "type": "query", "datasource": DS,
            "description": description,
            "query": {"query": query, "refId": f"{name}-variable"},
            "definition": query, "refresh": 2, "sort": 1, "regex": "",
            "multi": True, "includeAll": True, "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0,
        }

    def days_var(name: str, label: str, value: float, description: str) -> dict[str, Any]:
        text = str(value)
        return {
            "name": name, "label": label, "type": "textbox", "query": text,
            "description": description, "hide": 0,
            "current": {"selected": False, "text": text, "value": text},
            "options": [{"selected": True, "text": text, "value": text}],
        }

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "regex": "", "hide": 0, "refresh": 1, "options": [],
         "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
         "description": "The Prometheus that scrapes the Citrix License exporter."},
        query_var("job", "Job", "label_values(citrix_license_up, job)",
                  "The scrape job(s) that probe License Servers (/probe)."),
        query_var("instance", "License Server",
                  'label_values(citrix_license_up{job=~"$job"}, instance)',
                  "License Servers (the target names of the exporter's configuration)."),
        query_var("exporter_job", "Exporter job",
                  "label_values(citrix_license_exporter_config_last_reload_successful, job)",
                  "The scrape job(s) of the exporter's own /metrics."),
        days_var("warning_days", "Deadline warning (days)", warn_days,
                 "Update deadlines fewer days away than this are orange. Default: the warning "
                 "band of CitrixLicenseUpdateDeadlineApproaching (rules/thresholds.yml)."),
        days_var("critical_days", "Deadline critical (days)", crit_days,
                 "Update deadlines fewer days away than this, and past ones, are red. Default: "
                 "the critical band of CitrixLicenseUpdateDeadlineApproaching."),
    ]


def render(thresholds: Thresholds | None = None) -> str:
    return json.dumps(build(thresholds or Thresholds.load()), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed dashboard is not what this script makes")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python grafana/generate.py",
                  file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
