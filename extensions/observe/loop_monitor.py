"""Event-loop lag: a task that sleeps a fixed interval and measures how late it wakes.

A lag of tens of milliseconds means something ran on the loop that should not
have (blocking I/O, model inference): exactly what the gateway must never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class LoopMonitor:
    def __init__(self, report: Callable[[float], None], interval_s: float = 0.1) -> None:
        self.report = report
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.report(max(0.0, time.perf_counter() - before - self.interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
