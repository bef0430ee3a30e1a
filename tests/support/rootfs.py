"""A container's root filesystem without a container engine: the Debian base image made the way
Docker Hub's is, commands run in it as a container runs them, and its size counted per layer as
Docker counts it.

- ``debian_slim``: ``debian:<suite>-slim`` as the official image is built, with Debian's own
  ``debuerreotype`` package (the tool that builds it) following its ``examples/debian.sh``:
  ``debuerreotype-init`` (debootstrap ``--variant=minbase``), ``debuerreotype-minimizing-config``,
  the image's deb822 sources, ``apt-get update`` and ``full-upgrade``, then the "slim" variant's
  ``debuerreotype-slimify`` (dpkg ``path-exclude`` for /usr/share/doc, man, info, locale...) and
  ``debuerreotype-tar`` (no apt lists or caches, no /dev, no machine-id). The one difference: it
  is today's archive from deb.debian.org, not a snapshot.debian.org date (not reachable here).
- ``in_root``: the argv that runs a command inside a root as ``docker run`` / a ``RUN`` step
  does: its own mount and PID namespaces (the command is PID 1), a fresh /proc, the host's /dev
  and resolv.conf bind-mounted (Docker bind-mounts resolv.conf too), a clean environment, and
  optionally a numeric uid:gid with no other groups.
- ``tree_bytes`` / ``changed_bytes``: a layer's size as ``docker image ls`` adds it up: the
  bytes of every file or link the layer adds or changes (a changed file is copied whole), hard
  links once, directories nothing, as moby's ``pkg/directory`` ``Size`` does for a layer.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

DEBIAN = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
#: The sources the official bookworm-slim image ships (/etc/apt/sources.list.d/debian.sources),
#: less its snapshot.debian.org comment lines.
SOURCES = """\
Types: deb
URIs: {debian}
Suites: {suite} {suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {security}
Suites: {suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
#: Docker's PATH for a Linux container whose image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("debuerreotype-init", "debootstrap", "wget", "unshare", "chroot")

Log = Callable[[str, subprocess.CompletedProcess[str], float], None]


def _step(argv: list[str], log: Log, timeout: float = 900) -> None:
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, env={**os.environ, "TZ": "UTC",
                                                           "LC_ALL": "C"})
    log(" ".join(argv), result, time.monotonic() - start)


def debian_slim(suite: str, tarball: Path, work: Path, log: Log) -> None:
    """Write ``debian:<suite>-slim``'s root filesystem to ``tarball`` (``work`` is scratch)."""
    rootfs = work / "rootfs"
    _step(["debuerreotype-init", "--non-debian", "--merged-usr", str(rootfs), suite, DEBIAN], log)
    _step(["debuerreotype-minimizing-config", str(rootfs)], log)
    sources = rootfs / "etc/apt/sources.list.d/debian.sources"
    sources.write_text(SOURCES.format(debian=DEBIAN, security=DEBIAN_SECURITY, suite=suite))
    sources.chmod(0o644)
    _step(["debuerreotype-apt-get", str(rootfs), "update", "-qq"], log)
    _step(["debuerreotype-apt-get", str(rootfs), "full-upgrade", "-yqq"], log)
    _step(["debuerreotype-slimify", str(rootfs)], log)
    _step(["debuerreotype-tar", "--exclude", "./etc/machine-id", str(rootfs), str(tarball)], log)
    shutil.rmtree(rootfs)


def unpack(tarball: Path, root: Path) -> None:
    """Extract as Docker does an ADD of the base tarball: owners, modes and links kept."""
    root.mkdir(mode=0o755, parents=True)
    subprocess.run(["tar", "--extract", "--same-permissions", "--same-owner", "--numeric-owner",
                    "--file", str(tarball), "--directory", str(root)], check=True, timeout=300)


def in_root(root: Path, argv: list[str], env: dict[str, str], *, workdir: str = "/",
            user: int | None = None) -> list[str]:
    """argv that runs ``argv`` in ``root`` as a container does (see the module docstring)."""
    setup = (
        'set -e; r="$1"; shift; '
        'mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"; '
        'mount --bind -o ro /etc/resolv.conf "$r/etc/resolv.conf"; '
        'exec chroot "$@"'
    )
    userspec = [f"--userspec={user}:{user}", f"--groups={user}"] if user is not None else []
    inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
             "/bin/sh", "-c", 'cd "$0" && exec "$@"', workdir, *argv]
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
            "sh", "-c", setup, "sh", str(root), *userspec, str(root), *inner]


def mounts_under(root: Path) -> list[str]:
    """Mount points inside ``root`` seen from here (none once every in_root process ended)."""
    prefix = str(root.resolve()) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(prefix)]


Signature = tuple[int, int, int, int, int, int]


def signatures(root: Path) -> dict[str, Signature]:
    """Every entry under ``root`` with what a change to it would alter."""
    found: dict[str, Signature] = {}
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = (info.st_ino, info.st_size, info.st_mtime_ns,
                                                  info.st_ctime_ns, info.st_mode, info.st_uid)
    return found


def changed_bytes(root: Path, before: dict[str, Signature] | None = None) -> int:
    """Bytes of the files and links under ``root`` that are new or changed since ``before``
    (all of them without it); a hard-linked file counts once, directories count nothing."""
    total, seen = 0, set()
    for relative, signature in signatures(root).items():
        inode, size, mode = signature[0], signature[1], signature[4]
        if stat.S_ISDIR(mode) or (before is not None and before.get(relative) == signature):
            continue
        if inode in seen:
            continue
        seen.add(inode)
        total += size
    return total


def tree_bytes(root: Path) -> int:
    return changed_bytes(root)
