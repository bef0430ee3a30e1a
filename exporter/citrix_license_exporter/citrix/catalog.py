"""The release catalog: which License Server builds exist and when each was released.

Citrix's RSS feed of licensing downloads is not known to list every build (``feed.py`` reads it
as a catalog source), so the exporter carries ``releases.yaml`` (bundled, and published for others
to fetch) with every build and a public source per date, and lets users add or override
entries. The file format, where each date comes from and how bounds are read are described in
docs/catalog.md.

A release date is either *exact* (``released``, a source states the day) or *bounded*
(``released_after``: no earlier than; ``released_by``: no later than). Releases are assumed to
come out in version order, so the bounds of neighbouring releases also bound each other:
:meth:`Catalog.earliest_release` and :meth:`Catalog.latest_release` derive them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..settings import yamlsource
from ..settings.problems import Section, Several, from_validation_error, refusal
from .versions import LicenseServerVersion, VersionParseError

SCHEMA_VERSION = 1
MAX_DOCUMENT_BYTES = 1_000_000
MAX_RELEASES = 2000
MAX_TEXT = 2000
#: Dates outside this range are typos (and would overflow the deadline arithmetic).
MIN_DATE = date(1990, 1, 1)
MAX_DATE = date(2999, 12, 31)

RELEASE_KEYS = frozenset(
    {"version", "build", "released", "released_after", "released_by", "source", "notes"}
)
DOCUMENT_KEYS = frozenset({"schema_version", "generated", "releases"})

DateKind = Literal["exact", "bounded"]
Problem = tuple[str, str]


class CatalogError(ValueError):
    """Every problem found in one catalog document, as (key path, reason) pairs."""

    def __init__(self, problems: list[Problem], origin: str = "") -> None:
        self.problems = list(problems)
        self.origin = origin
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        prefix = f"{self.origin}: " if self.origin else ""
        return [f"{prefix}{key or '(top level)'}: {reason}" for key, reason in self.problems]


@dataclass(frozen=True)
class Release:
    """One build of the License Server and what is known about its release date."""

    version: LicenseServerVersion
    released: date | None
    released_after: date | None
    released_by: date | None
    source: str
    notes: str = ""
    origin: str = "bundled"

    @property
    def build(self) -> int:
        return self.version.build

    @property
    def date_kind(self) -> DateKind:
        """``exact`` when a source states the day, else ``bounded``."""
        return "exact" if self.released is not None else "bounded"

    @property
    def earliest_release(self) -> date | None:
        """This entry's own lower bound: the exact date, else ``released_after``, else None.

        The deadline logic also uses the bounds of earlier releases: see
        :meth:`Catalog.earliest_release`.
        """
        return self.released if self.released is not None else self.released_after

    @property
    def latest_release(self) -> date | None:
        """This entry's own upper bound: the exact date, else ``released_by``, else None."""
        return self.released if self.released is not None else self.released_by

    def describe_date(self) -> str:
        """Human text for the date as the catalog states it, e.g. ``released by 2024-12-03``."""
        if self.released is not None:
            return f"released {self.released.isoformat()}"
        parts = []
        if self.released_after is not None:
            parts.append(f"after {self.released_after.isoformat()}")
        if self.released_by is not None:
            parts.append(f"by {self.released_by.isoformat()}")
        return "released " + ", ".join(parts)


@dataclass(frozen=True)
class DateBound:
    """A derived bound on a release date and the reason it holds."""

    date: date
    #: ``own`` (the entry's own date), ``neighbour`` (from an earlier or later release),
    #: or ``fallback`` (no bound of the wanted side exists; the other side was used).
    basis: Literal["own", "neighbour", "fallback"]
    #: The release whose date gave the bound (the entry itself for ``own`` and ``fallback``).
    from_release: Release

    def describe(self) -> str:
        r = self.from_release
        if self.basis == "neighbour":
            return f"{self.date.isoformat()}, as build {r.build} was {r.describe_date()}"
        return self.date.isoformat()


@dataclass(frozen=True)
class Catalog:
    """Releases sorted by version, one entry per build."""

    releases: tuple[Release, ...] = ()
    generated: date | None = None
    _by_build: Mapping[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.releases, key=lambda r: r.version))
        index: dict[int, int] = {}
        for i, r in enumerate(ordered):
            if r.build in index:
                raise ValueError(f"duplicate build {r.build} in catalog")
            index[r.build] = i
        object.__setattr__(self, "releases", ordered)
        object.__setattr__(self, "_by_build", index)

    def find(self, v: LicenseServerVersion) -> Release | None:
        """The entry with this build number.

        Builds are unique across versions, and the version text a server reports does not
        always agree with the build (the telemetry ``ProductVersion`` has been seen as
        ``11.16.6.0. build 35000`` for what the catalog lists as 11.17.2.0 build 35000), so the
        build decides; see docs/catalog.md.
        """
        i = self._by_build.get(v.build)
        return None if i is None else self.releases[i]

    def newer_than(self, v: LicenseServerVersion) -> tuple[Release, ...]:
        """Releases newer than ``v``, oldest first.

        For a build in the catalog: the entries after it. For an unknown build: the entries
        that order after ``(version, build)``.
        """
        i = self._by_build.get(v.build)
        if i is not None:
            return self.releases[i + 1 :]
        return tuple(r for r in self.releases if r.version > v)

    def latest(self) -> Release | None:
        return self.releases[-1] if self.releases else None

    def counts_by_origin(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.releases:
            counts[r.origin] = counts.get(r.origin, 0) + 1
        return counts

    def _position(self, release: Release) -> int:
        i = self._by_build.get(release.build)
        if i is None or self.releases[i] != release:
            raise ValueError(f"build {release.build} is not this catalog's entry")
        return i

    def earliest_release(self, release: Release) -> DateBound:
        """The earliest day ``release`` can have come out, for deadlines that must never be late.

        An exact date is used as is. Otherwise the tightest lower bound among the entry's own
        ``released_after`` and the exact dates and ``released_after`` bounds of every earlier
        release (releases come out in version order, so none can predate an earlier one). The
        closest such release wins a tie. With no lower bound anywhere, ``released_by`` is used
        (basis ``fallback``): the only case where a deadline can come out late.
        """
        i = self._position(release)
        if release.released is not None:
            return DateBound(release.released, "own", release)
        best: DateBound | None = None
        if release.released_after is not None:
            best = DateBound(release.released_after, "own", release)
        for earlier in reversed(self.releases[:i]):
            d = earlier.earliest_release
            if d is not None and (best is None or d > best.date):
                best = DateBound(d, "neighbour", earlier)
        if release.released_by is not None and (best is None or best.date > release.released_by):
            # Contradicting data (an earlier release's lower bound after this one's upper
            # bound): the earlier date keeps the deadline early.
            if best is None:
                return DateBound(release.released_by, "fallback", release)
            return DateBound(release.released_by, "own", release)
        if best is None:  # pragma: no cover - validation requires one of the three dates
            raise ValueError(f"build {release.build} has no date")
        return best

    def latest_release(self, release: Release) -> DateBound:
        """The latest day ``release`` can have come out: the mirror of :meth:`earliest_release`.

        Exact date, else the tightest upper bound among its own ``released_by`` and the exact
        dates and ``released_by`` bounds of every later release; with none, ``released_after``
        (basis ``fallback``).
        """
        i = self._position(release)
        if release.released is not None:
            return DateBound(release.released, "own", release)
        best: DateBound | None = None
        if release.released_by is not None:
            best = DateBound(release.released_by, "own", release)
        for later in self.releases[i + 1 :]:
            d = later.latest_release
            if d is not None and (best is None or d < best.date):
                best = DateBound(d, "neighbour", later)
        if release.released_after is not None and (
            best is None or best.date < release.released_after
        ):
            if best is None:
                return DateBound(release.released_after, "fallback", release)
            return DateBound(release.released_after, "own", release)
        if best is None:  # pragma: no cover - validation requires one of the three dates
            raise ValueError(f"build {release.build} has no date")
        return best


# --------------------------------------------------------------------------- validation
# The file format as pydantic models (one settings library for every file the exporter reads:
# settings/), read with line numbers and duplicate keys refused (settings/yamlsource.py).


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _date(value: object) -> date | None:
    """A YAML date, or an ISO ``YYYY-MM-DD`` string (JSON has no date type)."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        d = value
    elif isinstance(value, str) and len(value) == 10:
        try:
            d = date.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return d if MIN_DATE <= d <= MAX_DATE else None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= MAX_TEXT:
        return value.strip()
    return None


def _release_date(value: object) -> date:
    d = _date(value)
    if d is None:
        raise ValueError(f"expected a date YYYY-MM-DD between {MIN_DATE} and {MAX_DATE}")
    return d


def _version_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError('expected a quoted string like "11.17.2.0"')
    return value


def _build(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 999_999_999:
        raise ValueError("expected a positive whole number")
    return value


def _source(value: object) -> str:
    text = _text(value)
    if text is None:
        raise ValueError(f"required: a non-empty text of at most {MAX_TEXT} characters")
    return text


def _notes(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"expected a text of at most {MAX_TEXT} characters")
    return value.strip()


_DATE_KEYS = ("released", "released_after", "released_by")


def _entry_checks(raw: dict[str, object]) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules across the date keys, judged on the keys as written (a bad date elsewhere in the
    entry does not hide them)."""
    present = {k for k in _DATE_KEYS if k in raw}
    if "released" in present and present & {"released_after", "released_by"}:
        return [((), "give either released (exact date) or released_after/released_by "
                     "(bounds)")]
    if not present:
        return [((), "one of released, released_after or released_by is required")]
    return []


class _Model(Section):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def _raise_checks(value: object) -> None:
    if value:
        raise Several(value)  # type: ignore[arg-type]


class ReleaseEntry(_Model):
    """One entry of ``releases:`` as written."""

    internal_keys: ClassVar[frozenset[str]] = frozenset({"__checks__"})

    version: Annotated[str, PlainValidator(_version_text)]
    build: Annotated[int, PlainValidator(_build)]
    released: Annotated[date | None, PlainValidator(_release_date)] = None
    released_after: Annotated[date | None, PlainValidator(_release_date)] = None
    released_by: Annotated[date | None, PlainValidator(_release_date)] = None
    source: Annotated[str, PlainValidator(_source)] = Field(default="", validate_default=True)
    notes: Annotated[str, PlainValidator(_notes)] = ""
    checks: Annotated[None, PlainValidator(_raise_checks)] = Field(
        default=None, alias="__checks__", validate_default=True, repr=False
    )

    @model_validator(mode="before")
    @classmethod
    def _checks(cls, data: object) -> object:
        if not isinstance(data, dict):
            raise refusal("expected a mapping with version, build, dates and source")
        return {**data, "__checks__": _entry_checks(data)}

    @field_validator("build")
    @classmethod
    def _version(cls, build: int, info: ValidationInfo) -> int:
        version = info.data.get("version")
        if version is not None:
            try:
                LicenseServerVersion.of(version, build)
            except VersionParseError as exc:
                raise refusal(str(exc), key="version") from None
        return build

    @field_validator("released_by")
    @classmethod
    def _bounds(cls, by: date | None, info: ValidationInfo) -> date | None:
        after = info.data.get("released_after")
        if after is not None and by is not None and after > by:
            raise refusal(f"{after} is later than released_by {by}", key="released_after")
        return by

    def release(self, origin: str) -> Release:
        return Release(
            version=LicenseServerVersion.of(self.version, self.build),
            released=self.released,
            released_after=self.released_after,
            released_by=self.released_by,
            source=self.source,
            notes=self.notes,
            origin=origin,
        )


def _problems(exc: ValidationError, root: type[BaseModel], path: str) -> list[Problem]:
    prefix = tuple(_split(path))
    return [(p.key, p.reason) for p in from_validation_error(exc, root, prefix=prefix,
                                                             list_allowed=False)]


def _split(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            out.append(int(part[1:-1]))
        elif part:
            out.append(part)
    return out


def _check_order(entries: list[tuple[str, Release]], problems: list[Problem]) -> None:
    """Releases come out in version order: no lower bound may pass a later upper bound."""
    ordered = sorted(entries, key=lambda e: e[1].version)
    highest: tuple[date, Release] | None = None
    for path, r in ordered:
        upper = r.latest_release
        if highest is not None and upper is not None and highest[0] > upper:
            earlier = highest[1]
            problems.append(
                (
                    path,
                    f"build {r.build} is {r.describe_date()}, but the older build "
                    f"{earlier.build} was {earlier.describe_date()}; releases are "
                    "expected in version order",
                )
            )
        lower = r.earliest_release
        if lower is not None and (highest is None or lower > highest[0]):
            highest = (lower, r)


def parse_releases(raw: object, origin: str, path: str) -> tuple[list[Release], list[Problem]]:
    """Validate a YAML-loaded list of release entries.

    Returns the valid releases and every problem as (key path, reason), e.g.
    ``("catalog.releases[3].released_by", "...")``. Invalid entries are left out.
    """
    problems: list[Problem] = []
    if not isinstance(raw, list):
        return [], [(path, "expected a list of releases")]
    if len(raw) > MAX_RELEASES:
        return [], [(path, f"{len(raw)} releases, at most {MAX_RELEASES} are accepted")]
    entries: list[tuple[str, Release]] = []
    seen: dict[int, str] = {}
    for i, item in enumerate(raw):
        ipath = _join(path, i)
        try:
            release = ReleaseEntry.model_validate(item).release(origin)
        except ValidationError as exc:
            problems.extend(_problems(exc, ReleaseEntry, ipath))
            continue
        if release.build in seen:
            problems.append(
                (
                    _join(ipath, "build"),
                    f"duplicate build {release.build} (also at {seen[release.build]})",
                )
            )
            continue
        seen[release.build] = ipath
        entries.append((ipath, release))
    _check_order(entries, problems)
    return [r for _, r in entries], problems


def _schema_version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number")
    if value != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {value}; this exporter reads "
                         f"{SCHEMA_VERSION}")
    return value


def _generated(value: object) -> date | None:
    if value is None:
        return None
    d = _date(value)
    if d is None:
        raise ValueError("expected a date YYYY-MM-DD")
    return d


class CatalogDocument(_Model):
    """A whole catalog file. ``releases`` is validated entry by entry (parse_releases), so
    that the valid entries are kept and the checks across entries can run."""

    schema_version: Annotated[int, PlainValidator(_schema_version)]
    generated: Annotated[date | None, PlainValidator(_generated)] = None
    releases: Annotated[object, PlainValidator(lambda v: v)]


def parse_catalog_document(
    data: bytes | str, origin: str, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Catalog:
    """Parse a whole catalog file (``schema_version``, ``generated``, ``releases``).

    YAML is read with PyYAML's safe constructors only; a key given twice is refused and an
    invalid date is reported at its key with every other problem. Raises CatalogError listing
    every problem.
    """
    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    if size > max_bytes:
        raise CatalogError([("", f"document is {size} bytes, the limit is {max_bytes}")], origin)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CatalogError([("", f"not UTF-8 text: {exc.reason}")], origin) from None
    else:
        text = data
    loaded = yamlsource.load(text)
    if loaded.problems:
        raise CatalogError(
            [(p.key or (f"line {p.line}" if p.line else ""), p.reason) for p in loaded.problems],
            origin,
        )
    doc = loaded.data
    if not isinstance(doc, dict):
        raise CatalogError(
            [("", "expected a mapping with schema_version, generated and releases")], origin
        )
    problems: list[Problem] = []
    generated = None
    try:
        generated = CatalogDocument.model_validate(doc).generated
    except ValidationError as exc:
        problems.extend(_problems(exc, CatalogDocument, ""))
    releases: list[Release] = []
    if "releases" in doc:
        releases, more = parse_releases(doc["releases"], origin, "releases")
        problems.extend(more)
    if problems:
        raise CatalogError(problems, origin)
    return Catalog(tuple(releases), generated)


@functools.cache
def load_bundled() -> Catalog:
    """The catalog shipped inside the package (origin ``bundled``), parsed once."""
    data = resources.files(__package__).joinpath("releases.yaml").read_bytes()
    return parse_catalog_document(data, "bundled")


def merge(*catalogs_in_precedence_order: Catalog) -> Catalog:
    """One catalog from several: per build the first catalog that has it wins.

    ``generated`` is the newest of the inputs' dates.
    """
    chosen: dict[int, Release] = {}
    for catalog in catalogs_in_precedence_order:
        for r in catalog.releases:
            chosen.setdefault(r.build, r)
    dates = [c.generated for c in catalogs_in_precedence_order if c.generated is not None]
    return Catalog(tuple(chosen.values()), max(dates) if dates else None)
