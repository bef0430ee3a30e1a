"""The Grafana dashboard as data for tests: its panels, their PromQL with the dashboard's
variables substituted the way Grafana would, and the metric and recording-rule names in them."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "citrix-license.json"
SCHEMA = ROOT / "grafana" / "schema" / "dashboard.schema.json"
RULES_DIR = ROOT / "rules"

#: Grafana's own variables that may appear in queries, and what the tests put in their place.
#: $__rate_interval: Grafana uses max(4 x scrape interval, $__interval + scrape interval);
#: with the tests' 1s scrape interval 4s would do, 10s leaves room for a missed scrape.
BUILTINS = {"__rate_interval": "10s", "__interval": "1s", "__range": "5m"}

VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
RECORDING = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]*[a-zA-Z0-9_]\b")
IDENT = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b")
#: Identifiers that may stand in a query without being a metric name.
PROMQL_WORDS = frozenset(
    (
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
        "unless", "offset", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk",
        "bottomk", "quantile", "count_values", "group", "abs", "absent", "absent_over_time",
        "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week",
        "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor",
        "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate",
        "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
        "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
        "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
        "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time",
        "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
        "inf", "nan",
    )
)
#: Series Prometheus makes itself (not from the exporter).
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "ALERTS", "ALERTS_FOR_STATE"})


@functools.cache
def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(dashboard: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed children included; rows themselves too."""
    for item in (dashboard or load()).get("panels", []):
        yield item
        yield from item.get("panels", []) if item.get("type") == "row" else []


def data_panels(dashboard: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return [p for p in panels(dashboard) if p.get("type") != "row"]


def variables(dashboard: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in (dashboard or load())["templating"]["list"]}


def default_values(dashboard: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What each variable stands for in a query when the dashboard opens: multi-value
    variables at "All" (their ``allValue``), text boxes at their default."""
    values: dict[str, str] = {}
    for name, var in variables(dashboard).items():
        if var.get("includeAll") and var.get("allValue"):
            values[name] = var["allValue"]
        elif var["type"] == "textbox":
            values[name] = str(var["query"])
        else:
            current = var.get("current", {}).get("value")
            values[name] = current if isinstance(current, str) else ""
    return values


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$var``, ``${var}`` and ``[[var]]`` as Grafana does; unknown names raise."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name.isdigit():  # a regex group reference of label_replace: Grafana leaves it
            return match.group(0)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"unknown variable ${name} in {expr!r}")

    return VARIABLE.sub(replace, expr)


def variable_names(expr: str) -> set[str]:
    names = {next(g for g in m.groups() if g) for m in VARIABLE.finditer(expr)}
    return {name for name in names if not name.isdigit()}


@dataclass(frozen=True)
class Query:
    panel: str  # the panel title (or "annotation: NAME")
    ref: str
    expr: str  # as written in the dashboard
    instant: bool

    @property
    def label(self) -> str:
        return f"{self.panel} [{self.ref}]"

    def resolved(self, values: Mapping[str, str] | None = None) -> str:
        return substitute(self.expr, {**default_values(), **(values or {})})


def queries(dashboard: Mapping[str, Any] | None = None) -> list[Query]:
    """Every PromQL query of the dashboard: panel targets and annotation queries."""
    found = []
    for p in data_panels(dashboard):
        for t in p.get("targets", []):
            found.append(Query(p["title"], t.get("refId", "?"), t["expr"], bool(t.get("instant"))))
    for annotation in (dashboard or load()).get("annotations", {}).get("list", []):
        if "expr" in annotation:
            found.append(Query(f"annotation: {annotation['name']}", "-", annotation["expr"], False))
    return found


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, recording-rule names) a PromQL expression reads. Label matchers, label
    names in by/without/on/ignoring and string literals are not names of series."""
    text = STRING.sub('""', VARIABLE.sub("0", expr))
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # range and subquery durations
    recordings = set(RECORDING.findall(text))
    text = RECORDING.sub(" ", text)
    metrics = set()
    for match in IDENT.finditer(text):
        word = match.group(0)
        if word in PROMQL_WORDS or re.fullmatch(r"\d+\w*", word):
            continue
        following = text[match.end():].lstrip()
        if following.startswith("(") and word not in PROMETHEUS_SERIES:
            raise ValueError(f"unknown function {word!r} in {expr!r}")
        metrics.add(word)
    return metrics, recordings


def recording_rules(folder: Path = RULES_DIR) -> set[str]:
    """Names of the recording rules in rules/*.yml."""
    names = set()
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            continue
        for group in data.get("groups", []) or []:
            for rule in group.get("rules", []) or []:
                if "record" in rule:
                    names.add(rule["record"])
    return names


LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def label_values_query(query: str) -> tuple[str | None, str]:
    """Split Grafana's ``label_values(selector, label)`` into its selector and label."""
    match = LABEL_VALUES.match(query.strip())
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group(1), match.group(2)
