"""Every query of the Grafana dashboard, variables substituted as Grafana would, against the real
Prometheus 2.42 that scraped the exporter and the simulated fleet (the shared e2e stack): each
must be valid and return data. A query that returns nothing fails with its panel's title."""

from __future__ import annotations

import time

import pytest

from ..support import dashboard as dash
from ..support.prometheus import Prometheus, PromQLError, wait_until
from ..support.stack import (
    Stack,
    job_names,
)

pytestmark = pytest.mark.timeout(180)


QUERIES = dash.queries()
FALLBACK = " or vector(0)"
#: Rules need an evaluation or two after the first scrape, alerts their `for`.
DATA_TIMEOUT = 45.0


def returns_data(prom: Prometheus, query: dash.Query, expr: str) -> bool:
    if query.instant:
        return bool(prom.query(expr))
    end = time.time()
    return bool(prom.query_range(expr, end - 60, end, 2))


@pytest.mark.parametrize("query", QUERIES, ids=[q.label for q in QUERIES])
def test_panel_query_returns_data(e2e_stack: Stack, query: dash.Query) -> None:
    prom = e2e_stack.prom
    exprs = [query.resolved()]
    if exprs[0].endswith(FALLBACK):
        # "or vector(0)" shows 0 instead of "No data" on a stat; the fleet has a server in
        # every counted state, so the count itself must find something too.
        exprs.append(exprs[0].removesuffix(FALLBACK))
    for expr in exprs:

        def has_data(expr: str = expr) -> bool:
            return returns_data(prom, query, expr)

        try:
            wait_until(has_data, DATA_TIMEOUT, f"data for panel {query.label!r}")
        except PromQLError as exc:
            pytest.fail(f"panel {query.label!r}: Prometheus rejects the query: {exc}")
        except AssertionError as exc:
            pytest.fail(f"panel {query.label!r} returns no data: {expr}\n{exc}")


def test_variable_queries_list_the_fleet(e2e_stack: Stack) -> None:
    prom = e2e_stack.prom
    variables = dash.variables()
    values = dash.default_values()
    expected = {
        "job": {job_names()["probe"]},
        "instance": {s.name for s in e2e_stack.scenarios},
        "exporter_job": {job_names()["exporter"]},
    }
    for name, wanted in expected.items():
        selector, label = dash.label_values_query(variables[name]["query"]["query"])
        assert selector is not None
        expr = dash.substitute(selector, values)

        def listed(expr: str = expr, label: str = label, wanted: set[str] = wanted) -> bool:
            return {r["metric"].get(label) for r in prom.query(expr)} >= wanted

        wait_until(listed, DATA_TIMEOUT, f"values of variable {name}")


def test_selecting_one_instance_filters_every_per_server_panel(e2e_stack: Stack) -> None:
    prom = e2e_stack.prom
    one = "e2e-overdue"
    checked = 0
    for query in QUERIES:
        if "$instance" not in query.expr or not query.instant:
            continue
        result = prom.query(query.resolved({"instance": one}))
        instances = {r["metric"]["instance"] for r in result if "instance" in r["metric"]}
        assert instances <= {one}, f"{query.label}: {instances}"
        checked += 1
    assert checked >= 10
