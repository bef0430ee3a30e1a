"""Command line: flags in the Prometheus dotted style, each with a CITRIX_LICENSE_EXPORTER_* twin.

    citrix-license-exporter --config.file=config.yml      run the exporter
    citrix-license-exporter --config.check --config.file=config.yml
    citrix-license-exporter demo                          simulated License Servers + exporter
    citrix-license-exporter catalog show|check FILE       the release catalog
    citrix-license-exporter check TARGET [--output json]  one probe, as a readable report
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__
from .config import ConfigError, load_config
from .log import LEVELS, setup_logging

if TYPE_CHECKING:
    from .app import ExporterState
    from .web import ExporterServer

log = logging.getLogger("citrix_license_exporter")

DEFAULT_PORT = 9957
ENV_PREFIX = "CITRIX_LICENSE_EXPORTER_"


def _env(flag: str, default: str | None) -> str | None:
    return os.environ.get(ENV_PREFIX + flag.replace(".", "_").replace("-", "_").upper(), default)


def parse_listen_address(value: str) -> tuple[str, int]:
    """``:9957``, ``127.0.0.1:9957``, ``[::1]:9957``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def _add_server_flags(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """The server flags. On a subcommand their defaults are suppressed, so a flag given before
    the subcommand is not overwritten by the subcommand's default."""

    def add(*names: str, **kwargs: object) -> None:
        if sub:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]

    add(
        "--web.listen-address", dest="listen", type=parse_listen_address,
        default=parse_listen_address(_env("web.listen-address", f":{DEFAULT_PORT}") or ""),
        help=f"address to listen on (default :{DEFAULT_PORT}; env {ENV_PREFIX}WEB_LISTEN_ADDRESS)",
    )
    add(
        "--web.config.file", dest="web_config", default=_env("web.config.file", None),
        help="exporter-toolkit web configuration (TLS, basic auth) for the exporter's endpoint",
    )
    add(
        "--web.max-concurrent-probes", dest="max_probes", type=int,
        default=int(_env("web.max-concurrent-probes", "256") or 256),
        help="probes running at once before more are refused with 503 (default 256)",
    )
    add(
        "--web.max-connections", dest="max_connections", type=int,
        default=int(_env("web.max-connections", "1024") or 1024),
        help="client connections open at once; past it the longest idle one is closed "
             "(default 1024, lowered to half the open-file limit)",
    )
    add(
        "--log.level", dest="log_level", choices=LEVELS, default=_env("log.level", "info"),
    )
    add(
        "--log.format", dest="log_format", choices=("logfmt", "json"),
        default=_env("log.format", "logfmt"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citrix-license-exporter",
        description="Prometheus exporter for Citrix License Servers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config.file", dest="config_file",
        default=_env("config.file", "citrix-license-exporter.yml"),
        help=f"configuration file (env {ENV_PREFIX}CONFIG_FILE)",
    )
    parser.add_argument(
        "--config.check", dest="config_check", action="store_true",
        help="validate the configuration file, print every problem, exit 0 or 1",
    )
    _add_server_flags(parser)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run on simulated License Servers (no real server)")
    _add_server_flags(demo, sub=True)
    demo.add_argument("--scenarios", default=None,
                      help="folder of scenario files (default: the bundled demo fleet)")
    demo.add_argument("--config.out", dest="config_out", default=None,
                      help="also write the generated exporter config here")
    catalog = sub.add_parser("catalog", help="inspect or validate the release catalog")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    show = catalog_sub.add_parser(
        "show", help="print the effective catalog and the update deadline of each build"
    )
    show.add_argument(
        "--config.file", dest="show_config_file", default=None,
        help="configuration whose catalog section and policy to use (default: as the exporter; "
             "without a configuration file, the bundled catalog and the default policy)",
    )
    show.add_argument(
        "--build", dest="builds", action="append", default=None, metavar="BUILD",
        help="show only this build in detail: a build number (52100) or a version text "
             "('11.17.2.0 build 52100'); may be repeated",
    )
    show.add_argument(
        "--output", dest="output", choices=("text", "json"), default="text",
        help="text (default) or json: one object with a list 'builds' (docs/catalog.md)",
    )
    show.add_argument(
        "--telemetry", dest="telemetry", choices=("automatic", "manual"), default="automatic",
        help="judge the builds as for targets with this telemetry setting (manual: an offline "
             "server, held to the rules for servers that report by hand)",
    )
    check = catalog_sub.add_parser("check", help="validate a catalog file")
    check.add_argument("file")
    probe_check = sub.add_parser(
        "check", help="probe one target now and print what was read, derived and assumed"
    )
    probe_check.add_argument("target", help="a configured target (or an address with --module)")
    probe_check.add_argument("--config.file", dest="check_config_file", default=None,
                             help="configuration file (default: as the exporter)")
    probe_check.add_argument("--module", default=None, help="the module to probe with")
    probe_check.add_argument("--output", choices=("text", "json"), default="text")
    return parser


def missing_config_hint(path: str) -> str | None:
    """What to do when there is no configuration file at ``path`` (None when there is one)."""
    if os.path.exists(path):
        return None
    return (
        f"no configuration file at {path}: pass one with --config.file=PATH (or "
        f"{ENV_PREFIX}CONFIG_FILE=PATH; examples/config.yml in the source is a starting "
        "point), or try the exporter on simulated License Servers with "
        "'citrix-license-exporter demo'"
    )


def run_server(
    args: argparse.Namespace,
    *,
    demo: bool = False,
    on_stop: Callable[[], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> int:
    from .app import ExporterState
    from .web import ExporterServer

    install_thread_excepthook()
    hint = missing_config_hint(args.config_file)
    if hint is not None:
        log.error("not starting: " + hint, extra={"fields": {"file": args.config_file}})
        return 1
    try:
        state = ExporterState.load(args.config_file)
    except ConfigError as exc:
        for line in exc.lines():
            log.error("configuration problem", extra={"fields": {"problem": line}})
        log.error("not starting: the configuration is invalid",
                  extra={"fields": {"file": args.config_file}})
        return 1
    state.demo = demo
    try:
        server = ExporterServer(args.listen, state, max_concurrent_probes=args.max_probes,
                                max_connections=args.max_connections)
    except OSError as exc:
        log.error("cannot listen", extra={"fields": {"address": args.listen, "reason": str(exc)}})
        return 1
    if args.web_config:
        from .webconfig import install_web_config

        try:
            install_web_config(server, args.web_config)
        except ValueError as exc:
            log.error("invalid web config", extra={"fields": {"file": args.web_config,
                                                               "reason": str(exc)}})
            return 1
    state.start()  # the release catalog sources (file sources are read before serving)
    try:
        asyncio.run(_serve(server, state, announce))
    finally:
        server.server_close()
        state.stop()
    if on_stop is not None:
        on_stop()
    log.info("stopped")
    return 0


async def _serve(
    server: ExporterServer, state: ExporterState, announce: Callable[[str], None] | None
) -> None:
    loop = asyncio.get_running_loop()

    def on_stop_signal(signum: int) -> None:
        log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
        server.stop()

    # SIGHUP storms coalesce: at most one reload runs and one waits (reload.py).
    loop.add_signal_handler(signal.SIGHUP, server.reloader.request)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop_signal, signum)

    def started() -> None:
        freeze_startup_objects()
        server.ready.set()
        host, port = str(server.server_address[0]), int(server.server_address[1])
        log.info(
            "listening",
            extra={"fields": {"address": f"{host}:{port}", "version": __version__,
                              "targets": len(state.config.targets)}},
        )
        if announce is not None:
            announce(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}")

    await server.serve(started)


def freeze_startup_objects() -> None:
    """Move every object alive at start-up (the imported modules, the configuration, the
    catalog: ~100,000 objects) out of the garbage collector's sight (``gc.freeze``).

    They live as long as the process, yet each full collection walked all of them again: in a
    round of 500 probes at once, where many objects survive a young collection while their
    probes wait, full collections took ~7% of the exporter's CPU (docs/performance.md). Frozen
    objects are still freed by reference counting; only a cycle among them would stay."""
    gc.collect()
    gc.freeze()


def install_thread_excepthook() -> None:
    """A thread that dies of an exception logs one line (the traceback at debug level), never
    raw traceback lines in a JSON or logfmt log."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error("thread failed", extra={"fields": {
            "thread": name, "reason": f"{args.exc_type.__name__}: {args.exc_value}"}})
        log.debug("thread failure details",
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]

    threading.excepthook = hook


def config_check(path: str) -> int:
    hint = missing_config_hint(path)
    if hint is not None:
        print(f"{path}: INVALID ({hint})", file=sys.stderr)
        return 1
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        print(f"{path}: INVALID ({len(exc.problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(config.modules)} module(s), {len(config.targets)} target(s))")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args)
    if args.command == "catalog":
        from .catalog_cli import run_catalog_command

        return int(run_catalog_command(args))
    if args.command == "check":
        from .check import run_check

        return run_check(args.check_config_file or args.config_file, args.target, args.output,
                         args.module)
    if args.config_check:
        return config_check(args.config_file)
    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
