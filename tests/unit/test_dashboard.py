"""The Grafana dashboard, checked without a Grafana server: against a JSON Schema generated from
Grafana's published types, for the conventions of the monitoring mixins, against the mixin's
_config (the values the alerts use), and its PromQL against promtool and the exporter's real
output."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ..support import dashboard as dash
from ..support import mixin
from ..support.exposition import exported_metric_names

ROOT = dash.ROOT
PROVISIONING = ROOT / "grafana" / "provisioning"


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(dash.DASHBOARD.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(dash.SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def settings() -> dict[str, Any]:
    return mixin.config()


# ---------------------------------------------------------------------------------------------
# Schema and generation


def test_dashboard_matches_grafana_schema(board: dict[str, Any], validator: Any) -> None:
    errors = sorted(validator.iter_errors(board), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20]
    )


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("schemaVersion",), "39"),  # a string where Grafana has a number
        (("panels", 1, "gridPos", "h"), "4"),
        (("templating", "list", 1, "type"), "dropdown"),  # not a VariableType
        (("panels", 1, "fieldConfig", "defaults", "thresholds", "mode"), "relative-ish"),
    ],
)
def test_schema_catches_broken_dashboards(
    board: dict[str, Any], validator: Any, path: tuple[Any, ...], bad: str
) -> None:
    """The generated schema is strict enough to matter (a control for the test above)."""
    broken = copy.deepcopy(board)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    assert list(validator.iter_errors(broken))


def test_committed_dashboards_are_the_rendered_mixin(tmp_path: Path) -> None:
    """jsonnet renders the dashboards from monitoring/ (the mixin's grafanaDashboards), byte for
    byte as monitoring/render.sh writes them; rerun that after a _config change."""
    subprocess.run([mixin.jsonnet_binary(), "-J", str(ROOT), "-m", str(tmp_path),
                    str(ROOT / "monitoring" / "dashboards.jsonnet")],
                   check=True, capture_output=True, timeout=120)
    rendered = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text(encoding="utf-8")
                 for p in dash.DASHBOARD.parent.glob("*.json")}
    assert rendered == committed, (
        "grafana/dashboards/citrix-license.json is out of date: run monitoring/render.sh"
    )


def test_overridden_config_changes_the_dashboard() -> None:
    """Another threshold and uid in _config: the colours and the links follow them."""
    changed = mixin.dashboards("{ licenseExpiryWarningDays: 45, dashboardUID: 'citrix', "
                               "updateDeadlineWarningDays: 21, "
                               "runbookURLBase: 'https://wiki.example.com/runbooks' }"
                               )["citrix-license.json"]
    default = mixin.dashboards()["citrix-license.json"]
    assert (default["uid"], changed["uid"]) == ("citrix-license-fleet", "citrix")
    titles = {p["title"] for p in dash.data_panels(changed)}
    assert "Licenses expiring within 45 days" in titles
    assert "Licenses expiring within 30 days" in {p["title"] for p in dash.data_panels(default)}
    assert dash.default_values(changed)["warning_days"] == "21"
    fleet = next(p for p in dash.data_panels(changed) if p["title"] == "License Servers")
    link = fleet["fieldConfig"]["overrides"][0]["properties"][0]["value"][0]["url"]
    assert link.startswith("/d/citrix/citrix-license-servers?")
    assert changed["links"][0]["url"] == "https://wiki.example.com/runbooks"


def test_schema_generator_pins_its_versions() -> None:
    package = json.loads((ROOT / "grafana/schema/package.json").read_text(encoding="utf-8"))
    lock = json.loads((ROOT / "grafana/schema/package-lock.json").read_text(encoding="utf-8"))
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    script = (ROOT / "grafana/schema/generate.sh").read_text(encoding="utf-8")
    assert "npm ci" in script
    assert "--type Dashboard" in script


# ---------------------------------------------------------------------------------------------
# Conventions


def test_identity_and_no_import_placeholders(board: dict[str, Any]) -> None:
    assert board["uid"] == "citrix-license-fleet"
    assert board["title"] == "Citrix License Servers"
    assert {"citrix", "citrix-license"} <= set(board["tags"])
    assert "__inputs" not in board and "__requires" not in board
    text = json.dumps(board)
    assert "${DS_" not in text, "import placeholders make provisioning fail"
    assert board.get("id") is None


def test_alerts_link_to_this_dashboard(board: dict[str, Any]) -> None:
    slug = re.sub(r"[^a-z0-9]+", "-", board["title"].lower()).strip("-")
    assert settings()["dashboardUID"] == board["uid"]
    urls = {r["annotations"]["dashboard_url"].split("?")[0]
            for g in yaml.safe_load(dash.ROOT.joinpath("rules/citrix-license.rules.yml")
                                    .read_text(encoding="utf-8"))["groups"]
            for r in g["rules"] if "alert" in r}
    assert urls == {settings()["dashboardURLBase"].rstrip("/") + f"/d/{board['uid']}/{slug}"}
    assert "instance" in dash.variables(board), "alerts link with ?var-instance=..."


def test_variables(board: dict[str, Any]) -> None:
    variables = dash.variables(board)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        var = variables[name]
        assert var["type"] == "query"
        assert var["multi"] is True and var["includeAll"] is True, name
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        dash.label_values_query(var["query"]["query"])
    assert "$job" in variables["instance"]["query"]["query"], "instance follows job"


def test_threshold_variables_default_to_the_alert_thresholds(board: dict[str, Any]) -> None:
    c = settings()
    values = dash.default_values(board)
    assert float(values["warning_days"]) == c["updateDeadlineWarningDays"]
    assert float(values["critical_days"]) == c["updateDeadlineCriticalDays"]


def test_deadline_colours_follow_the_variables(board: dict[str, Any]) -> None:
    c = settings()
    seen = 0
    for panel in dash.data_panels(board):
        configs = [panel["fieldConfig"]["defaults"]] + [
            {p["id"]: p["value"] for p in o["properties"]}
            for o in panel["fieldConfig"]["overrides"]
        ]
        for config in configs:
            steps = (config.get("thresholds") or {}).get("steps", [])
            exprs = {s.get("valueExpr"): s["value"] for s in steps if s.get("valueExpr")}
            if exprs:
                seen += 1
                assert exprs == {"$critical_days": c["updateDeadlineCriticalDays"],
                                 "$warning_days": c["updateDeadlineWarningDays"]}, panel["title"]
    assert seen >= 2, "the fleet table and the deadline bars colour by the variables"


def test_other_colours_follow_the_alert_thresholds(board: dict[str, Any]) -> None:
    t = settings()
    by_title = {p["title"]: p for p in dash.data_panels(board)}

    def override_steps(title: str, column: str) -> list[float | None]:
        for o in by_title[title]["fieldConfig"]["overrides"]:
            if o["matcher"]["options"] == column:
                props = {p["id"]: p["value"] for p in o["properties"]}
                return [s["value"] for s in props["thresholds"]["steps"]]
        raise AssertionError(f"{title}: no override for {column}")

    assert override_steps("License expiry", "Days left") == [
        None, t["licenseExpiryCriticalDays"], t["licenseExpiryWarningDays"]]
    assert override_steps("License Servers", "Last upload OK") == [
        None, t["telemetryStaleWarningDays"], t["telemetryStaleCriticalDays"]]
    ratio = by_title["License usage ratio"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in ratio] == [
        None, t["usageHighRatio"], t["usageFullRatio"]]
    cert = by_title["Web Services certificate: days left"]["fieldConfig"]["defaults"]
    assert [s["value"] for s in cert["thresholds"]["steps"]] == [
        None, t["certificateCriticalDays"], t["certificateWarningDays"]]


def test_every_panel_has_title_description_unit_and_datasource(board: dict[str, Any]) -> None:
    problems = []
    for panel in dash.data_panels(board):
        title = panel.get("title") or f"panel {panel.get('id')}"
        if not panel.get("title"):
            problems.append(f"{title}: no title")
        if len(panel.get("description", "")) < 40:
            problems.append(f"{title}: no real description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{title}: no unit")
        if panel.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"{title}: datasource is not the $datasource variable")
        if not panel.get("targets"):
            problems.append(f"{title}: no query")
        for target in panel.get("targets", []):
            if target.get("datasource") != panel.get("datasource"):
                problems.append(f"{title} [{target.get('refId')}]: datasource differs")
    assert not problems, "\n".join(problems)


def test_panel_ids_unique_and_layout_fits_without_overlap(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in dash.panels(board)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dash.panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_required_panels_exist(board: dict[str, Any]) -> None:
    """What the issue asks for, by panel title."""
    titles = {p["title"] for p in dash.data_panels(board)}
    for wanted in [
        "License Servers", "Servers down", "Update overdue",
        "Update due within $warning_days days", "Telemetry failing", "Servers watched",
        "License usage per feature", "License usage ratio", "Overdraft",
        "License expiry", "Subscription Advantage dates", "Licensing ports",
        "Windows services", "Web Services certificate: days left", "Collector success",
        "Collector duration", "Configuration reload", "Servers on time",
        "Servers on time over time",
    ]:
        assert wanted in titles
    assert any(t.startswith("Licenses expiring") for t in titles)
    fleet = next(p for p in dash.data_panels(board) if p["title"] == "License Servers")
    columns = set(next(t for t in fleet["transformations"] if t["id"] == "organize")
                  ["options"]["renameByName"].values())
    assert {"Version", "Build", "Releases behind", "Update deadline in", "Version age",
            "Last upload OK", "Last upload attempt", "Reachable", "LAS-capable build"} <= columns


# ---------------------------------------------------------------------------------------------
# The queries


def test_rates_use_rate_interval(board: dict[str, Any]) -> None:
    ranged = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|resets|changes)\s*\(")
    for query in dash.queries(board):
        if ranged.search(query.expr):
            windows = re.findall(r"\[([^\]]+)\]", query.expr)
            assert windows and all(w == "$__rate_interval" for w in windows), query.label


def test_queries_only_use_known_variables(board: dict[str, Any]) -> None:
    known = set(dash.variables(board)) | set(dash.BUILTINS)
    for query in dash.queries(board):
        assert dash.variable_names(query.expr) <= known, query.label
        dash.substitute(query.expr, dash.default_values(board))


def test_queries_parse_in_prometheus_2_42(
    board: dict[str, Any], promtool: str, tmp_path: Path
) -> None:
    """promtool (Debian's 2.42, the version CI runs) parses every query, variables
    substituted, as the expression of a recording rule."""
    rules = [{"record": f"dashboard:query_{i}:check", "expr": q.resolved()}
             for i, q in enumerate(dash.queries(board))]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                    encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)],
                            capture_output=True, text=True, check=False)
    labels = "\n".join(f"query_{i}: {q.label}" for i, q in enumerate(dash.queries(board)))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{labels}"


def test_name_extraction() -> None:
    metrics, recordings = dash.names_in(
        'sum by (job, feature) (rate(citrix_license_exporter_probes_total{job=~"a:b"}'
        '[$__rate_interval])) / on (job) group_left instance:citrix_license_x:ratio '
        'or label_replace(up, "site", "$1", "site", "(.*)")'
    )
    assert metrics == {"citrix_license_exporter_probes_total", "up"}
    assert recordings == {"instance:citrix_license_x:ratio"}
    with pytest.raises(ValueError, match="unknown function"):
        dash.names_in("rate_of(citrix_license_up[5m])")


def test_every_metric_is_exported_and_every_recording_rule_exists(board: dict[str, Any]) -> None:
    names = exported_metric_names()
    # The text parser names a counter family without its _total suffix, and a counter with no
    # sample yet (no probe counted) has no sample name to list.
    exported = names | {f"{n}_total" for n in names} | dash.PROMETHEUS_SERIES
    recorded = dash.recording_rules()
    missing = []
    for query in dash.queries(board):
        metrics, recordings = dash.names_in(query.expr)
        missing += [f"{query.label}: metric {m}" for m in sorted(metrics - exported)]
        missing += [f"{query.label}: recording rule {r} (not in rules/)"
                    for r in sorted(recordings - recorded)]
    for name, var in dash.variables(board).items():
        if var["type"] == "query":
            selector, _label = dash.label_values_query(var["query"]["query"])
            metrics, _ = dash.names_in(selector or "")
            missing += [f"variable {name}: metric {m}" for m in sorted(metrics - exported)]
    assert not missing, "\n".join(missing)


# ---------------------------------------------------------------------------------------------
# Provisioning


def test_provisioning_loads_the_dashboard_with_its_datasource(board: dict[str, Any]) -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    default = dash.variables(board)["datasource"]["current"]["value"]
    assert source["uid"] == default, "the dashboard opens on the provisioned datasource"
    assert source["isDefault"] is True
    providers = yaml.safe_load((PROVISIONING / "dashboards/provider.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    docs = (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    assert provider["options"]["path"] in docs, "docs/dashboard.md tells where to mount it"
