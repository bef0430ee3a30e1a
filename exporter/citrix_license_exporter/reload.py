"""Configuration reloads, coalesced: a storm of SIGHUPs or ``POST /-/reload`` costs at most one
reload running and one queued, in one thread, however many requests arrive.

Each request is answered by a reload that started after it arrived, so a caller that changed
the file and then asked for a reload always sees its change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Reloader:
    def __init__(self, reload: Callable[[], tuple[bool, str]]) -> None:
        self._reload = reload
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reload")
        self._next: asyncio.Future[tuple[bool, str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0  # reloads run (not requested)

    async def reload(self) -> tuple[bool, str]:
        """Request a reload; wait for the one that serves this request."""
        return await asyncio.shield(self.request())

    def request(self) -> asyncio.Future[tuple[bool, str]]:
        """Request a reload (a SIGHUP need not wait for it); call on the loop's thread."""
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        waiter = self._next
        if self._task is None:
            self._task = loop.create_task(self._run())
        return waiter

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._next is not None:
                waiter, self._next = self._next, None
                self.reloads += 1
                try:
                    result = await loop.run_in_executor(self._pool, self._reload)
                except Exception as exc:  # never: ExporterState.reload reports its own errors
                    result = (False, f"reload failed: {type(exc).__name__}")
                if not waiter.done():
                    waiter.set_result(result)
        finally:
            self._task = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

