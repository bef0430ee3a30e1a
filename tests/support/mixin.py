"""The monitoring mixin (monitoring/) as the tests read it: its _config and its rendered output,
made by Debian's jsonnet exactly as monitoring/render.sh makes the committed files."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MIXIN = ROOT / "monitoring" / "mixin.libsonnet"
RENDER = ROOT / "monitoring" / "render.sh"


def jsonnet_binary() -> str:
    binary = shutil.which("jsonnet")
    if binary is None:
        raise RuntimeError("jsonnet is not installed (apt-get install jsonnet); CI installs it")
    return binary


def evaluate(expression: str, *, string: bool = False) -> str:
    """jsonnet -e EXPRESSION with the repository root on the import path; raises
    subprocess.CalledProcessError (stderr holds jsonnet's message) when it fails."""
    command = [jsonnet_binary(), "-J", str(ROOT)]
    if string:
        command.append("-S")
    result = subprocess.run(
        [*command, "-e", expression], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


def mixin_expression(overrides: str = "{}") -> str:
    """The mixin with ``_config`` overrides (a jsonnet object body such as
    ``{ probeSelector: 'job="x"' }``) merged in as a user would."""
    return f'(import "monitoring/mixin.libsonnet") + {{ _config+:: {overrides} }}'


@functools.cache
def config() -> dict[str, Any]:
    """The mixin's default _config, the one source of every threshold, duration and link."""
    data: dict[str, Any] = json.loads(evaluate(f"({mixin_expression()})._config"))
    return data


def rules(overrides: str = "{}") -> dict[str, Any]:
    """Recording rules and alerts in the order of rules/citrix-license.rules.yml."""
    data: dict[str, Any] = json.loads(evaluate(
        f"local m = {mixin_expression(overrides)}; "
        "{ groups: m.prometheusRules.groups + m.prometheusAlerts.groups }"
    ))
    return data


def dashboards(overrides: str = "{}") -> dict[str, Any]:
    expression = f"({mixin_expression(overrides)}).grafanaDashboards"
    data: dict[str, Any] = json.loads(evaluate(expression))
    return data


def selector_job(selector: str) -> str:
    """The job of a selector of the form job="name" (what the test stacks' scrape configs
    need); anything else is a configuration this helper does not know how to scrape."""
    name, sep, value = selector.partition("=")
    if name.strip() != "job" or not sep or not (value.startswith('"') and value.endswith('"')):
        raise ValueError(f'expected a selector job="...", not {selector!r}')
    return value[1:-1]
