"""CPU per request of the candidate HTTP servers, measured the same way for each.

    python -m benchmarks.server_choice [--requests N]

Each candidate serves one route that answers 200 bytes, in a child process. A client process
sends N kept-alive GET requests (one connection, like Prometheus), then N on fresh connections.
The figure is the server process's CPU time (user + system, from /proc) per request.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import time

BODY = b"x" * 200
CANDIDATES = ("aiohttp", "uvicorn-asgi", "uvicorn-starlette", "hypercorn-asgi")


def serve(kind: str, port: int) -> None:
    if kind == "aiohttp":
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=BODY, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/probe", handle)
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
        return

    async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": BODY})

    app = asgi
    if kind.endswith("starlette"):
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def handle(request):  # type: ignore[no-untyped-def]
            return Response(BODY, media_type="text/plain")

        app = Starlette(routes=[Route("/probe", handle)])
    if kind.startswith("uvicorn"):
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    else:
        import asyncio

        from hypercorn.asyncio import serve as hserve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        asyncio.run(hserve(app, config))  # type: ignore[arg-type]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(kind: str, n: int) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.server_choice", "--serve", kind,
                             "--port", str(port)])
    try:
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(50):  # warm up
            conn.request("GET", "/probe")
            conn.getresponse().read()
        before = cpu_seconds(proc.pid)
        for _ in range(n):
            conn.request("GET", "/probe")
            conn.getresponse().read()
        kept = (cpu_seconds(proc.pid) - before) / n
        conn.close()
        before = cpu_seconds(proc.pid)
        for _ in range(n):
            fresh = http.client.HTTPConnection("127.0.0.1", port)
            fresh.request("GET", "/probe", headers={"Connection": "close"})
            fresh.getresponse().read()
            fresh.close()
        new = (cpu_seconds(proc.pid) - before) / n
        return kept, new
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    print("| server | CPU per kept-alive request | CPU per request on a new connection |")
    print("|---|---|---|")
    for kind in CANDIDATES:
        kept, new = measure(kind, args.requests)
        print(f"| {kind} | {kept * 1e6:.0f} µs | {new * 1e6:.0f} µs |", flush=True)


if __name__ == "__main__":
    main()
