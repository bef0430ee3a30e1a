"""pydantic v2 against msgspec for the exporter's configuration (issue 15: "measure, then
choose"). Run: ``make bench-config`` (needs ``pip install msgspec``; it is not a dependency).

Measures, on the same YAML documents:
- the time to validate the example configuration and a generated 500-target fleet config
  (YAML parsing excluded: both libraries get the same already-loaded data);
- what each reports for a file with five mistakes: how many problems, with key paths or not.

The msgspec side models the same keys (modules, targets, winrm, probe) with
``forbid_unknown_fields``; it has no way to collect more than one error per document.
"""

# No "from __future__ import annotations": msgspec resolves the local classes at run time.

import argparse
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from citrix_license_exporter.config import ConfigError, parse_config
from citrix_license_exporter.settings import yamlsource

ROOT = Path(__file__).resolve().parents[1]

BROKEN = textwrap.dedent("""\
    modules:
      default:
        timout: 5s
        collectors: [probe, snmp]
        winrm: {username: u, port: 99999}
    targets:
      - {name: a}
    """)


def fleet_config(n: int) -> str:
    return yaml.safe_dump({
        "modules": {
            "default": {"timeout": "10s", "collectors": ["probe"]},
            "windows": {"timeout": "20s", "collectors": ["winrm", "probe"],
                        "winrm": {"username": "CORP\\svc", "password_env": "PW",
                                  "cache_interval": "15m"}},
        },
        "targets": [{"name": f"ls-{i}", "address": f"10.0.{i // 250}.{i % 250}",
                     "module": "windows" if i % 2 else "default"} for i in range(n)],
    })


def timed(fn: Any, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def msgspec_models() -> Any:
    import msgspec

    class WinRM(msgspec.Struct, forbid_unknown_fields=True):
        username: str = ""
        password_file: str | None = None
        password_env: str | None = None
        scheme: str = "https"
        auth: str = "ntlm"
        port: int | None = None
        cache_interval: str = "15m"

    class Probe(msgspec.Struct, forbid_unknown_fields=True):
        ports: dict[str, int] = {}
        tls: dict[str, Any] = {}

    class Module(msgspec.Struct, forbid_unknown_fields=True):
        timeout: str = "10s"
        collectors: list[str] = msgspec.field(default_factory=lambda: ["probe"])
        probe: Probe | None = None
        winrm: WinRM | None = None

    class Target(msgspec.Struct, forbid_unknown_fields=True):
        name: str
        address: str
        module: str = "default"
        telemetry: str = "automatic"

    class Config(msgspec.Struct, forbid_unknown_fields=True):
        modules: dict[str, Module]
        targets: list[Target] = []

    return msgspec, Config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    try:
        msgspec, MsgConfig = msgspec_models()
    except ImportError:
        print("msgspec is not installed: pip install msgspec", file=sys.stderr)
        return 1
    example = (ROOT / "examples" / "config.yml").read_text()
    docs = {"examples/config.yml": example, "fleet of 500 targets": fleet_config(500)}
    env = {"PW": "bench-password"}
    base = ROOT / "benchmarks"
    (secrets := base / "secrets").mkdir(exist_ok=True)
    (secrets / "winrm-password").write_text("bench-password\n")
    print("| document | YAML with lines | pydantic: parse_config, YAML included | "
          "msgspec: convert, same keys, fewer rules |")
    print("|---|---|---|---|")
    try:
        for name, text in docs.items():
            data = yaml.safe_load(text)
            p = timed(lambda t=text: parse_config(t, "c.yml", base_dir=base, environ=env),
                      args.rounds)
            m = timed(lambda d=data: msgspec.convert(d, MsgConfig), args.rounds)
            y = timed(lambda t=text: yamlsource.load(t), args.rounds)
            print(f"| {name} | {y * 1000:.2f} ms | {p * 1000:.2f} ms | {m * 1000:.3f} ms |")
    finally:
        (secrets / "winrm-password").unlink()
        secrets.rmdir()
    print("\nA file with five mistakes:\n")
    try:
        parse_config(BROKEN, "c.yml", base_dir=base, environ=env)
    except ConfigError as exc:
        print("pydantic:", *exc.lines(), sep="\n  ")
    try:
        msgspec.convert(yaml.safe_load(BROKEN), MsgConfig)
    except msgspec.ValidationError as exc:
        print("msgspec:\n  " + str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
