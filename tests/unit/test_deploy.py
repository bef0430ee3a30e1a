"""deploy/: the compose demo stack and the Kubernetes manifests, validated offline.

Kubernetes: built-in kinds against the Kubernetes JSON schemas that the kubernetes-validate
package ships (strict: unknown fields fail), the Prometheus Operator kinds (no schema offline)
by hand against the fields their CRDs require, the cross-references between objects (selectors,
named ports, volumes, the Probe's prober URL and targets), the exporter's own config parser on
the ConfigMap, and `promtool check rules` on the PrometheusRule's groups. The generated files
must match what deploy/kubernetes/generate.py makes from rules/ and grafana/dashboards/.

Compose: the compose-spec JSON schema (shipped by check-jsonschema), every mounted path,
`promtool check config` on the Prometheus config laid out as the container sees it, and the demo
target list against the scenarios the `demo` subcommand really serves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from citrix_license_exporter.config import parse_config
from citrix_license_exporter.simulator.scenario import bundled_scenarios

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
RULES = ROOT / "rules"
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
NAME = "citrix-license-exporter"
CONFIG_DIR = "/etc/citrix-license-exporter"
#: The oldest Kubernetes the manifests claim (apps/v1, seccompProfile field, projected volumes
#: all older), and the newest that kubernetes-validate knows.
K8S_VERSIONS = ("1.28.0", "latest")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                      r"(([0-9]+)s)?(([0-9]+)ms)?)$")


def optional_import(name: str) -> ModuleType:
    """A test dependency from the `test` extra; in CI (CI=true) its absence fails the test."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def load_script(path: Path) -> Any:  # a module whose globals the tests repoint
    spec = importlib.util.spec_from_file_location(f"deploy_{path.parent.name}_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Kubernetes


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    return data


def manifest_files() -> list[Path]:
    files = sorted(K8S.glob("*.yaml")) + sorted((K8S / "generated").glob("*.yaml"))
    return [f for f in files if f.name != "kustomization.yaml"]


def load_objects() -> list[tuple[Path, dict[str, Any]]]:
    objects = []
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                objects.append((path, document))
    return objects


@pytest.fixture(scope="module")
def objects() -> list[tuple[Path, dict[str, Any]]]:
    return load_objects()


def find(objects: list[tuple[Path, dict[str, Any]]], kind: str,
         name: str | None = None) -> list[dict[str, Any]]:
    return [o for _, o in objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[tuple[Path, dict[str, Any]]], kind: str,
        name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    resources = kustomization()["resources"]
    expected = {p.relative_to(K8S).as_posix() for p in manifest_files()}
    assert set(resources) == expected - {"secret.example.yaml"}
    assert len(resources) == len(set(resources))
    assert kustomization()["images"][0]["name"] == NAME


def test_every_object_has_the_fields_the_api_requires(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    assert objects
    seen: set[tuple[str, str]] = set()
    for path, obj in objects:
        where = f"{path.relative_to(ROOT)}: {obj.get('kind')}"
        assert isinstance(obj.get("apiVersion"), str) and obj["apiVersion"], where
        assert isinstance(obj.get("kind"), str) and obj["kind"][0].isupper(), where
        name = obj.get("metadata", {}).get("name")
        assert isinstance(name, str) and DNS_1123.match(name) and len(name) <= 253, where
        assert "namespace" not in obj["metadata"], f"{where}: the namespace is kustomize's"
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == NAME, where
        assert all(isinstance(v, str) for v in labels.values()), f"{where}: label not a string"
        assert (obj["kind"], name) not in seen, f"{where}: {name} twice"
        seen.add((obj["kind"], name))


def test_builtin_kinds_pass_the_kubernetes_schemas(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    kv = optional_import("kubernetes_validate")
    checked = set()
    for path, obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        for version in K8S_VERSIONS:
            target = kv.latest_version() if version == "latest" else version
            try:
                kv.validate(obj, target, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{path.relative_to(ROOT)} {obj['kind']} (Kubernetes {target}): "
                            f"{exc.message} at {'/'.join(map(str, exc.path))}")
        checked.add(obj["kind"])
    assert checked == {"ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"}


def test_deployment_selector_ports_probes_and_security(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    deployment = one(objects, "Deployment", NAME)
    spec = deployment["spec"]
    pod = spec["template"]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items(), "selector must match the pod"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == NAME  # rewritten by kustomization.yaml images:
    assert container["ports"] == [{"name": "http", "containerPort": 9957, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert f"--config.file={CONFIG_DIR}/config.yml" in container["args"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and "memory" in resources["limits"]
    pod_security = pod["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == pod_security["runAsGroup"] == 65532  # the image's USER
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["automountServiceAccountToken"] is False
    one(objects, "ServiceAccount", pod["spec"]["serviceAccountName"])
    # every mount has a volume, config is read-only at the image's config directory
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert all(m["name"] in volumes for m in mounts.values())
    assert mounts[CONFIG_DIR]["readOnly"] is True
    assert "subPath" not in mounts[CONFIG_DIR], "subPath mounts never see ConfigMap updates"


def projected_files(objects: list[tuple[Path, dict[str, Any]]]) -> dict[str, tuple[str, str]]:
    """path in the config directory -> (kind, object name) of the projected volume."""
    deployment = one(objects, "Deployment", NAME)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    volume_name = next(m["name"] for m in container["volumeMounts"]
                       if m["mountPath"] == CONFIG_DIR)
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == volume_name)
    files: dict[str, tuple[str, str]] = {}
    for source in volume["projected"]["sources"]:
        for kind in ("configMap", "secret"):
            if kind in source:
                ref = source[kind]
                obj = one(objects, "ConfigMap" if kind == "configMap" else "Secret", ref["name"])
                data = {**obj.get("data", {}), **obj.get("stringData", {})}
                for item in ref["items"]:
                    assert item["key"] in data, f"{ref['name']} has no key {item['key']}"
                    files[item["path"]] = (obj["kind"], ref["name"])
    return files


def test_config_and_secret_are_projected_files_the_config_uses(
    objects: list[tuple[Path, dict[str, Any]]], tmp_path: Path,
) -> None:
    files = projected_files(objects)
    assert files["config.yml"][0] == "ConfigMap"
    secrets = {path for path, (kind, _) in files.items() if kind == "Secret"}
    assert secrets, "the credentials must come from a Secret"
    text = one(objects, "ConfigMap", files["config.yml"][1])["data"]["config.yml"]
    raw = yaml.safe_load(text)
    password_files = {m["winrm"]["password_file"] for m in raw["modules"].values() if "winrm" in m}
    assert password_files and password_files <= secrets, (password_files, secrets)
    assert "password_env" not in text and "password:" not in text
    # the exporter's own parser accepts it, laid out as the projected volume lays it out
    for path in secrets:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("placeholder\n", encoding="utf-8")
    config = parse_config(text, f"{CONFIG_DIR}/config.yml", base_dir=tmp_path, environ={})
    assert len(config.targets) >= 1


def test_secret_example_is_not_applied_and_holds_a_placeholder(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    secret = one(objects, "Secret")
    assert "secret.example.yaml" not in kustomization()["resources"]
    assert set(secret["stringData"].values()) == {"CHANGE-ME"}


def test_service_selects_the_pods_and_names_the_port(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    service = one(objects, "Service", NAME)
    pod = one(objects, "Deployment", NAME)["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container_ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in container_ports and port["port"] == 9957


def alert_jobs() -> set[str]:
    """The job names the rules select on (`up{job="..."}`)."""
    rule = yaml.safe_load((K8S / "generated" / "prometheusrule.yaml").read_text("utf-8"))
    jobs = set()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            jobs |= set(re.findall(r'\bjob\s*=\s*"([^"]+)"', str(r["expr"])))
    return jobs


def test_servicemonitor_scrapes_the_exporter_as_the_rules_expect(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(objects, "Service", NAME)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
    # no jobLabel: the job label is the Service's name, which the exporter alerts select
    assert "jobLabel" not in monitor["spec"]
    assert service["metadata"]["name"] in alert_jobs()


def test_probe_points_at_the_exporter_and_lists_the_configured_targets(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    probe = one(objects, "Probe")
    assert probe["apiVersion"] == "monitoring.coreos.com/v1"
    spec = probe["spec"]
    service = one(objects, "Service", NAME)
    namespace = kustomization()["namespace"]
    host, _, port = spec["prober"]["url"].rpartition(":")
    assert host == f"{service['metadata']['name']}.{namespace}.svc"
    assert int(port) == service["spec"]["ports"][0]["port"]
    assert spec["prober"]["path"] == "/probe" and spec["prober"]["scheme"] == "http"
    static = spec["targets"]["staticConfig"]["static"]
    assert static and all(isinstance(t, str) and t for t in static)
    assert spec["jobName"] in alert_jobs(), "the probe alerts select this job name"
    assert DURATION.match(spec["interval"]) and DURATION.match(spec["scrapeTimeout"])
    config = yaml.safe_load(one(objects, "ConfigMap", f"{NAME}-config")["data"]["config.yml"])
    assert static == [t["name"] for t in config["targets"]], "probe.yaml vs configmap.yaml"
    if "module" in spec:
        assert spec["module"] in config["modules"]


def rule_files() -> list[Path]:
    return [p for p in sorted(RULES.glob("*.yml"))
            if "groups" in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})]


def test_prometheusrule_is_in_sync_with_rules_dir() -> None:
    result = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    rule = yaml.safe_load((K8S / "generated" / "prometheusrule.yaml").read_text("utf-8"))
    groups = [g for p in rule_files() for g in yaml.safe_load(p.read_text("utf-8"))["groups"]]
    assert rule["spec"]["groups"] == groups
    if not groups:
        pytest.fail("rules/ has no rule file yet")


def test_prometheusrule_has_what_the_crd_requires_and_promtool_accepts_it(
    objects: list[tuple[Path, dict[str, Any]]], promtool: str, tmp_path: Path,
) -> None:
    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)) and all(names)
    for group in groups:
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r), r
            assert isinstance(r["expr"], str | int)
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(key, {}).values()), (key, r)
            for key in ("for", "keep_firing_for"):
                if key in r:
                    assert DURATION.match(r[key]), (key, r)
    path = tmp_path / "extracted.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_configmaps_are_in_sync_and_labelled_for_the_sidecar(
    objects: list[tuple[Path, dict[str, Any]]],
) -> None:
    maps = [o for o in find(objects, "ConfigMap") if "grafana_dashboard" in
            o["metadata"]["labels"]]
    files = sorted(DASHBOARDS.glob("*.json"))
    assert len(maps) == len(files)
    by_key = {key: value for m in maps for key, value in m["data"].items()}
    for path in files:
        assert by_key[path.name] == path.read_text(encoding="utf-8"), path.name
        json.loads(by_key[path.name])
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert len(json.dumps(m).encode()) < 256 * 1024, "too large for client-side apply"
    if not files:
        pytest.fail("grafana/dashboards/ has no dashboard yet")


@pytest.fixture
def generator_in(tmp_path: Path) -> Any:
    """deploy/kubernetes/generate.py pointed at copies of its sources in tmp_path."""
    module = load_script(K8S / "generate.py")
    (tmp_path / "rules").mkdir()
    (tmp_path / "dashboards").mkdir()
    (tmp_path / "rules" / "a.rules.yml").write_text(
        "groups:\n- name: g\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n", "utf-8")
    (tmp_path / "rules" / "notes.yml").write_text("links: {}\n", "utf-8")
    (tmp_path / "dashboards" / "My Board.json").write_text('{"title": "t"}\n', "utf-8")
    module.RULES_DIR = tmp_path / "rules"
    module.DASHBOARDS_DIR = tmp_path / "dashboards"
    module.ROOT = tmp_path
    module.PROMETHEUS_RULE = tmp_path / "out" / "prometheusrule.yaml"
    module.DASHBOARDS = tmp_path / "out" / "grafana-dashboards.yaml"
    module.prometheus_rule.__defaults__ = (module.RULES_DIR,)
    module.dashboards.__defaults__ = (module.DASHBOARDS_DIR,)
    return module


def test_generator_check_fails_on_drift_and_write_fixes_it(generator_in: Any) -> None:
    module = generator_in
    assert module.main(["--check"]) == 1  # nothing written yet
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0
    rule = yaml.safe_load(module.PROMETHEUS_RULE.read_text("utf-8"))
    assert [g["name"] for g in rule["spec"]["groups"]] == ["g"]  # notes.yml skipped (no groups)
    (board,) = yaml.safe_load_all(module.DASHBOARDS.read_text("utf-8"))
    assert board["metadata"]["name"] == "citrix-license-exporter-dashboard-my-board"
    assert board["data"] == {"My Board.json": '{"title": "t"}\n'}
    (module.RULES_DIR / "a.rules.yml").write_text(
        "groups:\n- name: g2\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n", "utf-8")
    assert module.main(["--check"]) == 1


def test_generator_refuses_duplicate_group_names(generator_in: Any) -> None:
    module = generator_in
    (module.RULES_DIR / "b.rules.yml").write_text(
        "groups:\n- name: g\n  rules: []\n", "utf-8")
    assert module.main([]) == 2


# ---------------------------------------------------------------------------------------------
# Compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_file_passes_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    jsonschema = optional_import("jsonschema")
    optional_import("check_jsonschema")
    from importlib.resources import files

    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
        .read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_compose_runs_the_whole_product(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "alertmanager", "grafana"}
    exporter = services["exporter"]
    assert exporter["command"][0] == "demo" and "--web.listen-address=:9957" in exporter["command"]
    assert (COMPOSE_DIR / exporter["build"]["context"] / exporter["build"]["dockerfile"]).is_file()
    assert exporter["read_only"] is True and exporter["cap_drop"] == ["ALL"]
    for name, service in services.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{name}: publish on 127.0.0.1 only"


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of each bind mount (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        if source.startswith("."):
            assert options == ["ro"], f"{volume}: bind mounts are read-only"
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def test_compose_mounts_exist_and_match_the_grafana_provisioning(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
    grafana = bind_mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == PROVISIONING
    providers = [p for f in sorted((PROVISIONING / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text("utf-8"))["providers"]]
    assert providers, "grafana/provisioning/dashboards has no provider"
    for provider in providers:
        assert grafana[provider["options"]["path"]] == DASHBOARDS
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, file = home.rpartition("/")
    assert (grafana[folder] / file).is_file()
    datasources = [d for f in sorted((PROVISIONING / "datasources").glob("*.y*ml"))
                   for d in yaml.safe_load(f.read_text("utf-8"))["datasources"]]
    prometheus_urls = {d["url"] for d in datasources if d["type"] == "prometheus"}
    assert prometheus_urls == {"http://prometheus:9090"}
    alertmanager = bind_mounts(services["alertmanager"])
    assert alertmanager["/etc/alertmanager/alertmanager.yml"] == ROOT / "examples/alertmanager.yml"


def compose_prometheus_layout(compose: dict[str, Any], root: Path) -> Path:
    """/etc/prometheus as the Prometheus container sees it, built from the compose mounts."""
    for target, source in bind_mounts(compose["services"]["prometheus"]).items():
        assert target.startswith("/etc/prometheus/")
        dest = root / target.removeprefix("/etc/prometheus/")
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy(source, dest)
    return root / "prometheus.yml"


def test_compose_prometheus_config_passes_promtool(
    compose: dict[str, Any], promtool: str, tmp_path: Path,
) -> None:
    config_path = compose_prometheus_layout(compose, tmp_path)
    command = compose["services"]["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    result = subprocess.run([promtool, "check", "config", str(config_path)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    rule_count = len(rule_files())
    assert f"SUCCESS: {rule_count} rule files found" in output, output


def test_compose_prometheus_wiring(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text("utf-8"))
    services = compose["services"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert alert_jobs() <= set(jobs), "the rules select jobs this config does not have"
    probe = jobs["citrix-license"]
    assert probe["metrics_path"] == "/probe"
    relabel = probe["relabel_configs"]
    assert relabel[0] == {"source_labels": ["__address__"], "target_label": "__param_target"}
    assert relabel[1] == {"source_labels": ["__param_target"], "target_label": "instance"}
    assert relabel[2]["target_label"] == "__address__"
    assert relabel[2]["replacement"] == "exporter:9957" and "exporter" in services
    assert jobs["citrix-license-exporter"]["static_configs"][0]["targets"] == ["exporter:9957"]
    (am,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in services
    # every rule file in rules/ is loaded; a file without groups would not be
    (pattern,) = config["rule_files"]
    for path in sorted(RULES.glob("*.yml")):
        is_rule_file = path in rule_files()
        assert fnmatch(f"rules/{path.name}", pattern) == is_rule_file, (
            f"rules/{path.name}: {'not ' if is_rule_file else ''}matched by {pattern}; "
            "name rule files *.rules.yml")


def test_compose_demo_targets_are_the_demo_fleet() -> None:
    result = subprocess.run([sys.executable, str(COMPOSE_DIR / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    (group,) = yaml.safe_load((COMPOSE_DIR / "targets" / "demo.yml").read_text("utf-8"))
    assert group["targets"] == sorted(s.name for s in bundled_scenarios())


def test_compose_generator_check_detects_drift(tmp_path: Path) -> None:
    module = load_script(COMPOSE_DIR / "generate.py")
    (tmp_path / "one.yaml").write_text("name: one\nnetwork: {}\n", "utf-8")
    module.SCENARIOS = tmp_path
    module.ROOT = tmp_path
    module.OUTPUT = tmp_path / "targets" / "demo.yml"
    module.scenario_names.__defaults__ = (tmp_path,)
    assert module.main(["--check"]) == 1
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0
    (tmp_path / "two.yaml").write_text("name: two\nnetwork: {}\n", "utf-8")
    assert module.main(["--check"]) == 1


# ---------------------------------------------------------------------------------------------
# docs/deployment.md


def test_scrape_config_snippets_in_the_deployment_docs_pass_promtool(
    promtool: str, tmp_path: Path,
) -> None:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    snippets = [s for s in re.findall(r"```yaml\n(.*?)```", text, re.S)
                if s.startswith("scrape_configs:")]
    assert len(snippets) == 2, "the per-site and the hashmod examples"
    for i, snippet in enumerate(snippets):
        path = tmp_path / f"snippet-{i}.yml"
        path.write_text(snippet, encoding="utf-8")
        result = subprocess.run([promtool, "check", "config", str(path)],
                                capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"snippet {i}:\n{snippet}\n{output}"
        warnings = [line for line in output.splitlines() if "WARNING" in line
                    and "for file_sd" not in line]  # the example's target files are not here
        assert not warnings, output
        jobs = {j["job_name"]: j for j in yaml.safe_load(snippet)["scrape_configs"]}
        assert set(jobs) == alert_jobs(), "the job names the rules select"
        assert jobs["citrix-license"]["metrics_path"] == "/probe"
