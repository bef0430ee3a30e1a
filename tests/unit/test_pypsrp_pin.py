"""pypsrp is used through one hook that is not its public API (collectors/winrm_client.py:
``WSMan._create_header``) and sets its transport's session: the pin in pyproject.toml holds only
while the installed version is inside it and these are as used."""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from pypsrp.negotiate import HTTPNegotiateAuth
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
    message_id, element = WSMan("127.0.0.1", username="u", password="p", ssl=False)._create_header(
        "urn:action", "urn:resource", None, None, 20)
    assert isinstance(message_id, str) and element.tag.endswith("Header")
    # The transport builds its session lazily, so the one set before the first send is used.
    transport = _TransportHTTP("127.0.0.1", username="u", password="p", ssl=False, auth="ntlm")
    assert transport.session is None
    assert transport.wrap_required is True
    assert "wrap_required" in inspect.signature(HTTPNegotiateAuth).parameters
