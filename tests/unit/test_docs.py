"""The documentation against the code.

- Every metric the exporter really exposes (run against every bundled simulator scenario) and
  every metric name defined in metrics.py / web.py / the registered collectors' modules is in
  docs/metrics.md: in the at-a-glance table and in a section heading.
- docs/collectors.md holds the reference generated from the registry, and each registered
  collector's docs entry names exactly the families its module defines, all documented.
- Every recording rule of rules/*.rules.yml is in docs/metrics.md.
- Every relative link of README.md and docs/*.md points to an existing file, and every
  ``#anchor`` to an existing heading.

Each check is a small function of (text, names); the ``*_catches_*`` tests feed it a document
with a name or file missing, so a check that can no longer fail shows up as a failing test.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from citrix_license_exporter.collectors import registry
from citrix_license_exporter.collectors.registry import Registered
from tests.support.exposition import exported_metric_names

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporter" / "citrix_license_exporter"
METRICS_DOC = ROOT / "docs" / "metrics.md"
COLLECTORS_DOC = ROOT / "docs" / "collectors.md"
LINKED_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RULE_FILES = sorted((ROOT / "rules").glob("*.rules.yml"))

PREFIX = "citrix_license_"
#: A metric name; not the middle of a recording rule name (``instance:citrix_license_…:days``).
_METRIC = re.compile(r"(?<![\w:])citrix_license_[a-z0-9_]*[a-z0-9](?![\w:])")
#: Sample-name suffixes of counters and info metrics: the exposition lists the family name and
#: the sample names (``..._probes`` and ``..._probes_total``); either spelling documents both.
_SUFFIXES = ("_total", "_created", "_info")


# ---------------------------------------------------------------------------------------------
# Metric names


def _spellings(name: str) -> set[str]:
    spellings = {name, name + "_total", name + "_info"}
    spellings.update(name.removesuffix(s) for s in _SUFFIXES if name.endswith(s))
    return spellings


def _table_names(text: str) -> set[str]:
    """Names in the first cell of a table row (the at-a-glance tables)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("|"):
            cells = line.split("|")
            if len(cells) > 2:
                names.update(_METRIC.findall(cells[1]))
    return names


def _heading_names(text: str) -> set[str]:
    lines = [line for line in _outside_code(text) if line.startswith("#")]
    return {name for line in lines for name in _METRIC.findall(line)}


def undocumented(exposed: Iterable[str], doc: str) -> dict[str, list[str]]:
    """The exporter's names (citrix_license_*) missing from the doc's tables or headings."""
    tables, headings = _table_names(doc), _heading_names(doc)
    mine = sorted(n for n in set(exposed) if n.startswith(PREFIX))
    problems = {
        "not in an at-a-glance table": [n for n in mine if not _spellings(n) & tables],
        "not in a section heading": [n for n in mine if not _spellings(n) & headings],
    }
    return {k: v for k, v in problems.items() if v}


def _render(node: ast.expr) -> str | None:
    """A metric-name argument: a string, or an f-string of PREFIX and strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            elif (
                isinstance(value, ast.FormattedValue)
                and isinstance(value.value, ast.Name)
                and value.value.id == "PREFIX"
            ):
                parts.append(PREFIX.rstrip("_"))
            else:
                return None
        return "".join(parts)
    return None


def source_files() -> list[Path]:
    """Where metric families are built: metrics.py, web.py, each registered collector's module."""
    modules = {Path(inspect.getfile(type(c))) for c in registry.collectors().values()}
    return [PACKAGE / "metrics.py", PACKAGE / "web.py", *sorted(modules)]


def source_metric_names(paths: Iterable[Path] | None = None) -> set[str]:
    """Names given literally to ``gauge(...)`` or ``single(...)`` (metrics.py adds the prefix)
    or to a ``*MetricFamily(...)`` in ``paths`` (default: source_files()). Covers families that
    no bundled scenario produces (a verified certificate, catalog sources, ...); names built
    from variables are covered by the exposition test instead."""
    names: set[str] = set()
    for path in source_files() if paths is None else paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            name = _render(node.args[0])
            if name is None:
                continue
            if called in ("gauge", "single"):
                names.add(PREFIX + name)
            elif called.endswith("MetricFamily"):
                names.add(name)
    return names


@pytest.fixture(scope="module")
def metrics_doc() -> str:
    return METRICS_DOC.read_text(encoding="utf-8")


@pytest.mark.timeout(600)
def test_every_exposed_metric_is_documented(metrics_doc: str) -> None:
    exposed = exported_metric_names()  # cached: the exporter runs once per test session
    assert {"citrix_license_up", "citrix_license_port_up"} <= exposed, sorted(exposed)
    assert undocumented(exposed, metrics_doc) == {}


def test_every_metric_name_in_the_code_is_documented(metrics_doc: str) -> None:
    names = source_metric_names()
    # The scan must see the literal names, or it proves nothing.
    assert {
        "citrix_license_web_certificate_verified",
        "citrix_license_release_catalog_last_refresh_success",
        "citrix_license_exporter_probes",
        "citrix_license_probe_duration_seconds",
        "citrix_license_exporter_build",
    } <= names, sorted(names)
    assert undocumented(names, metrics_doc) == {}


def stale_names(doc: str, source: str) -> list[str]:
    """Table rows for names the code does not define (metrics.py writes them without the
    prefix), e.g. after a rename."""
    return [
        name for name in sorted(_table_names(doc))
        if not any(
            s in source or s.removeprefix(PREFIX) in source
            for s in _spellings(name) if s.startswith(PREFIX)
        )
    ]


def test_documented_metrics_exist_in_the_code(metrics_doc: str) -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in source_files())
    assert stale_names(metrics_doc, source) == []
    renamed = metrics_doc + "\n| `citrix_license_renamed_metric` | | | |\n"
    assert stale_names(renamed, source) == ["citrix_license_renamed_metric"]


def test_undocumented_catches_a_missing_metric(metrics_doc: str) -> None:
    removed = "citrix_license_telemetry_pending_bundles"
    scratch = re.sub(rf"{removed}(?![a-z0-9_])", "REMOVED", metrics_doc)
    assert undocumented({removed, "citrix_license_up"}, metrics_doc) == {}
    assert undocumented({removed, "citrix_license_up"}, scratch) == {
        "not in an at-a-glance table": [removed],
        "not in a section heading": [removed],
    }
    # Counter and info spellings: the family name is documented through its sample name.
    doc = (
        "| `citrix_license_x_total` | |\n| `citrix_license_y_info` | |\n"
        "## `citrix_license_x_total`, `citrix_license_y_info`\n"
    )
    exposed = {"citrix_license_x", "citrix_license_y_info", "citrix_license_y"}
    assert undocumented(exposed, doc) == {}
    assert undocumented({"citrix_license_z"}, doc) != {}
    # Only a table row's first cell counts as documentation of the table.
    assert undocumented({"citrix_license_x"}, "| a | `citrix_license_x` |\n# citrix_license_x\n")


# ---------------------------------------------------------------------------------------------
# Collectors: the generated reference and each collector's docs entry


def collector_doc_problems(
    collectors: Iterable[Registered], metrics_doc: str, collectors_doc: str
) -> list[str]:
    """What the docs lack for ``collectors``: the generated reference out of date, a family
    its module names literally but its docs entry omits, a family not in metrics.md (names
    built from variables are seen by the exposition test instead)."""
    problems = []
    if registry.generated_block(collectors_doc) != registry.reference():
        problems.append("docs/collectors.md: the generated reference is out of date (paste "
                        "the output of citrix_license_exporter.collectors.registry.reference())")
    for collector in collectors:
        declared = set(collector.docs.families)
        defined = source_metric_names([Path(inspect.getfile(type(collector)))])
        if defined - declared:
            problems.append(f"{collector.name}: its module defines {sorted(defined - declared)}"
                            " but its docs entry does not list them")
        for why, names in undocumented(declared, metrics_doc).items():
            problems.append(f"{collector.name}: {', '.join(names)} {why} of docs/metrics.md")
    return problems


def test_every_registered_collector_is_documented(metrics_doc: str) -> None:
    collectors = list(registry.collectors().values())
    assert [c.name for c in collectors] == ["probe", "winrm", "controller", "cloud"]
    assert collector_doc_problems(
        collectors, metrics_doc, COLLECTORS_DOC.read_text(encoding="utf-8")) == []


# ---------------------------------------------------------------------------------------------
# Recording rules


def recording_rules() -> list[str]:
    names = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.extend(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def missing_rules(rules: Iterable[str], doc: str) -> list[str]:
    return [r for r in rules if not re.search(rf"(?<![\w:]){re.escape(r)}(?![\w:])", doc)]


def test_every_recording_rule_is_documented(metrics_doc: str) -> None:
    rules = recording_rules()
    assert rules, f"no recording rule found in {RULE_FILES}"
    assert missing_rules(rules, metrics_doc) == []


def test_missing_rules_catches_a_missing_rule(metrics_doc: str) -> None:
    rule = recording_rules()[0]
    assert missing_rules([rule], metrics_doc.replace(rule, "REMOVED")) == [rule]
    # A longer name that contains the rule's name is not the rule.
    assert missing_rules(["a:b:c"], "`a:b:c_more`") == ["a:b:c"]


# ---------------------------------------------------------------------------------------------
# Links


_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)")


def _outside_code(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def links(text: str) -> list[str]:
    found = []
    for line in _outside_code(text):
        plain = _INLINE_CODE.sub("", line)
        found.extend(_LINK.findall(plain))
        found.extend(_REFERENCE.findall(plain))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lstrip("#").strip())
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in _outside_code(text):
        if re.match(r"^#{1,6}\s", line):
            base = slug(line)
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    result.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return result


def broken_links(path: Path, text: str) -> list[str]:
    """Relative links of ``text`` (the content of ``path``) whose file or anchor is missing."""
    problems = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{path.name}: {target} (no such file)")
            continue
        if anchor and resolved.suffix == ".md":
            content = text if resolved == path else resolved.read_text(encoding="utf-8")
            if anchor not in anchors(content):
                problems.append(f"{path.name}: {target} (no such heading)")
    return problems


@pytest.mark.parametrize("path", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path, path.read_text(encoding="utf-8")) == []


def test_broken_links_catches_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# There\n## A `code` heading, (with) marks\n")
    page = tmp_path / "docs" / "page.md"
    text = (
        "# Page\n[ok](there.md) [ok](there.md#a-code-heading-with-marks) [ok](#page)\n"
        "[ok](https://example.com/missing.md) `[not a link](nowhere.md)`\n"
        "```\n[in a code block](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](there.md#nope) [bad local](#nope)\n"
        "[ref]: ../missing-too.md\n"
    )
    page.write_text(text, encoding="utf-8")
    assert broken_links(page, text) == [
        "page.md: missing.md (no such file)",
        "page.md: there.md#nope (no such heading)",
        "page.md: #nope (no such heading)",
        "page.md: ../missing-too.md (no such file)",
    ]
    # The real README links docs/metrics.md: take it away in a scratch copy.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    scratch = tmp_path / "README.md"
    scratch.write_text(readme, encoding="utf-8")
    assert "README.md: docs/metrics.md (no such file)" in broken_links(scratch, readme)
