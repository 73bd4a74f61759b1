"""Where a finished request goes: the request log, the metrics and the dashboard timeline.

Built once per worker by the composition root. ``request`` is the one entry point
for a finished request (the pipeline's ``finish``, once per request), so the three
views count exactly the same requests. Everything here is in-memory work; the
log is written by a thread and the timeline flushed by a background task.
Fail-open: an error here is logged and never reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from extensions.observe.labels import Labels
from extensions.observe.loop_monitor import LoopMonitor
from extensions.observe.metrics import GatewayMetrics, render
from extensions.observe.record import Redactor
from extensions.observe.request_log import RequestLog
from extensions.observe.series import WINDOWS, series
from extensions.observe.settings import Observability
from extensions.observe.timeline import TimelineRecorder

logger = logging.getLogger("gateway.observe")
FLUSH_EVERY_S = 2.0


class Observer:
    def __init__(
        self,
        settings: Observability,
        log: RequestLog,
        metrics: GatewayMetrics | None,
        timeline: TimelineRecorder,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.metrics = metrics
        self.timeline = timeline
        self.redactor = Redactor(settings.request_log.content)
        self.multiprocess_dir = multiprocess_dir
        self.monitor = LoopMonitor(metrics.lag) if metrics is not None else None
        self._flusher: asyncio.Task[None] | None = None
        self.errors = 0

    def configure(self, labels: Labels) -> None:
        """The names this generation may put in labels (the dashboard's and the metrics')."""
        self.timeline.labels = labels
        if self.metrics is not None:
            self.metrics.labels = labels

    def ensure_started(self) -> None:
        """Start the loop monitor and the timeline flusher on the running loop."""
        if self._flusher is not None and not self._flusher.done():
            return
        self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        if self.monitor is not None:
            self.monitor.start()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.flush()

    async def flush(self) -> None:
        try:
            await self.timeline.flush()
        except Exception:  # fail-open
            logger.warning("dashboard timeline flush failed", exc_info=True)

    def request(self, record: dict[str, Any]) -> None:
        """A finished request: one log line, its metrics, its minute on the dashboard."""
        try:
            if self.settings.request_log.enabled:
                self.log.write(record)
            if self.metrics is not None:
                self.metrics.observe(record)
            if self.settings.dashboard.enabled:
                self.timeline.add(record)
        except Exception:  # fail-open: observability never fails a request
            self.errors += 1
            logger.warning("request observation failed", exc_info=True)

    def content(self, route: object, query: str, answer: str) -> dict[str, str] | None:
        """Redacted message text for the log, when logging it is on for ``route``."""
        if not self.redactor.logs(str(route)):
            return None
        return {"query": self.redactor.clean(query), "answer": self.redactor.clean(answer)}

    def upstream_error(self, model_group: str | None, error: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_error(model_group, error)

    def timing(self, kind: str, ms: float) -> None:
        """A cache lookup's (``exact``/``semantic``) or the gateway's own (``answered``,
        ``forwarded``) time."""
        if self.metrics is None:
            return
        if kind in ("exact", "semantic"):
            self.metrics.lookup_ms(kind, ms)
        else:
            self.metrics.overhead_ms(kind, ms)

    def redis_state(self, up: bool) -> None:
        if self.metrics is not None:
            self.metrics.redis_up.set(1 if up else 0)

    async def exposition(self) -> bytes:
        """The /metrics page (reading the workers' files off the event loop)."""
        return await asyncio.to_thread(render, self.multiprocess_dir)

    async def dashboard_data(self, window: str, now: float | None = None) -> dict[str, Any]:
        """Chart points and breakdowns of the last hour, 6 hours or day (``WINDOWS``)."""
        window = window if window in WINDOWS else "hour"
        points, size = WINDOWS[window]
        await self.flush()  # this worker's latest requests too
        last = (int(time.time() if now is None else now) // 60) // size
        first = last - points + 1
        buckets = await self.timeline.store.read(size, range(first, last + 1))
        # tens of ms for a busy day: off the event loop
        data = await asyncio.to_thread(
            series, buckets, first, points, size, self.timeline.labels.keys
        )
        data["window"] = window
        data["windows"] = list(WINDOWS)
        data["store"] = self.settings.dashboard.store.value
        return data

    async def close(self) -> None:
        for task in (self._flusher,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.monitor is not None:
            await self.monitor.stop()
        self.log.close()


def status_of(exc: BaseException) -> int:
    """The HTTP status LiteLLM answers for an exception (ProxyException, HTTPException, ...)."""
    for attr in ("code", "status_code"):
        value = getattr(exc, attr, None)
        with contextlib.suppress(TypeError, ValueError):
            if value is not None and 100 <= int(value) <= 599:
                return int(value)
    return 500


def error_of(exc: BaseException) -> dict[str, str]:
    kind = getattr(exc, "type", None) or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return {"type": str(kind), "message": str(message)[:300]}


def tokens_of(usage: Mapping[str, Any] | None) -> tuple[int, int, int]:
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = int((details.get("cached_tokens") if isinstance(details, Mapping) else 0) or 0)
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), cached
