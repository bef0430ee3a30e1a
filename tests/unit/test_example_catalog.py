"""The commented catalog and policy sections of examples/config.yml are valid when enabled
(issue 14 items 3 and 7: the Citrix feed source and the offline 53100 rule)."""

from __future__ import annotations

import re
from pathlib import Path

from citrix_license_exporter.citrix.feed import FEED_URL
from citrix_license_exporter.citrix.policy import DEFAULT_MINIMUM_BUILDS
from citrix_license_exporter.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yml"


def enabled(text: str) -> str:
    """The file with its commented `catalog:` and `policy:` blocks switched on (the lines
    under them that are YAML, not the comments inside the blocks)."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"^# (catalog|policy):", line):
            inside = True
        elif not line.startswith("#  ") and not re.match(r"^# (catalog|policy):", line):
            inside = False
        if inside and not re.match(r"^#\s+#", line):
            out.append(line[2:])
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_example_catalog_and_policy_sections(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "one HTTPS GET of this URL to www.citrix.com every" in text
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "winrm-password").write_text("x\n")
    path = tmp_path / "config.yml"
    path.write_text(enabled(text), encoding="utf-8")
    config = load_config(str(path))
    (source,) = config.catalog.sources
    assert (source.format, source.url) == ("citrix_feed", FEED_URL)
    assert config.catalog.refresh_interval == 24 * 3600
    assert config.policy.minimum_builds == DEFAULT_MINIMUM_BUILDS


def test_minimum_build_telemetry_key_is_checked(tmp_path: Path) -> None:
    from citrix_license_exporter.config import ConfigError

    path = tmp_path / "cfg.yml"
    path.write_text(
        "modules: {d: {}}\npolicy:\n  minimum_builds:\n"
        "    - {build: 53100, deadline: 2026-04-14, telemetry: offline}\n"
    )
    try:
        load_config(str(path))
    except ConfigError as exc:
        lines = exc.lines()
    else:  # pragma: no cover - the assertion below reports it
        lines = []
    assert any(
        "policy.minimum_builds[0].telemetry" in line and "must be one of manual" in line
        for line in lines
    ), lines
