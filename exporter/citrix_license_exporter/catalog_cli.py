"""``citrix-license-exporter catalog check FILE`` and ``catalog show``.

``check`` validates a catalog file the way the exporter validates a source (every problem with
its key path; exit 0 or 1). ``show`` prints the effective catalog (configuration entries, the
configured sources read once, the bundled file) with each entry's origin and the update deadline
it implies for a server on that build, so that "when must I upgrade from build X?" can be
answered without Prometheus. See docs/catalog.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from .catalog_sources import SourceError, bundled_floor, load_source, source_floor
from .citrix.catalog import (
    MAX_DOCUMENT_BYTES,
    Catalog,
    CatalogError,
    Release,
    load_bundled,
    parse_catalog_document,
)
from .citrix.policy import Assessment, Deadline, PolicyConfig, assess
from .citrix.versions import LicenseServerVersion, VersionParseError, parse_version
from .config import Config, ConfigError, load_config
from .settings import yamlsource

#: The exporter's default ``--config.file`` (cli.py); a missing file of that name is no error.
DEFAULT_CONFIG_FILE = "citrix-license-exporter.yml"
CONFIG_FILE_ENV = "CITRIX_LICENSE_EXPORTER_CONFIG_FILE"


def run_catalog_command(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.catalog_command == "check":
        return check_file(args.file, out=out, err=err)
    if args.catalog_command == "show":
        return show(args, out=out, err=err, now=now or datetime.now(UTC))
    print(f"unknown catalog command {args.catalog_command!r}", file=err)
    return 2


# ---------------------------------------------------------------------------------------------
# catalog check FILE


def _lacks_generated(data: bytes) -> bool:
    try:
        doc = yamlsource.load(data.decode("utf-8-sig")).data
    except UnicodeDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("generated") is None


GENERATED_REQUIRED = (
    "generated",
    "required: the exporter refuses a catalog source without the date it was generated",
)


def check_file(path: str, *, out: TextIO, err: TextIO) -> int:
    """Validate the catalog file at ``path``: print every problem, return 0 (valid) or 1."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=err)
        return 1
    problems: list[tuple[str, str]] = []
    catalog: Catalog | None = None
    if len(data) > MAX_DOCUMENT_BYTES:
        problems.append(("", f"document is larger than {MAX_DOCUMENT_BYTES} bytes"))
    else:
        try:
            catalog = parse_catalog_document(data, path)
        except CatalogError as exc:
            problems.extend(exc.problems)
            if not any(key == "generated" for key, _ in exc.problems) and _lacks_generated(data):
                problems.append(GENERATED_REQUIRED)
        else:
            if catalog.generated is None:
                problems.append(GENERATED_REQUIRED)
    if problems or catalog is None:
        for line in CatalogError(problems, path).lines():
            print(line, file=err)
        print(f"{path}: INVALID ({len(problems)} problem(s))", file=err)
        return 1
    assert catalog.generated is not None
    latest = catalog.latest()
    newest = f"; newest: build {latest.build}, {latest.describe_date()}" if latest else ""
    print(
        f"{path}: OK ({len(catalog.releases)} release(s), generated "
        f"{catalog.generated.isoformat()}{newest})",
        file=out,
    )
    floor, _ = bundled_floor()
    if floor is not None and catalog.generated < floor:
        print(
            f"{path}: note: generated {catalog.generated.isoformat()} is older than this "
            f"exporter's bundled catalog ({floor.isoformat()}); the exporter refuses it as a "
            "source until its generated date is at least that",
            file=err,
        )
    return 0


# ---------------------------------------------------------------------------------------------
# catalog show


def _config_for_show(args: argparse.Namespace, err: TextIO) -> tuple[Config | None, bool]:
    """The configuration to use (None: none) and whether loading it failed."""
    explicit = getattr(args, "show_config_file", None)
    path = explicit or getattr(args, "config_file", None) or DEFAULT_CONFIG_FILE
    given = explicit is not None or path != DEFAULT_CONFIG_FILE or CONFIG_FILE_ENV in os.environ
    if not given and not Path(path).exists():
        print(
            f"note: no configuration file {path}; showing the bundled catalog with the "
            "default policy (use --config.file to include your catalog section and policy)",
            file=err,
        )
        return None, False
    try:
        return load_config(path), False
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=err)
        print(f"{path}: INVALID ({len(exc.problems)} problem(s))", file=err)
        return None, True


def _read_sources(config: Config, err: TextIO) -> tuple[list[Catalog], dict[str, str]]:
    """Each configured source read once, as the exporter reads it at start."""
    catalogs: list[Catalog] = []
    failed: dict[str, str] = {}
    settings = config.catalog
    for source in settings.sources:
        floor, floor_from = source_floor(source, None)
        try:
            catalogs.append(
                load_source(
                    source,
                    max_bytes=settings.max_bytes,
                    timeout=settings.timeout,
                    not_older_than=floor,
                    current_from=floor_from,
                )
            )
        except SourceError as exc:
            failed[source.label] = str(exc)
            print(
                f"warning: catalog source {source.label} refused: {exc}; shown without it",
                file=err,
            )
    return catalogs, failed


def _policy_text(policy: PolicyConfig) -> str:
    parts = []
    if policy.six_month_rule:
        start = (
            f" from build {policy.six_month_rule_from_build}"
            if policy.six_month_rule_from_build
            else ""
        )
        parts.append(f"{policy.months} months after each newer release{start}")
    parts += [
        f"build {m.build} by {m.deadline.isoformat()} ({m.name}"
        + (", telemetry: manual only)" if m.telemetry else ")")
        for m in policy.minimum_builds
    ]
    return "; ".join(parts) or "no rule"


def _day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else "-"


def _released(release: Release | None) -> str:
    if release is None:
        return "not in the catalog"
    return release.describe_date().removeprefix("released ")


def _header(
    catalog: Catalog,
    config: Config | None,
    policy: PolicyConfig,
    failed: dict[str, str],
    telemetry: str,
    out: TextIO,
) -> None:
    counts = catalog.counts_by_origin()
    generated = catalog.generated.isoformat() if catalog.generated else "unknown"
    print(
        f"Effective release catalog: {len(catalog.releases)} release(s), generated {generated}",
        file=out,
    )
    origins = ["config"] if config is not None and config.catalog.releases else []
    if config is not None:
        origins += [s.label for s in config.catalog.sources]
    origins.append("bundled")
    described = []
    for origin in origins:
        if origin in failed:
            described.append(f"{origin} (refused: not used)")
        else:
            described.append(f"{origin} ({counts.get(origin, 0)})")
    print("Sources, first wins per build (releases used): " + ", ".join(described), file=out)
    print(f"Policy: {_policy_text(policy)}", file=out)
    print(f"Judged as for targets with telemetry: {telemetry}", file=out)
    print(
        "Dates are UTC. UPDATE: the last day on which an update is on time. Where the release\n"
        "that starts the clock is known only within bounds, it is a range: the first day if that\n"
        "release came out on its earliest possible day, the second if on its latest.",
        file=out,
    )


def _update_cell(d: Deadline | None) -> str:
    return d.in_words().removeprefix("update ") if d is not None else "no deadline"


def _table(catalog: Catalog, policy: PolicyConfig, telemetry: str, out: TextIO) -> None:
    head = ("BUILD", "VERSION", "RELEASED", "RULE", "UPDATE", "ORIGIN")
    rows: list[tuple[tuple[str, ...], str]] = []
    for release in catalog.releases:
        a = assess(release.version, catalog, policy, telemetry=telemetry)
        d = a.deadline
        cells = (
            str(release.build),
            str(release.version.version),
            _released(release),
            d.rule if d else "-",
            _update_cell(d),
            release.origin,
        )
        why = d.explanation if d else "no rule applies: no newer release starts a clock"
        rows.append((cells, why))
    every: list[tuple[str, ...]] = [head, *(row for row, _ in rows)]
    widths = [max(len(row[i]) for row in every) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    print("", file=out)
    print(line(head), file=out)
    indent = " " * (widths[0] + 2)
    for row, why in rows:
        print(line(row), file=out)
        print(f"{indent}why: {why}", file=out)


def _resolve_build(text: str, catalog: Catalog) -> tuple[LicenseServerVersion, str]:
    """A ``--build`` value: a build number or a version text. Returns (version, note)."""
    t = text.strip()
    if not t.isdigit():
        return parse_version(t), ""
    build = int(t)
    for release in catalog.releases:
        if release.build == build:
            return release.version, ""
    lower = [r for r in catalog.releases if r.build < build]
    base = max(lower, key=lambda r: r.build) if lower else None
    if base is None:
        raise VersionParseError(
            f"build {build} is older than every catalog entry; give the version too, "
            f"e.g. '11.16.3.0 build {build}'"
        )
    version = LicenseServerVersion.of(str(base.version.version), build)
    return version, (
        f"build {build} is not in the catalog; version {base.version.version} assumed (that of "
        f"build {base.build}); give '<version> build {build}' to choose another"
    )


def _status(a: Assessment, now: datetime) -> str:
    d = a.deadline
    if d is None:
        return "no deadline"
    if now < d.at:
        days = (d.at - now) / timedelta(days=1)
        return f"in time: {days:.0f} day(s) left until the earliest possible deadline"
    if now < d.latest_at:
        return (
            f"possibly overdue: late since {_day(d.at)} if the release came out on its "
            f"earliest possible day; certainly overdue from {_day(d.latest_at)}"
        )
    return f"overdue since {_day(d.latest_at)} at the latest ({_day(d.at)} at the earliest)"


def _detail(text: str, catalog: Catalog, policy: PolicyConfig, telemetry: str,
            now: datetime, out: TextIO) -> None:
    version, note = _resolve_build(text, catalog)
    a = assess(version, catalog, policy, telemetry=telemetry)
    rows: list[tuple[str, str]] = []
    if note:
        rows.append(("Note", note))
    if a.release is not None:
        rows.append(("In the catalog", f"yes, {a.release.describe_date()} "
                                       f"(origin {a.release.origin})"))
    else:
        rows.append(("In the catalog", "no (unknown build: no release date)"))
    newer = [r.build for r in catalog.newer_than(version)]
    listed = f" ({', '.join(map(str, newer))})" if newer else ""
    rows.append(("Newer releases", f"{len(newer)}{listed}"))
    d = a.deadline
    if d is None:
        rows.append(("Rule", "none applies: no newer release starts a clock and no minimum "
                             "build is above this build"))
    else:
        cause = d.cause
        started = (
            f", clock started by build {cause.build} ({cause.describe_date()}, origin "
            f"{cause.origin})"
            if cause
            else ""
        )
        overdue = (
            f"{_day(d.at)} 00:00 UTC"
            if d.exact
            else f"{_day(d.at)} 00:00 UTC at the earliest, {_day(d.latest_at)} 00:00 UTC at "
                 "the latest"
        )
        rows += [
            ("Rule", d.rule + started),
            ("Update", f"{d.in_words()} (last day on time, end of day UTC)"),
            ("Overdue from", overdue),
            ("Explanation", d.explanation),
        ]
        if cause is not None:
            rows.append((f"Date of {cause.build} from", cause.source))
    rows.append((f"On {now.date().isoformat()}", _status(a, now)))
    width = max(len(k) for k, _ in rows) + 1
    print("", file=out)
    print(f"Build {version.build} ({version})", file=out)
    for key, value in rows:
        print(f"  {(key + ':').ljust(width)} {value}", file=out)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def build_record(version: LicenseServerVersion, catalog: Catalog, policy: PolicyConfig,
                 telemetry: str) -> dict[str, object]:
    """One entry of ``catalog show --output json`` (keys documented in docs/catalog.md)."""
    a = assess(version, catalog, policy, telemetry=telemetry)
    r = a.release
    d = a.deadline
    return {
        "build": version.build,
        "version": str(version.version),
        "in_catalog": r is not None,
        "released": _iso(r.released) if r else None,
        "released_after": _iso(r.released_after) if r else None,
        "released_by": _iso(r.released_by) if r else None,
        "origin": r.origin if r else None,
        "source": r.source if r else None,
        "rule": d.rule if d else None,
        "update_by_earliest": d.update_by_earliest.isoformat() if d else None,
        "update_by_latest": d.update_by_latest.isoformat() if d else None,
    }


def show(args: argparse.Namespace, *, out: TextIO, err: TextIO, now: datetime) -> int:
    config, invalid = _config_for_show(args, err)
    if invalid:
        return 1
    policy = config.policy if config is not None else PolicyConfig()
    telemetry = getattr(args, "telemetry", None) or "automatic"
    as_json = getattr(args, "output", "text") == "json"
    sources: list[Catalog] = []
    failed: dict[str, str] = {}
    if config is not None:
        sources, failed = _read_sources(config, err)
        from .app import effective_catalog

        catalog = effective_catalog(config, sources)
    else:
        catalog = load_bundled()
    builds: list[str] = getattr(args, "builds", None) or []
    status = 1 if failed else 0
    if as_json:
        records: list[dict[str, object]] = []
        versions = [r.version for r in catalog.releases] if not builds else []
        for text in builds:
            try:
                version, note = _resolve_build(text, catalog)
                versions.append(version)
                if note:
                    print(f"note: {note}", file=err)
            except VersionParseError as exc:
                print(f"--build {text!r}: {exc}", file=err)
                status = 1
        records = [build_record(v, catalog, policy, telemetry) for v in versions]
        json.dump({"builds": records}, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return status
    _header(catalog, config, policy, failed, telemetry, out)
    if not builds:
        _table(catalog, policy, telemetry, out)
    for text in builds:
        try:
            _detail(text, catalog, policy, telemetry, now, out)
        except VersionParseError as exc:
            print(f"--build {text!r}: {exc}", file=err)
            status = 1
    return status
