"""The ``controller:`` and ``cloud:`` module sections and their target keys."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from citrix_license_exporter.config import Config, ConfigError, Secret, parse_config

GOOD = """
modules:
  site:
    collectors: [probe, controller]
    controller:
      username: 'CORP\\svc-prom'
      password_file: ddc.txt
      tls: {ca_file: ca.pem}
      cache_interval: 2m
  cloud:
    collectors: [probe, cloud]
    cloud:
      customer_id: acme123
      client_id_env: CC_ID
      client_secret_file: cc-secret.txt
targets:
  - name: ls-paris
    address: ls-paris.corp.example
    module: site
    controllers: [https://ddc1.corp.example, 'https://ddc2.corp.example:8443/']
    site: Production
  - name: ls-lyon
    address: 10.0.0.5
    module: cloud
    cloud_fqdn: LS-LYON.corp.example.
"""


def parse(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> Config:
    for name in ("ddc.txt", "cc-secret.txt", "ca.pem"):
        (tmp_path / name).write_text("s3cret-value\n")
    return parse_config(textwrap.dedent(text), "cfg.yml", base_dir=tmp_path,
                        environ={"CC_ID": "client-1"} if env is None else env)


def problems(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, tmp_path, env)
    return info.value.lines()


def test_valid_sections_and_target_keys(tmp_path: Path) -> None:
    config = parse(GOOD, tmp_path)
    site = config.modules["site"]
    assert site.controller is not None
    assert site.controller.username == "CORP\\svc-prom"
    assert site.controller.password == Secret("s3cret-value")
    assert site.controller.tls.verify() == str(tmp_path / "ca.pem")
    assert site.controller.base_path == "/cvad/manage"
    assert site.controller.license_overview_path == "/Licensing/LicenseOverview"
    assert site.cache_interval("controller") == 120.0
    cloud = config.modules["cloud"]
    assert cloud.cloud is not None
    assert cloud.cloud.client_id == Secret("client-1")
    assert cloud.cloud.client_secret == Secret("s3cret-value")
    assert cloud.cloud.trust_url == "https://trust.citrixworkspacesapi.net"
    assert cloud.cloud.licensing_url == "https://licensing.citrixworkspacesapi.net"
    assert cloud.cloud.tls.verify() is True  # verification on by default
    assert cloud.cache_interval("cloud") == 900.0
    assert cloud.cache_interval("controller") == 0.0
    paris = config.find_target("ls-paris")
    assert paris is not None
    assert paris.controllers == ("https://ddc1.corp.example", "https://ddc2.corp.example:8443")
    assert paris.site == "Production"
    lyon = config.find_target("ls-lyon")
    assert lyon is not None and lyon.cloud_fqdn == "ls-lyon.corp.example"
    assert "s3cret" not in repr(config)


def test_urls_and_overview_path_are_configurable(tmp_path: Path) -> None:
    text = GOOD.replace("cache_interval: 2m", "cache_interval: 0s\n      "
                        "license_overview_path: ''\n      base_path: /api/cvad/manage/")
    text = text.replace("client_secret_file: cc-secret.txt", "client_secret_file: cc-secret.txt"
                        "\n      trust_url: https://127.0.0.1:8443/"
                        "\n      licensing_url: https://127.0.0.1:8443")
    config = parse(text, tmp_path)
    controller = config.modules["site"].controller
    assert controller is not None
    assert controller.license_overview_path == ""  # not read
    assert controller.base_path == "/api/cvad/manage"
    assert config.modules["site"].cache_interval("controller") == 0.0
    cloud = config.modules["cloud"].cloud
    assert cloud is not None
    assert cloud.trust_url == cloud.licensing_url == "https://127.0.0.1:8443"


def test_every_problem_is_listed_with_its_key_path(tmp_path: Path) -> None:
    lines = problems(
        """
        modules:
          site:
            collectors: [probe, controller]
            controller:
              username: x
              password: inline
              tls: {ca_file: missing.pem}
              base_path: cvad
              colour: blue
          cloud:
            collectors: [probe, cloud]
            cloud:
              customer_id: 'acme 123'
              client_id: inline-id
              client_secret_env: NOPE
              trust_url: http://trust.example
              cache_interval: 0s
          empty:
            collectors: [probe, controller, cloud]
        targets:
          - name: a
            address: a.example
            module: site
            controllers: [http://ddc.example, 'https://ddc.example/cvad/manage', 5]
          - name: b
            address: b.example
            module: site
          - name: c
            address: c.example
            controllers: []
        """,
        tmp_path,
    )
    expected = [
        "modules.site.controller.password: inline secrets are not accepted",
        "modules.site.controller.colour: unknown key",
        "modules.site.controller.tls.ca_file:",
        "modules.site.controller.base_path: expected a path starting with '/'",
        "modules.cloud.cloud.client_id: inline secrets are not accepted",
        "modules.cloud.cloud.client_secret_env: the environment variable named under "
        "client_secret_env is not set",
        "modules.cloud.cloud.customer_id: expected the Citrix Cloud customer ID",
        "modules.cloud.cloud.trust_url: expected an https:// URL",
        "modules.cloud.cloud.cache_interval: must be greater than zero",
        "modules.empty: collector controller is enabled but the module has no controller section",
        "modules.empty: collector cloud is enabled but the module has no cloud section",
        "targets[0].controllers[0]: expected https://host[:port] (no path)",
        "targets[0].controllers[1]: expected https://host[:port] (no path)",
        "targets[0].controllers[2]: expected a non-empty string",
        "targets[1]: module 'site' runs the controller collector: list the site's Delivery "
        "Controllers under controllers",
        "targets[2].controllers: expected a non-empty list",
    ]
    text = "\n".join(lines)
    for line in expected:
        assert f"cfg.yml: {line}" in text, line
    assert "inline" not in text.replace("inline secrets", "")  # no secret echoed


def test_credentials_are_required(tmp_path: Path) -> None:
    lines = problems(
        """
        modules:
          site:
            collectors: [controller]
            controller: {username: x}
          cloud:
            collectors: [cloud]
            cloud: {customer_id: acme}
        """,
        tmp_path,
    )
    assert "cfg.yml: modules.site.controller: the controller API needs password_file or " \
           "password_env (line 5)" in lines
    assert "cfg.yml: modules.cloud.cloud: Citrix Cloud API access needs client_id_file or " \
           "client_id_env (line 8)" in lines
    assert "cfg.yml: modules.cloud.cloud: Citrix Cloud API access needs client_secret_file " \
           "or client_secret_env (line 8)" in lines
