"""A SIMULATED Citrix Cloud licensing API (trust and licensing hosts in one HTTPS server).

What the exporter calls, in the shapes of the public partner scripts: ``POST
/root/tokens/clients`` with ``{"ClientId", "ClientSecret"}`` answers ``{"token", "expiresIn",
...}``; ``GET /{customerId}/licenseservers`` with ``Authorization: CwsAuth bearer=<token>``
answers ``{"licenseServersStatus": [...]}``. An unknown or expired token gets 401, another
customer's ID 403.

The list belongs to the Citrix Cloud customer, not to one License Server, so every scenario
with the same ``customer_id`` adds its License Server to ONE simulated Cloud (started with the
first such scenario, stopped with the last), and all of them share one exporter module.

Scenario section (all keys optional)::

    cloud:
      customer_id: simulated-customer
      fqdn: ls01.example.test      # default: <scenario name>.example.test
      listed: true                 # false: Citrix Cloud does not list this License Server
      phoning_home: true           # isPhoningHome
      last_report_hours_ago: 3     # lastPhoningHomeTime = now - this; null: never reported
      time_format: us              # us (12/30/2015 12:21:15) | iso (...T11:12:04.00+00:00)
      compliant: true              # isCompliant
      expired: false
      days_to_expire: 300
      fault: none                  # a fault of the shared Cloud (simulator/https.py), e.g.
                                   # forbidden: this customer cannot use the API
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .https import FAULT_KINDS, Answer, JSONServer, write_ca
from .scenario import Scenario, ScenarioError

CLIENT_ID = "sim-api-client-0001"
CLIENT_SECRET = "Sim-cloud-client-secret-do-not-log"  # noqa: S105 - simulated
DEFAULT_CUSTOMER = "simulated-customer"

_KEYS = {"customer_id", "fqdn", "listed", "phoning_home", "last_report_hours_ago", "compliant",
         "expired", "days_to_expire", "fault", "time_format"}
#: lastPhoningHomeTime as Citrix's own mock data writes it (reference file, "Evidence of
#: 2026-12"): the US form ``12/30/2015 12:21:15`` and ISO 8601 ``2018-03-27T11:12:04.00+00:00``.
TIME_FORMATS = {"us": "%m/%d/%Y %H:%M:%S", "iso": "%Y-%m-%dT%H:%M:%S.00+00:00"}
_BEARER = re.compile(r"^CwsAuth\s+bearer=(\S+)$", re.IGNORECASE)
_LIST = re.compile(r"^/([^/]+)/licenseservers/?$", re.IGNORECASE)


@dataclass
class CloudScenario:
    customer_id: str = DEFAULT_CUSTOMER
    fqdn: str = ""
    listed: bool = True
    phoning_home: bool | None = True
    last_report_hours_ago: float | None = 3.0
    compliant: bool | None = True
    expired: bool = False
    days_to_expire: int = 300
    fault: str = "none"
    #: us | iso: how lastPhoningHomeTime is written (the default: the US form of the mock data).
    time_format: str = "us"

    def entry(self, now: datetime) -> dict[str, Any]:
        last = (None if self.last_report_hours_ago is None
                else now - timedelta(hours=self.last_report_hours_ago))
        expiry = now + timedelta(days=self.days_to_expire)
        return {
            "hostID": self.fqdn.split(".")[0].upper(),
            "fqdn": self.fqdn,
            "isPhoningHome": self.phoning_home,
            "lastPhoningHomeTime": (
                None if last is None else last.strftime(TIME_FORMATS[self.time_format])
            ),
            "isEverReported": last is not None,
            "isFoundInBackOffice": True,
            "isNonCspLicenseInstalled": False,
            "isCcu": False,
            "isCompliant": self.compliant,
            "isExpired": self.expired,
            "daysToExpire": self.days_to_expire,
            "licenseExpirationDate": expiry.strftime("%Y-%m-%dT00:00:00Z"),
            "isLicenseServerFree": False,
        }


def parse_cloud_section(raw: object, source: str, scenario_name: str) -> CloudScenario:
    where = f"{source}: cloud"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    section = CloudScenario(**raw)
    if not section.fqdn:
        section.fqdn = f"{scenario_name}.example.test"
    if section.time_format not in TIME_FORMATS:
        raise ScenarioError(f"{where}.time_format: {section.time_format!r} (us or iso)")
    if section.fault not in FAULT_KINDS:
        raise ScenarioError(f"{where}.fault: {section.fault!r} (known: {', '.join(FAULT_KINDS)})")
    return section


#: Other License Servers of the simulated customer, never a target: the list always holds both
#: time forms and a never-reported server whose time is a placeholder (.NET DateTime.MinValue
#: in the US form: SIMULATED, no public capture shows what such an entry holds), so every test
#: that reads the list reads them too.
OTHER_SERVERS: list[dict[str, Any]] = [
    {"fqdn": "ls-other-us.simulated.invalid", "isPhoningHome": True, "isEverReported": True,
     "lastPhoningHomeTime": "12/30/2015 12:21:15", "isCompliant": True, "isExpired": False},
    {"fqdn": "ls-other-iso.simulated.invalid", "isPhoningHome": True, "isEverReported": True,
     "lastPhoningHomeTime": "2018-03-27T11:12:04.00+00:00", "isCompliant": True,
     "isExpired": False},
    {"fqdn": "ls-other-never.simulated.invalid", "isPhoningHome": False,
     "isEverReported": False, "lastPhoningHomeTime": "1/1/0001 12:00:00 AM",
     "isCompliant": False, "isExpired": False},
]


class CloudSimulator(JSONServer):
    """One simulated Citrix Cloud customer."""

    def __init__(self, customer_id: str, token_lifetime_seconds: float = 3600.0) -> None:
        self.customer_id = customer_id
        self.token_lifetime = token_lifetime_seconds
        self.servers: dict[str, CloudScenario] = {}
        self.tokens: dict[str, float] = {}
        self.issued: list[str] = []
        self._data_lock = threading.Lock()
        super().__init__(f"cloud-{customer_id}")

    def add(self, section: CloudScenario) -> None:
        with self._data_lock:
            self.servers[section.fqdn] = section

    def remove(self, fqdn: str) -> None:
        with self._data_lock:
            self.servers.pop(fqdn, None)

    def revoke_tokens(self) -> None:
        with self._data_lock:
            self.tokens.clear()

    def route(self, method: str, path: str) -> str | None:
        if method == "POST" and path.rstrip("/").lower() == "/root/tokens/clients":
            return "tokens"
        if method == "GET" and _LIST.match(path):
            return "licenseservers"
        return None

    def answer(
        self, route: str, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        if route == "tokens":
            try:
                doc = json.loads(body or b"{}")
            except ValueError:
                return Answer(400, {"error": "invalid JSON"})
            if not isinstance(doc, dict) or (doc.get("ClientId"), doc.get("ClientSecret")) != (
                CLIENT_ID, CLIENT_SECRET
            ):
                return Answer(401, {"error": "invalid client"})
            token = secrets.token_urlsafe(24)
            with self._data_lock:
                self.tokens[token] = time.monotonic() + self.token_lifetime
                self.issued.append(token)
            return Answer(200, {"principal": CLIENT_ID, "subject": CLIENT_ID, "token": token,
                                "openIdToken": None, "expiresIn": f"{self.token_lifetime:g}"})
        match = _BEARER.match(headers.get("authorization", ""))
        with self._data_lock:
            expiry = self.tokens.get(match.group(1)) if match else None
        if expiry is None or time.monotonic() >= expiry:
            return Answer(401, {"error": "token missing, unknown or expired"})
        list_match = _LIST.match(path.split("?", 1)[0])
        assert list_match is not None
        if list_match.group(1) != self.customer_id:
            return Answer(403, {"error": "not authorised for this customer"})
        now = datetime.now(UTC)
        with self._data_lock:
            entries = [s.entry(now) for s in self.servers.values() if s.listed]
        return Answer(200, {"customerId": self.customer_id,
                            "licenseServersStatus": entries + OTHER_SERVERS})


_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, tuple[CloudSimulator, int]] = {}


def shared_cloud(customer_id: str) -> CloudSimulator:
    """The running simulated Cloud of ``customer_id`` (started on first use), reference counted
    with release_cloud()."""
    with _SHARED_LOCK:
        sim, users = _SHARED.get(customer_id, (None, 0))
        if sim is None:
            sim = CloudSimulator(customer_id)
        _SHARED[customer_id] = (sim, users + 1)
        return sim


def release_cloud(customer_id: str) -> None:
    with _SHARED_LOCK:
        sim, users = _SHARED[customer_id]
        if users > 1:
            _SHARED[customer_id] = (sim, users - 1)
            return
        del _SHARED[customer_id]
    sim.close()


# ---------------------------------------------------------------------------------------------
# In the fleet


class SimulatedCloud:
    """The fleet's view of one License Server in a simulated Citrix Cloud."""

    def __init__(self, section: CloudScenario) -> None:
        self.section = section
        self.simulator = shared_cloud(section.customer_id)
        self.simulator.add(section)
        if section.fault != "none":
            self.simulator.set_fault(section.fault)

    @property
    def module_name(self) -> str:
        suffix = "" if self.section.customer_id == DEFAULT_CUSTOMER else (
            "-" + self.section.customer_id
        )
        return f"cloud{suffix}"

    def module_config(self, secrets_dir: Path) -> dict[str, Any]:
        secrets_dir.mkdir(parents=True, exist_ok=True)
        for name, value in (("cloud-client-id", CLIENT_ID),
                            ("cloud-client-secret", CLIENT_SECRET)):
            path = secrets_dir / name
            path.write_text(value + "\n", encoding="utf-8")
            path.chmod(0o600)
        ca = write_ca(secrets_dir)
        return {
            "collectors": ["probe", "cloud"],
            "cloud": {
                "customer_id": self.section.customer_id,
                "client_id_file": "cloud-client-id",
                "client_secret_file": "cloud-client-secret",
                "trust_url": self.simulator.url,
                "licensing_url": self.simulator.url,
                "tls": {"ca_file": ca.name},
                "cache_interval": "15m",
            },
        }

    def target_fields(self) -> dict[str, Any]:
        return {"cloud_fqdn": self.section.fqdn}

    def close(self) -> None:
        self.simulator.remove(self.section.fqdn)
        release_cloud(self.section.customer_id)


def from_scenario(scenario: Scenario) -> SimulatedCloud | None:
    if "cloud" not in scenario.sections:
        return None
    return SimulatedCloud(
        parse_cloud_section(scenario.sections["cloud"], scenario.source or scenario.name,
                            scenario.name)
    )
