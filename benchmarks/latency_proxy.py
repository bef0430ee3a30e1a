"""A latency proxy on 127.0.0.1: one listener per port of a simulated fleet, each forwarding to
its simulator with every byte from the client held back ``--latency`` seconds (a delay line,
order kept, answers forwarded at once).

    python -m benchmarks.latency_proxy --config fleet/exporter.yml --latency 0.02 \\
        --config.out fleet/exporter-20ms.yml

It reads the exporter configuration the simulator wrote, listens for every target port and
``winrm_url``, and writes the same configuration pointing at its listeners. Effect per
protocol, the same for the exporter and for blackbox_exporter:

- TLS handshake: the ClientHello reaches the server ``latency`` late, so the client's handshake
  takes ``latency`` longer;
- WinRM: every HTTP request (NTLM legs, Enumerate, Pull, shell operations) is answered
  ``latency`` late, as over a link with that round-trip time;
- a plain TCP connect completes in the kernel, before any byte flows: a proxy in user space
  cannot delay it (that needs ``tc netem``, i.e. root and a network namespace of its own, which
  would also slow every other process on a shared machine's loopback).

Running apart from the exporter keeps the proxy's CPU out of the exporter's process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

HOST = "127.0.0.1"
CHUNK = 64 * 1024


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy reader to writer; each chunk (and the end of stream) leaves ``delay`` s after it
    arrived. Reading goes on meanwhile, so the delay does not add up along a stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            try:
                data = await reader.read(CHUNK)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    finally:
        if not sender.done():
            sender.cancel()


class DelayProxy:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.servers: list[asyncio.Server] = []
        self.connections = 0

    async def listen(self, upstream_port: int) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                up_reader, up_writer = await asyncio.open_connection(HOST, upstream_port)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(
                    _pipe(reader, up_writer, self.latency),
                    _pipe(up_reader, writer, 0.0),
                    return_exceptions=True,
                )
            finally:
                for w in (writer, up_writer):
                    with contextlib.suppress(OSError):
                        w.close()

        server = await asyncio.start_server(handle, HOST, 0, backlog=1024)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def proxy_config(self, config: dict[str, Any], limit: int | None) -> dict[str, Any]:
        """The configuration with every target port and winrm_url replaced by a listener."""
        targets = config.get("targets") or []
        if limit is not None:
            targets = targets[:limit]
        for target in targets:
            ports = target.get("ports") or {}
            for name, port in list(ports.items()):
                ports[name] = await self.listen(int(port))
            url = target.get("winrm_url")
            if url:
                parts = urlsplit(url)
                port = await self.listen(int(parts.port or 5985))
                target["winrm_url"] = urlunsplit(
                    (parts.scheme, f"{HOST}:{port}", parts.path, parts.query, parts.fragment)
                )
        return {**config, "targets": targets}


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config_in: Path, config_out: Path, latency: float, limit: int | None) -> None:
    proxy = DelayProxy(latency)
    config = yaml.safe_load(config_in.read_text(encoding="utf-8"))
    proxied = await proxy.proxy_config(config, limit)
    config_out.write_text(
        f"# SIMULATED fleet behind a {latency * 1000:g} ms latency proxy (benchmarks).\n"
        + yaml.safe_dump(proxied, sort_keys=False),
        encoding="utf-8",
    )
    print(f"ready listeners={len(proxy.servers)} config={config_out}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in proxy.servers:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency_proxy")
    parser.add_argument("--config", required=True, type=Path,
                        help="exporter configuration written by the simulator")
    parser.add_argument("--config.out", dest="config_out", required=True, type=Path,
                        help="where to write the configuration that goes through the proxy "
                             "(same folder as --config, for the secret files it names)")
    parser.add_argument("--latency", type=float, required=True, help="seconds")
    parser.add_argument("--targets", type=int, default=None,
                        help="proxy only the first N targets")
    args = parser.parse_args(argv)
    _raise_open_files_limit()
    asyncio.run(serve(args.config, args.config_out, args.latency, args.targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
