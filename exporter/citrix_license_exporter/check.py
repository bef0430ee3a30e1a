"""``citrix-license-exporter check TARGET``: one probe from the command line, as a report a person
can read and paste into a bug report (or, with ``--output json``, the same as a document).

It says what each collector read and from where (port, WMI class and property, registry value,
log file, REST path), the values derived from it, the update deadline with the rule and the
reasoning behind it, and every assumption of docs/assumptions.md the result relied on, with
what to check on the server when a value looks wrong. The probe's own log follows. Nothing
secret is in it: the whole text goes through the exporter's redaction (config.redact), as
every answer of the exporter does, and credentials are never put in it in the first place.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .app import ExporterState
from .citrix.licensing import WinRMData
from .collectors.base import Deadline
from .collectors.cloud import CloudData
from .collectors.controller import ControllerData
from .collectors.network import NetworkData
from .collectors.winrm import endpoint_for
from .config import ConfigError, ModuleConfig, TargetConfig, redact, redact_url
from .probe import Outcome, ProbeResult
from .probelog import capture

LS = "C:\\Program Files (x86)\\Citrix\\Licensing\\LS"


@dataclass(frozen=True)
class Assumption:
    number: int
    title: str  # exactly the bold title of the item in docs/assumptions.md
    check: str  # what to look at on the server, in one line


#: The assumptions of docs/assumptions.md a report can rest on (tests keep the titles in sync).
ASSUMPTIONS = {a.number: a for a in (
    Assumption(1, "Pool counts.", "Get-CimInstance -Namespace root\\CitrixLicensing -ClassName "
               "Citrix_GT_License_Pool | Select PLD,Count,InUseCount,PooledAvailable,Overdraft,"
               "LicenseType,SubscriptionDate; compare with the Licensing Manager"),
    Assumption(2, "`Count` includes the overdraft allowance", "compare Count - Overdraft "
               "with the licenses you bought (the INCREMENT lines of the .lic files)"),
    Assumption(3, "Subscription Advantage date.", "SubscriptionDate of the pools against the "
               "CSS date in the Licensing Manager"),
    Assumption(4, "License expiry.", "Get-CimInstance -Namespace root\\CitrixLicensing "
               "-ClassName Citrix_GT_License | Select SerialNumber,PLD,ExpirationDate"),
    Assumption(7, "PLD naming.", "PLD and PLDFullName of Citrix_GT_License_Pool"),
    Assumption(8, "Licensing service names.", "Get-CimInstance Win32_Service -Filter \"Name "
               "LIKE '%Citrix%' OR Name = 'CtxLSPortSvc'\" | Select Name,State,StartMode"),
    Assumption(9, "WMI faults.", "the reason= of the failure against a WS-Management fault: "
               "winrm enumerate wmi/root/CitrixLicensing/Citrix_GT_License_Pool as the account"),
    Assumption(10, "WMI polling interval.", "the cache interval (15 minutes) against the "
               "Citrix Licensing documentation of your build"),
    Assumption(37, "Account rights.", "the Get-CimInstance -CimSession and winrs commands of "
               "docs/windows-setup.md, run as the exporter's account from another host"),
    Assumption(11, "Version in the registry.", "Get-ItemProperty 'HKLM:\\SOFTWARE\\WOW6432Node\\"
               "Citrix\\LicenseServer\\Install' (Version) and the Uninstall DisplayVersion"),
    Assumption(13, "Install path.", "Get-CimInstance Win32_Service -Filter \"Name='Citrix "
               "Licensing'\" | Select PathName"),
    Assumption(14, "Uploader log format.", f"Get-Content '{LS}\\Logs\\log_ctxuploader.log' "
               "-Tail 60 (one <CtxUploaderResult> block per upload)"),
    Assumption(15, "Result codes and upload types.", "the <Code> and <UploadType> values in "
               "the uploader log"),
    Assumption(17, "Upload bundles.", f"Get-ChildItem '{LS}\\resource\\usage' | Select Name,"
               "CreationTimeUtc (upload_<Unix seconds>.zip)"),
    Assumption(19, "Ports.", "Get-NetTCPConnection -State Listen -LocalPort 27000,7279,8083"),
    Assumption(20, "Release dates.", "the Citrix downloads page of the build after yours; "
               "add an exact date under catalog.releases"),
    Assumption(21, "Builds are unique across versions, and releases come out in version order",
               "is any build published for two versions?"),
    Assumption(22, "The six-month rule.", "the current text of CTX477614"),
    Assumption(23, "License Activation Service and the end of file licensing.",
               "the Citrix LAS documentation; minimum_builds under policy:"),
    Assumption(24, "Builds without a public trace", "a build not in the catalog: add it under "
               "catalog.releases with its release date"),
    Assumption(25, "REST API.", "curl the controller's /cvad/manage/Sites with a token"),
    Assumption(27, "Where `LicenseServerStatus` comes from.", "the LicenseOverview call "
               "against Studio > Licensing"),
    Assumption(28, "Grace periods.", "Get-BrokerSite | Select LicensingGracePeriodActive,"
               "LicensingGraceHoursLeft,LicensingOutOfBoxGracePeriodActive"),
    Assumption(31, "The API exists for your organisation.", "the licenseservers call with your "
               "API client"),
    Assumption(33, "Matching by FQDN.", "the fqdn values Citrix Cloud lists against the "
               "server's [System.Net.Dns]::GetHostEntry('').HostName; else set cloud_fqdn"),
)}


def _ts(moment: datetime | float | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read(source: str, where: str, value: Any) -> dict[str, Any]:
    return {"source": source, "where": where, "value": value}


def _network(target: TargetConfig, module: ModuleConfig, data: NetworkData) -> list[dict[str, Any]]:
    reads = [
        _read("TCP connect", f"{target.address}:{port.port} ({port.name})",
              "open" if port.up else f"closed: {port.error}")
        for port in data.ports
    ]
    where = f"{target.address}:{target.port(module, module.probe.tls_port)} (TLS handshake)"
    if data.certificate is not None:
        cert = data.certificate
        verified = {True: "verified", False: f"NOT verified ({cert.verify_error})",
                    None: "verification off for this module"}[cert.verified]
        reads.append(_read("Web Services certificate", where,
                           f"notAfter {_ts(cert.not_after)}, subject {cert.subject}, issuer "
                           f"{cert.issuer}, {verified}"))
    else:
        reads.append(_read("Web Services certificate", where,
                           f"not read: {data.certificate_error}"))
    return reads


def _winrm(target: TargetConfig, module: ModuleConfig, data: WinRMData) -> list[dict[str, Any]]:
    assert module.winrm is not None
    url = endpoint_for(target, module.winrm).url
    reads = [_read("WinRM endpoint", redact_url(url), f"{module.winrm.auth} as "
                   f"{module.winrm.username}")]
    for pool in data.pools:
        sa = _ts(pool.subscription_advantage) or "none"
        reads.append(_read(
            "WMI root\\CitrixLicensing Citrix_GT_License_Pool",
            f"PLD={pool.feature.pld} LicenseType={pool.license_type or '?'}",
            f"Count {pool.installed}, InUseCount {pool.in_use}, PooledAvailable "
            f"{pool.available}, Overdraft {pool.overdraft}, SubscriptionDate {sa}",
        ))
    for item in data.licenses:
        reads.append(_read("WMI root\\CitrixLicensing Citrix_GT_License",
                           f"SerialNumber={item.serial} PLD={item.feature or '(empty)'}",
                           f"ExpirationDate {_ts(item.expiry) or 'permanent'}"))
    for service in data.services:
        reads.append(_read("WMI root\\cimv2 Win32_Service", f"Name={service.name}",
                           f"State {service.state}"))
    source = {"registry": "registry HKLM:\\SOFTWARE\\WOW6432Node\\Citrix\\LicenseServer\\Install"
                          " Version",
              "uninstall": "registry Uninstall\\<Citrix Licensing> DisplayVersion"}
    reads.append(_read(source.get(data.version_source or "", "registry (no version found)"),
                       "on-box script", data.license_server_version))
    log_where = f"{LS}\\Logs\\log_ctxuploader.log"
    if data.uploader_log_bytes is None:
        reads.append(_read("uploader log", log_where, "no such file"))
    else:
        last = data.attempts[-1] if data.attempts else None
        reads.append(_read(
            "uploader log", log_where,
            f"{data.uploader_log_bytes} bytes, {len(data.attempts)} upload results in the tail"
            + (f"; last: {_ts(last.time)} Code {last.code} UploadType {last.upload_type}"
               if last is not None else ""),
        ))
    reads.append(_read("upload bundles", f"{LS}\\resource\\usage",
                       f"{len(data.bundles)} bundle(s)"))
    return reads


def _controller(module: ModuleConfig, data: ControllerData) -> list[dict[str, Any]]:
    assert module.controller is not None
    api = f"{data.controller}{module.controller.base_path}"
    reads = []
    for site in data.sites:
        reads.append(_read("Delivery Controller REST", f"GET {api}/Sites/{site.id}",
                           f"site {site.name}: LicenseServerName {site.license_server_name}, "
                           f"LicenseServerPort {site.license_server_port}, "
                           f"LicensingGracePeriodActive {site.grace_active}, "
                           f"LicensingOutOfBoxGracePeriodActive {site.out_of_box_grace_active}"))
        if module.controller.license_overview_path:
            reads.append(_read("Delivery Controller REST",
                               f"GET {api}{module.controller.license_overview_path}",
                               f"LicenseServerStatus {site.license_server_status}"))
    return reads


def _cloud(module: ModuleConfig, data: CloudData) -> list[dict[str, Any]]:
    assert module.cloud is not None
    where = f"GET {module.cloud.licensing_url}/{module.cloud.customer_id}/licenseservers"
    server = data.server
    if server is None:
        value = f"{data.fqdn} not among the {data.listed_servers} listed servers"
    else:
        value = (f"{data.fqdn}: isPhoningHome {server.phoning_home}, lastPhoningHomeTime "
                 f"{_ts(server.last_phoning_home)}, isCompliant {server.compliant}")
    return [_read("Citrix Cloud REST", where, value)]


def _reads(result: ProbeResult, outcome: Outcome) -> list[dict[str, Any]]:
    data, target, module = outcome.data, result.target, result.module
    if isinstance(data, NetworkData):
        return _network(target, module, data)
    if isinstance(data, WinRMData):
        return _winrm(target, module, data)
    if isinstance(data, ControllerData):
        return _controller(module, data)
    if isinstance(data, CloudData):
        return _cloud(module, data)
    return []


#: What to look at first, per failure kind (docs/runbooks.md has the long form).
KIND_HINTS = {
    "timeout": "nothing answered in time: is the host up, does a firewall drop the traffic, "
               "is the module timeout long enough?",
    "refused": "the host answers but nothing listens: services stopped, wrong port, or the "
               "WinRM listener not enabled",
    "dns": "the name does not resolve: check the target's address (nslookup)",
    "tls": "the certificate is not trusted (tls.ca_file), expired, or for another name",
    "auth": "the credentials or the account's rights were refused (password file, account "
            "lock, WMI namespace rights, Studio role)",
    "kdc_unreachable": "no Kerberos KDC of the realm answered: DNS SRV records or [realms] in "
                       "krb5.conf, port 88 (docs/windows-setup.md)",
    "clock_skew": "this host's clock and the KDC's or the server's differ by more than "
                  "Kerberos allows (5 minutes): check NTP on all three",
    "protocol": "the peer answered with an error (HTTP status, WS-Management fault, a missing "
                "WMI namespace): the reason names the call",
    "limit": "an answer exceeded max_response_bytes",
    "parse": "the answer's content is in a format the exporter does not know: a likely wrong "
             "assumption (below); please report it",
    "internal": "an exporter defect: please report it with this report",
}
#: The assumptions a failure of a collector, by kind, may come from.
FAILURE_ASSUMPTIONS = {
    ("probe", "refused"): (19,), ("probe", "timeout"): (19,),
    ("winrm", "auth"): (37,), ("winrm", "protocol"): (9, 13), ("winrm", "parse"): (1, 4, 11, 14),
    ("controller", "protocol"): (25,), ("controller", "parse"): (25,),
    ("cloud", "auth"): (31,), ("cloud", "parse"): (31,),
}


def _relied_on(result: ProbeResult) -> list[int]:
    numbers: set[int] = set()
    for outcome in result.outcomes:
        if not outcome.success:
            kind = outcome.kind.value if outcome.kind else "internal"
            numbers.update(FAILURE_ASSUMPTIONS.get((outcome.collector, kind), ()))
            continue
        data = outcome.data
        if isinstance(data, NetworkData):
            numbers.add(19)
        elif isinstance(data, WinRMData):
            numbers.update((8, 10, 11, 13))
            if data.pools:
                numbers.update((1, 2, 3, 7))
            if data.licenses:
                numbers.add(4)
            if data.uploader_log_bytes is not None:
                numbers.update((14, 15))
            if data.bundles:
                numbers.add(17)
        elif isinstance(data, ControllerData):
            numbers.update((25, 27, 28))
        elif isinstance(data, CloudData):
            numbers.update((31, 33))
    assessment = result.assessment
    if assessment is not None:
        numbers.update((20, 21))
        if not assessment.known:
            numbers.add(24)
        if assessment.deadline is not None:
            numbers.add(22 if assessment.deadline.rule == "six_months_after_release" else 23)
    return sorted(numbers)


def _derived(result: ProbeResult, state: ExporterState, now: float) -> dict[str, Any]:
    derived: dict[str, Any] = {"up": result.up, "primary_collector": result.module.primary}
    if result.version is None:
        derived["version"] = (f"cannot parse {result.version_text!r}" if result.version_text
                              else "not read (no collector of this module reads it)")
        return derived
    assessment = result.assessment
    assert assessment is not None
    derived["version"] = str(result.version)
    derived["in_catalog"] = assessment.known
    derived["release_date"] = (assessment.release.describe_date()
                               if assessment.release is not None else None)
    derived["newer_releases"] = assessment.newer_releases
    derived["las_supported"] = assessment.las_supported
    policy = state.config.policy
    derived["policy"] = (
        f"six-month rule {'on' if policy.six_month_rule else 'off'} ({policy.months} months, "
        f"from build {policy.six_month_rule_from_build}); minimum builds: "
        + ", ".join(f"{m.build} by {m.deadline.isoformat()}" for m in policy.minimum_builds)
    )
    deadline = assessment.deadline
    if deadline is None:
        derived["deadline"] = None
        derived["deadline_reasoning"] = "no rule applies (no newer release, no minimum build)"
    else:
        at = deadline.at.timestamp()
        latest = (deadline.latest_at or deadline.at).timestamp()
        derived["deadline"] = _ts(deadline.at)
        derived["deadline_latest"] = _ts(latest)
        derived["deadline_rule"] = deadline.rule
        derived["deadline_days_left"] = round((at - now) / 86400, 1)
        derived["deadline_reasoning"] = (
            f"overdue from {_ts(deadline.at)}: {deadline.explanation}"
            + (f"; at the latest {_ts(latest)} (the release date is known only as a range)"
               if latest > at else "")
        )
    return derived


def build_report(state: ExporterState, target: TargetConfig, module: ModuleConfig,
                 result: ProbeResult, lines: Iterable[str], deadline: float,
                 now: float) -> dict[str, Any]:
    collectors = []
    for outcome in result.outcomes:
        entry: dict[str, Any] = {
            "collector": outcome.collector,
            "success": outcome.success,
            "duration_seconds": round(outcome.duration, 3),
            "from_cache": outcome.from_cache,
        }
        if outcome.success:
            entry["read"] = _reads(result, outcome)
        else:
            entry["kind"] = outcome.kind.value if outcome.kind else "internal"
            entry["reason"] = outcome.error
            entry["hint"] = KIND_HINTS.get(entry["kind"], "see docs/runbooks.md")
        collectors.append(entry)
    catalog = state.catalog
    latest = catalog.latest()
    return {
        "target": {"name": target.name, "address": target.address, "module": module.name,
                   "collectors": list(module.collectors)},
        "probe": {"deadline_seconds": deadline,
                  "deadline_from": f"module {module.name} timeout {module.timeout:g}s",
                  "at": _ts(now)},
        "catalog": {"newest_release": (f"{latest.version} ({latest.describe_date()})"
                                       if latest else None),
                    "releases_by_source": catalog.counts_by_origin()},
        "collectors": collectors,
        "derived": _derived(result, state, now),
        "assumptions": [
            {"number": n, "title": ASSUMPTIONS[n].title, "check": ASSUMPTIONS[n].check,
             "see": f"docs/assumptions.md item {n}"}
            for n in _relied_on(result)
        ],
        "log": list(lines),
    }


def render_text(report: dict[str, Any]) -> str:
    out: list[str] = []
    target, probe = report["target"], report["probe"]
    out.append(f"Target {target['name']} ({target['address']}), module {target['module']}: "
               f"collectors {', '.join(target['collectors'])}")
    out.append(f"Probed at {probe['at']}, deadline {probe['deadline_seconds']:g}s "
               f"({probe['deadline_from']})")
    catalog = report["catalog"]
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(catalog["releases_by_source"].items()))
    out.append(f"Release catalog: newest {catalog['newest_release']}; releases by source "
               f"{sources}")
    for entry in report["collectors"]:
        out.append("")
        head = f"== {entry['collector']}: " + ("OK" if entry["success"] else "FAILED")
        head += f" in {entry['duration_seconds']:.3f}s"
        if entry["from_cache"]:
            head += " (from the cache)"
        out.append(head)
        if not entry["success"]:
            out.append(f"   kind {entry['kind']}: {entry['reason']}")
            out.append(f"   hint: {entry['hint']}")
            continue
        for read in entry["read"]:
            out.append(f"   {read['source']} [{read['where']}]: {read['value']}")
    out.append("")
    out.append("== derived")
    for key, value in report["derived"].items():
        out.append(f"   {key.replace('_', ' ')}: {value}")
    out.append("")
    out.append("== assumptions this result relies on (docs/assumptions.md); if a value above "
               "looks wrong or a collector failed, check:")
    for item in report["assumptions"]:
        out.append(f"   {item['number']}. {item['title']} Check: {item['check']}")
    if not report["assumptions"]:
        out.append("   none (no collector read data that rests on one)")
    out.append("")
    out.append("== the probe's log")
    out.extend(f"   {line}" for line in report["log"])
    return "\n".join(out) + "\n"


async def _probe(state: ExporterState, target: TargetConfig,
                 module: ModuleConfig) -> tuple[ProbeResult, tuple[str, ...]]:
    """One probe on an event loop of its own, as the exporter runs it, with its log."""
    with capture() as probe_log:
        probing: Any = state.prober.probe(target, module, Deadline.after(module.timeout),
                                          state.catalog, state.config.policy)
        # The engine's probe is a coroutine on the event loop (a plain call before it).
        result: ProbeResult = await probing if inspect.isawaitable(probing) else probing
    close = getattr(state.prober, "close", None)
    if close is not None:
        close()  # a cached fetch still running is not waited for
    return result, probe_log.lines


def run_check(config_path: str, target_name: str, output: str, module_name: str | None) -> int:
    """Exit 0 when the target is up, 1 when it is not, 2 when nothing could be probed."""
    try:
        state = ExporterState.load(config_path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        print(f"{config_path}: INVALID ({len(exc.problems)} problem(s))", file=sys.stderr)
        return 2
    config = state.config
    target = config.find_target(target_name)
    if module_name is not None and module_name not in config.modules:
        print(f"unknown module {module_name!r} (modules: {', '.join(config.modules)})",
              file=sys.stderr)
        return 2
    if target is None:
        if module_name is None:
            names = ", ".join(t.name for t in config.targets) or "none"
            print(f"target {target_name!r} is not in {config_path} (targets: {names}); name "
                  "a configured target, or pass --module to probe an address", file=sys.stderr)
            return 2
        target = TargetConfig(name=target_name, address=target_name, module=module_name)
    module = config.modules[module_name or target.module]
    state.start()  # file catalog sources are read now; URL sources are not waited for
    try:
        now = time.time()
        result, lines = asyncio.run(_probe(state, target, module))
        report = build_report(state, target, module, result, lines, module.timeout, now)
    finally:
        state.stop()
    text = (json.dumps(report, indent=2, default=str) + "\n" if output == "json"
            else render_text(report))
    sys.stdout.write(redact(text))
    sys.stdout.flush()
    return 0 if result.up else 1
