"""The release: one version source, the sdist and the wheel as `python -m build` makes them.

The wheel is installed into a fresh virtualenv and runs the demo there, so what a user gets from
`pip install citrix-license-exporter` is tested, not this checkout. docs/release.md is the
procedure these checks back.
"""

from __future__ import annotations

import email.parser
import os
import re
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
BUILD_TIMEOUT = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend comes from the test extras, so no download is needed.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300, cwd=out,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_version_has_one_source() -> None:
    make = subprocess.run(["make", "-s", "version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert make.returncode == 0, make.stderr
    assert make.stdout.strip() == VERSION
    kustomization = yaml.safe_load((ROOT / "deploy/kubernetes/kustomization.yaml").read_text())
    assert kustomization["images"][0]["newTag"] == VERSION
    # No other file states the version: a release changes pyproject.toml alone (plus the
    # regenerated kustomization and the changelog).
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, timeout=30).stdout.decode("utf-8").split("\0")
    offenders = []
    for rel in filter(None, tracked):
        if rel in {"pyproject.toml", "CHANGELOG.md", "deploy/kubernetes/kustomization.yaml"}:
            continue
        try:
            text = (ROOT / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if re.search(rf"(?<![\w.]){re.escape(VERSION)}(?![\w.])", text):
            offenders.append(rel)
    assert offenders == []


def test_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "keepachangelog.com" in text
    versions = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert "0.1.0" in versions
    for section in re.findall(r"^### (.+)$", text, flags=re.MULTILINE):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    # the next release's number, once tagged, is the package version without its .dev suffix
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", VERSION)


@BUILD_TIMEOUT
def test_wheel_metadata_is_fit_for_pypi(dist: Path) -> None:
    wheel = _one(dist, "*.whl")
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(name).decode("utf-8"))
        files = zf.namelist()
    assert meta["Name"] == "citrix-license-exporter"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# citrix-license-exporter")  # the README
    classifiers = meta.get_all("Classifier") or []
    assert "Topic :: System :: Monitoring" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    # the package data the exporter loads at run time
    assert any(f.endswith("citrix/releases.yaml") for f in files)
    assert any(f.endswith("py.typed") for f in files)
    assert not any(f.startswith("tests/") for f in files)


@BUILD_TIMEOUT
def test_sdist_holds_docs_rules_and_dashboard(dist: Path) -> None:
    sdist = _one(dist, "*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for path in ("CHANGELOG.md", "LICENSE", "README.md", "docs/release.md", "docs/metrics.md",
                 "docs/runbooks.md", "examples/config.yml", "examples/alertmanager.yml",
                 "Dockerfile"):
        assert path in names, path
    for pattern, where in ((r"rules/[^/]+\.yml$", "rules"),
                           (r"grafana/dashboards/[^/]+\.json$", "dashboards"),
                           (r"deploy/kubernetes/[^/]+\.yaml$", "Kubernetes files")):
        assert any(re.match(pattern, n) for n in names), where
    assert not any("__pycache__" in n or "node_modules" in n for n in names)


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(_one(dist, "*.whl"))],
        capture_output=True, text=True, timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


@BUILD_TIMEOUT
def test_wheel_in_a_fresh_venv_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    exe = installed / "bin" / "citrix-license-exporter"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert version.stdout.strip() == f"citrix-license-exporter {VERSION}", version.stderr
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    proc = subprocess.Popen(
        [str(exe), "demo", "--web.listen-address=127.0.0.1:0"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        base = None
        for line in proc.stdout:
            lines.append(line)
            if match := re.match(r"Exporter:\s+(\S+)/", line):
                base = match.group(1)
            if line.startswith("Stop with Ctrl-C"):
                break
        assert base is not None, "".join(lines)
        assert "SIMULATED" in "".join(lines)
        text = httpx.get(f"{base}/probe?target=net-healthy", timeout=30).text
        assert "citrix_license_up 1.0" in text
        # the package in use is the wheel's, not this checkout's
        where = subprocess.run(
            [str(installed / "bin" / "python"), "-c",
             "import citrix_license_exporter as m; print(m.__file__)"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
        assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
