"""A SIMULATED Delivery Controller REST API (``https://127.0.0.1:<port>/cvad/manage``).

Only what the exporter reads, in the JSON shapes of the public models (citrix-daas-rest-go,
``devportal-onprem-ga``): ``POST /Tokens`` (HTTP Basic), ``GET /Sites``, ``GET /Sites/{id}``
(SiteDetailResponseModel) and ``GET /Licensing/LicenseOverview`` (LicenseSummaryResponseModel,
site chosen by ``Citrix-InstanceId``). API calls need ``Citrix-CustomerId: CitrixOnPremises``
and ``Authorization: CWSAuth Bearer=<token>`` with a token this simulator issued and that has
not expired; otherwise 401. Paths match case-insensitively, like IIS.

Scenario section (all keys optional)::

    controller:
      site: Production            # the target's `site` key (default: not set: all sites)
      token_lifetime_seconds: 3600
      overview: true              # false: a controller without the license overview (404)
      fault: none                 # a fault on every API call (simulator/https.py)
      sites:
        - name: Production        # id: derived from the name unless given
          license_server: ls01.example.test   # default: <scenario name>.example.test
          license_server_port: 27000
          license_server_status: LasCompatible   # null: not reported
          grace_active: false     # LicensingGracePeriodActive
          grace_hours_left: null  # LicensingGraceHoursLeft
          out_of_box_grace: false
          licensing_model: UserDevice
          peak_concurrent_users: 120
          unique_users: 340
          licensed_sessions_active: 95
          alerts: [{level: Alarm, title: "..."}]
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .https import FAULT_KINDS, Answer, JSONServer, write_ca
from .scenario import Scenario, ScenarioError

USERNAME = "SIM\\prometheus-ro"
PASSWORD = "Sim-DDC-pa55word-do-not-log"  # noqa: S105 - simulated
CUSTOMER_ID = "CitrixOnPremises"
BASE = "/cvad/manage"

_SITE_KEYS = {
    "name", "id", "license_server", "license_server_port", "license_server_status",
    "grace_active", "grace_hours_left", "out_of_box_grace", "licensing_model",
    "peak_concurrent_users", "unique_users", "licensed_sessions_active", "alerts",
}


@dataclass
class SimSite:
    name: str
    id: str
    license_server: str
    license_server_port: int = 27000
    license_server_status: str | None = "LasCompatible"
    grace_active: bool | None = False
    grace_hours_left: int | None = None
    out_of_box_grace: bool | None = False
    licensing_model: str = "UserDevice"
    peak_concurrent_users: int | None = None
    unique_users: int | None = 0
    licensed_sessions_active: int | None = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def detail(self) -> dict[str, Any]:
        """SiteDetailResponseModel."""
        return {
            "Id": self.id,
            "Name": self.name,
            "OrchestationApiVersion": 1,
            "PrimaryZone": {"Id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
                            "Name": "Primary"},
            "ProductCode": "XDT",
            "ProductEdition": "PLT",
            "ProductVersion": "7.41",
            "LicenseServerName": self.license_server,
            "LicenseServerPort": self.license_server_port,
            "LicenseServerUri": f"https://{self.license_server}:8083/",
            "LicensingModel": self.licensing_model,
            "SiteConfigurationComplete": True,
            "SiteServices": [],
            "EnabledFeatures": [],
            "ColorDepth": "TwentyFourBit",
            "DefaultDesktopIconId": "1",
            "LicenseGraceSessionsRemaining": None,
            "LicensedSessionsActive": self.licensed_sessions_active,
            "LicensingGraceHoursLeft": self.grace_hours_left,
            "LicensingGracePeriodActive": self.grace_active,
            "LicensingOutOfBoxGracePeriodActive": self.out_of_box_grace,
            "PeakConcurrentLicenseUsers": self.peak_concurrent_users,
            "TotalUniqueLicenseUsers": self.unique_users,
            "LicensingAlerts": [
                {
                    "Priority": alert.get("priority", i + 1),
                    "AlertLevel": alert.get("level", "Info"),
                    "TypeCode": alert.get("type_code", "SIMULATED"),
                    "Title": alert.get("title", "Simulated licensing alert"),
                    "Detail": alert.get("detail", "SIMULATED"),
                    "Action": alert.get("action", ""),
                }
                for i, alert in enumerate(self.alerts)
            ],
        }

    def overview(self) -> dict[str, Any]:
        """LicenseSummaryResponseModel."""
        status = self.license_server_status
        return {
            "LicenseInformation": {
                "LicenseServerStatus": status,
                "LicenseServerWslAddress": f"https://{self.license_server}:8083",
                "LicenseServerLicensingAddress": f"{self.license_server_port}@"
                                                 f"{self.license_server}",
                "LicenseServer": self.license_server,
                "LicensePort": self.license_server_port,
                "LicenseProduct": "XDT",
                "ProductEdition": "PLT",
                "LicenseModel": self.licensing_model,
                "OutOfBoxGracePeriodActive": self.out_of_box_grace,
                "OutOfBoxGracePeriodHoursLeft": None,
                "UseLicenseActivationService": bool(status and status.startswith("Las")),
            },
            "LicenseInventories": [],
            "LicenseLasInventories": [],
            "NormalLicenses": 500,
            "OverdraftLicenses": 50,
            "LicensesUsage": self.licensed_sessions_active,
            "CertAccepted": True,
        }


@dataclass
class ControllerScenario:
    sites: list[SimSite]
    site: str | None = None
    token_lifetime_seconds: float = 3600.0
    overview: bool = True
    fault: str = "none"


def _site(raw: object, where: str, default_server: str) -> SimSite:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ScenarioError(f"{where}: a site is a mapping with a name")
    unknown = set(raw) - _SITE_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    name = raw["name"]
    values = {k: v for k, v in raw.items() if k not in ("name", "id", "license_server")}
    return SimSite(
        name=name,
        # Unique per site, as a controller's Ids are, even where names repeat (``where`` holds
        # the scenario and the site's position).
        id=str(raw.get("id") or uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.site.sim/{where}")),
        license_server=str(raw.get("license_server") or default_server),
        **values,
    )


def parse_controller_section(raw: object, source: str, scenario_name: str) -> ControllerScenario:
    where = f"{source}: controller"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping")
    unknown = set(raw) - {"sites", "site", "token_lifetime_seconds", "overview", "fault"}
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    default_server = f"{scenario_name}.example.test"
    raw_sites = raw.get("sites") or [{"name": "Site"}]
    if not isinstance(raw_sites, list):
        raise ScenarioError(f"{where}.sites: expected a list")
    fault = str(raw.get("fault", "none"))
    if fault not in FAULT_KINDS:
        raise ScenarioError(f"{where}.fault: {fault!r} (known: {', '.join(FAULT_KINDS)})")
    return ControllerScenario(
        sites=[_site(s, f"{where}.sites[{i}]", default_server) for i, s in enumerate(raw_sites)],
        site=raw.get("site"),
        token_lifetime_seconds=float(raw.get("token_lifetime_seconds", 3600)),
        overview=bool(raw.get("overview", True)),
        fault=fault,
    )


_ROUTES = [
    ("POST", re.compile(rf"^{BASE}/tokens/?$", re.IGNORECASE), "tokens"),
    ("GET", re.compile(rf"^{BASE}/sites/?$", re.IGNORECASE), "sites"),
    ("GET", re.compile(rf"^{BASE}/sites/([^/]+)/?$", re.IGNORECASE), "site"),
    ("GET", re.compile(rf"^{BASE}/licensing/licenseoverview/?$", re.IGNORECASE), "overview"),
]
_BEARER = re.compile(r"^CWSAuth\s+Bearer=(\S+)$", re.IGNORECASE)


class ControllerSimulator(JSONServer):
    """One simulated Delivery Controller."""

    def __init__(self, section: ControllerScenario, name: str = "controller") -> None:
        self.section = section
        self.token_lifetime = section.token_lifetime_seconds
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued: list[str] = []  # every token ever issued (tests grep logs for them)
        self._token_lock = threading.Lock()
        super().__init__(name)
        if section.fault != "none":
            self.set_fault(section.fault)

    def revoke_tokens(self) -> None:
        """Forget every issued token (as a restarted controller does): the next call is 401."""
        with self._token_lock:
            self.tokens.clear()

    def site(self, key: str) -> SimSite | None:
        return next((s for s in self.section.sites if key in (s.id, s.name)), None)

    def route(self, method: str, path: str) -> str | None:
        for want, pattern, name in _ROUTES:
            if method == want and pattern.match(path):
                return name
        return None

    def answer(
        self, route: str, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        if route == "tokens":
            return self._login(headers)
        denied = self._check(headers)
        if denied is not None:
            return denied
        if route == "sites":
            return Answer(200, {"Items": [{"Id": s.id, "Name": s.name}
                                          for s in self.section.sites],
                                "ContinuationToken": None})
        if route == "site":
            match = _ROUTES[2][1].match(path.split("?", 1)[0])
            assert match is not None
            site = self.site(unquote(match.group(1)))
            if site is None:
                return Answer(404, {"ErrorMessage": "site not found (SIMULATED)"})
            return Answer(200, site.detail())
        # overview
        if not self.section.overview:
            return Answer(404, {"ErrorMessage": "no such resource (SIMULATED)"})
        instance = headers.get("citrix-instanceid")
        site = self.site(instance) if instance else self.section.sites[0]
        if site is None:
            return Answer(404, {"ErrorMessage": "site not found (SIMULATED)"})
        return Answer(200, site.overview())

    def _login(self, headers: Mapping[str, str]) -> Answer:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return Answer(401, {"ErrorMessage": "Basic credentials required"},
                          {"WWW-Authenticate": 'Basic realm="cvad"'})
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except ValueError:
            return Answer(400, {"ErrorMessage": "bad Basic credentials"})
        if (user, password) != (USERNAME, PASSWORD):
            return Answer(401, {"ErrorMessage": "invalid credentials"})
        token = secrets.token_urlsafe(24)
        with self._token_lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
            self.issued.append(token)
        expires = datetime.now(UTC) + timedelta(seconds=self.token_lifetime)
        return Answer(200, {
            "Token": token,
            "Principal": USERNAME,
            "UserId": "S-1-5-21-0-0-0-1001",
            "CustomerId": CUSTOMER_ID,
            "ExpiresAt": expires.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        })

    def _check(self, headers: Mapping[str, str]) -> Answer | None:
        if headers.get("citrix-customerid") != CUSTOMER_ID:
            return Answer(400, {"ErrorMessage": "Citrix-CustomerId must be CitrixOnPremises"})
        match = _BEARER.match(headers.get("authorization", ""))
        with self._token_lock:
            expiry = self.tokens.get(match.group(1)) if match else None
        if expiry is None or time.monotonic() >= expiry:
            return Answer(401, {"ErrorMessage": "token missing, unknown or expired"})
        return None


# ---------------------------------------------------------------------------------------------
# In the fleet


class SimulatedController:
    """The fleet's view of one simulated Delivery Controller (see simulator/fleet.py)."""

    module_name = "controller"

    def __init__(self, scenario: Scenario, section: ControllerScenario) -> None:
        self.section = section
        self.simulator = ControllerSimulator(section, scenario.name)

    def module_config(self, secrets_dir: Path) -> dict[str, Any]:
        secrets_dir.mkdir(parents=True, exist_ok=True)
        password = secrets_dir / "controller-password"
        password.write_text(PASSWORD + "\n", encoding="utf-8")
        password.chmod(0o600)
        ca = write_ca(secrets_dir)
        return {
            "collectors": ["probe", "controller"],
            "controller": {
                "username": USERNAME,
                "password_file": password.name,
                "tls": {"ca_file": ca.name},
                "cache_interval": "1m",
            },
        }

    def target_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"controllers": [self.simulator.url]}
        if self.section.site is not None:
            fields["site"] = self.section.site
        return fields

    def close(self) -> None:
        self.simulator.close()


def from_scenario(scenario: Scenario) -> SimulatedController | None:
    if "controller" not in scenario.sections:
        return None
    section = parse_controller_section(
        scenario.sections["controller"], scenario.source or scenario.name, scenario.name
    )
    return SimulatedController(scenario, section)
