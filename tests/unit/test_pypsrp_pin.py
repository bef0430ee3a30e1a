"""pypsrp is used through two hooks that are not its public API (collectors/winrm.py): the pin in
pyproject.toml holds only while the installed version is inside it and the hooks are as used."""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

import requests
from packaging.requirements import Requirement
from pypsrp.wsman import WSMan, _TransportHTTP

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        found[requirement.name] = requirement
    return found


def test_installed_pypsrp_and_pyspnego_are_inside_their_pins() -> None:
    for name in ("pypsrp", "pyspnego"):
        requirement = pins()[name]
        assert requirement.specifier.contains(version(name)), (name, version(name))
        # An upper bound: a new minor version is tested before it is allowed.
        assert any(spec.operator == "<" for spec in requirement.specifier), name


def test_the_transport_hooks_are_as_used() -> None:
    parameters = list(inspect.signature(WSMan._create_header).parameters)
    assert parameters == ["self", "action", "resource_uri", "option_set", "selector_set",
                          "timeout"]
    transport = _TransportHTTP("127.0.0.1", username="u", password="p", ssl=False, auth="ntlm")
    session = transport._build_session()
    assert isinstance(session, requests.Session)
    assert transport.session is None  # built lazily: ours is put in its place
    header = WSMan("127.0.0.1", username="u", password="p", ssl=False)._create_header(
        "urn:action", "urn:resource", None, None, 20)
    message_id, element = header
    assert isinstance(message_id, str) and element.tag.endswith("Header")
