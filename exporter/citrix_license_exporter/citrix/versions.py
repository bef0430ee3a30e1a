"""License Server version strings, parsed into comparable ``(version, build)`` pairs.

Accepted forms (case and spacing do not matter):

* ``11.17.2.0 build 44000``          Windows Uninstall ``DisplayVersion``
* ``v11.17.2.0 build 56200 i86_n3``  ``SLVersion`` from the licensing SDK (platform suffix dropped)
* ``11.16.6.0. build 35000``         telemetry ``ProductVersion`` (stray dot)
* ``11.17.2 Build 53100``, ``11.17.2.0 (Build 56200)``, ``11.17.2.0, build 56200``,
  ``11.17.2.0 b56200``               documentation and download page spellings
* ``11.17.2.56200``                  ASSUMPTION: a four-part value whose last part is a build
  number (>= 1000) means ``11.17.2.0 build 56200``; the format of the registry value
  ``HKLM\\SOFTWARE\\WOW6432Node\\Citrix\\LicenseServer\\Install\\Version`` is not documented
  publicly (see docs/catalog.md).
* ``11.17.2.0.56200``                the same with a five-part value.

A version without a build (``11.17.2.0``) is rejected: the build is what the deadline rules need.
Versions are padded to four parts, so ``11.17.2 build 1`` equals ``11.17.2.0 build 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version

MAX_VERSION_TEXT = 200
#: Parts of a four- or five-part dotted value at or above this are read as a build number.
MIN_EMBEDDED_BUILD = 1000
MAX_BUILD = 999_999_999

_PART = r"[0-9]{1,6}"
_WITH_BUILD = re.compile(
    rf"""
    v?\s*
    (?P<version>{_PART}(?:\.{_PART}){{1,3}})
    \.?\s*                          # stray dot after the version (telemetry ProductVersion)
    ,?\s*
    \(?\s*
    (?:build|bld|b)\s*[:#.]?\s*
    (?P<build>[0-9]{{1,9}})
    \s*\)?
    (?:\s+[a-z][a-z0-9_.-]{{0,31}}){{0,3}}   # platform suffix such as i86_n3
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)
_DOTTED_ONLY = re.compile(
    rf"v?\s*(?P<parts>{_PART}(?:\.{_PART}){{3,4}})\.?", re.ASCII | re.IGNORECASE
)


class VersionParseError(ValueError):
    """The text is not a License Server version with a build number."""


@dataclass(frozen=True, order=True)
class LicenseServerVersion:
    """A License Server release: dotted version and build. Ordered by (version, build)."""

    version: Version
    build: int

    def __str__(self) -> str:
        return f"{self.version} build {self.build}"

    @classmethod
    def of(cls, version: str, build: int) -> LicenseServerVersion:
        """From a dotted version (2 to 4 numbers) and a build; raise VersionParseError."""
        return cls(_version(version), _build(str(build)))


def _version(dotted: str) -> Version:
    if not isinstance(dotted, str) or not re.fullmatch(rf"{_PART}(?:\.{_PART}){{1,3}}", dotted):
        raise VersionParseError(f"not a dotted version of 2 to 4 numbers: {dotted!r}")
    parts = [str(int(p)) for p in dotted.split(".")]
    parts += ["0"] * (4 - len(parts))
    return Version(".".join(parts))


def _build(digits: str) -> int:
    if not digits.isascii() or not digits.isdigit():
        raise VersionParseError(f"not a build number: {digits!r}")
    build = int(digits)
    if not 0 < build <= MAX_BUILD:
        raise VersionParseError(f"build number out of range: {build}")
    return build


def parse_version(text: str) -> LicenseServerVersion:
    """Parse a version string as seen in the wild; raise VersionParseError for anything else."""
    if not isinstance(text, str):
        raise VersionParseError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_VERSION_TEXT:
        raise VersionParseError(f"version text longer than {MAX_VERSION_TEXT} characters")
    normalized = " ".join(text.split())  # any Unicode whitespace to single spaces
    if not normalized:
        raise VersionParseError("empty version text")
    m = _WITH_BUILD.fullmatch(normalized)
    if m:
        return LicenseServerVersion(_version(m["version"]), _build(m["build"]))
    m = _DOTTED_ONLY.fullmatch(normalized)
    if m:
        parts = m["parts"].split(".")
        if int(parts[-1]) >= MIN_EMBEDDED_BUILD:
            return LicenseServerVersion(_version(".".join(parts[:-1])), _build(parts[-1]))
        raise VersionParseError(f"version without a build number: {text!r}")
    raise VersionParseError(f"not a License Server version: {text!r}")
