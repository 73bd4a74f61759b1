"""Deliver handoff records (a conversation a human operator should pick up) to sinks.

Off the request path: ``submit`` (or ``deliver``) only puts the record on the sink's
bounded in-process queue and returns; the request answers with its handoff id at
once. Background workers, one set per sink, bound the record (``max_record_bytes``,
most recent turns kept), redact it (guard detectors and extra patterns) in a worker
thread, and send it; webhook and Redis stream sinks retry with exponential backoff.
A record that cannot be delivered (retries exhausted, a permanent refusal, a full
queue, shutdown) goes to the dead-letter log as one JSON line, redacted like the
rest: fail-open for the user, loud for the operator. Counters are plain attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from extensions.guard.records import CONVERSATION, Prepared, RecordRedactor, prepare
from extensions.router.settings import (
    HandoffSink,
    LogSink,
    RedisStreamSink,
    RetryingDelivery,
    SinkDelivery,
    WebhookSink,
)

logger = logging.getLogger("gateway.handoff")
dead_letter_logger = logging.getLogger("gateway.handoff.dead_letter")


class Sink(Protocol):
    async def deliver(self, record: Mapping[str, Any]) -> None: ...


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...


class PermanentError(Exception):
    """The sink refused the record; sending it again will not help."""


class LogHandoffSink:
    async def deliver(self, record: Mapping[str, Any]) -> None:
        logger.warning("HANDOFF %s", json.dumps(record, sort_keys=True, default=str))


class WebhookHandoffSink:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, record: Mapping[str, Any]) -> None:
        response = await self._client.post(self._url, json=dict(record))
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise PermanentError(f"HTTP {response.status_code}")
        response.raise_for_status()

    async def aclose(self) -> None:
        await self._client.aclose()


class RedisStreamHandoffSink:
    """``XADD`` to one stream (one key: on a Redis Cluster, one shard holds it)."""

    def __init__(self, url: str, stream: str, max_len: int) -> None:
        from extensions.backends.redis_client import make_client

        self._redis = make_client(url, timeout_s=2)
        self._stream = stream
        self._max_len = max_len

    async def deliver(self, record: Mapping[str, Any]) -> None:
        fields: dict[Any, Any] = {"record": json.dumps(record, sort_keys=True, default=str)}
        await self._redis.xadd(self._stream, fields, maxlen=self._max_len, approximate=True)

    async def aclose(self) -> None:
        await self._redis.aclose()


def build_sink(settings: HandoffSink) -> Sink:
    if isinstance(settings, LogSink):
        return LogHandoffSink()
    if isinstance(settings, WebhookSink):
        return WebhookHandoffSink(settings.url, settings.timeout_s)
    assert isinstance(settings, RedisStreamSink)
    return RedisStreamHandoffSink(settings.url, settings.stream, settings.max_len)


@dataclass(slots=True)
class SinkCounters:
    """Per sink, since start; ``queue_depth`` is read from the live queue."""

    enqueued: int = 0
    delivered: int = 0
    retried: int = 0  # attempts after the first
    dead_lettered: int = 0
    redacted: int = 0  # records in which something was replaced
    truncated: int = 0  # records cut to max_record_bytes
    queue_depth: int = 0


class DeadLetters:
    """One JSON line per undeliverable record: appended to a file, or to the logger."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, sink: str, reason: str, attempts: int, record: Mapping[str, Any]) -> None:
        line = json.dumps(
            {
                "time": time.time(),
                "sink": sink,
                "reason": reason,
                "attempts": attempts,
                "record": record,
            },
            sort_keys=True,
            default=str,
            ensure_ascii=False,
        )
        if self.path is None:
            dead_letter_logger.error("%s", line)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:  # the file is the last resort: say so and use the log
            logger.error("dead-letter file %s not writable (%s)", self.path, exc)
            dead_letter_logger.error("%s", line)


@dataclass
class _Lane:
    """One sink: its settings, queue, workers and counters."""

    name: str
    sink: Sink
    settings: SinkDelivery
    redactor: RecordRedactor
    dead_letters: DeadLetters
    counters: SinkCounters = field(default_factory=SinkCounters)
    queue: asyncio.Queue[Mapping[str, Any]] | None = None
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def retry(self) -> RetryingDelivery | None:
        return self.settings if isinstance(self.settings, RetryingDelivery) else None

    def prepare(self, record: Mapping[str, Any]) -> Prepared:
        """Bounded and redacted (pure: safe in a worker thread)."""
        return prepare(record, self.settings.max_record_bytes, self.redactor)

    def counted(self, prepared: Prepared) -> dict[str, Any]:
        """The prepared record, its redaction and truncation counted (on the event loop)."""
        self.counters.redacted += bool(prepared.redacted)
        self.counters.truncated += prepared.truncated
        return prepared.record

    def dead_letter(self, record: Mapping[str, Any], reason: str, attempts: int) -> None:
        """``record`` must be prepared already (redacted and bounded)."""
        self.counters.dead_lettered += 1
        logger.error(
            "handoff %s to sink %r dead-lettered: %s after %d attempt(s)",
            record.get("id"),
            self.name,
            reason,
            attempts,
        )
        self.dead_letters.write(self.name, reason, attempts, record)

    def backoff(self, attempt: int) -> float:
        assert self.retry is not None
        delay = min(self.retry.backoff_max_s, self.retry.backoff_s * 2.0**attempt)
        return delay * random.uniform(0.5, 1.0)

    async def deliver(self, record: Mapping[str, Any]) -> None:
        try:
            prepared = self.counted(await asyncio.to_thread(self.prepare, record))
        except asyncio.CancelledError:
            self.dead_letter(self.counted(self.prepare(record)), "shutdown", 0)
            raise
        tries = 1 + (self.retry.retries if self.retry else 0)
        reason = "failed"
        attempt = 0
        try:
            for attempt in range(1, tries + 1):
                try:
                    await self.sink.deliver(prepared)
                    self.counters.delivered += 1
                    return
                except PermanentError as exc:
                    reason = f"refused: {exc}"
                    break
                except Exception as exc:  # noqa: BLE001 - any sink failure is retried
                    reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                    if attempt < tries:
                        self.counters.retried += 1
                        await asyncio.sleep(self.backoff(attempt - 1))
        except asyncio.CancelledError:
            self.dead_letter(prepared, "shutdown", attempt)
            raise
        self.dead_letter(prepared, reason, attempt)

    async def work(self) -> None:
        assert self.queue is not None
        while True:
            record = await self.queue.get()
            self.counters.queue_depth = self.queue.qsize()
            try:
                await self.deliver(record)
            except Exception:  # a bug here must not stop the worker
                logger.exception("handoff worker of sink %r failed on a record", self.name)
            finally:
                self.queue.task_done()


def without_conversation(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record less its conversation (replaced by the number of turns): what a dead
    letter written on the request path keeps, so that the request never pays for
    bounding and redacting a large conversation."""
    turns = record.get(CONVERSATION)
    out = {k: v for k, v in record.items() if k != CONVERSATION}
    out["conversation_dropped_turns"] = len(turns) if isinstance(turns, list) else 0
    return out


class HandoffDispatcher:
    """Named sinks, each with a bounded queue and background workers."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        settings: Mapping[str, SinkDelivery] | None = None,
        patterns: Sequence[tuple[str, str]] = (),
    ) -> None:
        """``settings`` per sink name (default: a log sink's); ``patterns``: extra
        ``(name, regex)`` redactions, e.g. observability.request_log.content.redact."""
        settings = settings or {}
        self._lanes: dict[str, _Lane] = {}
        for name, sink in sinks.items():
            s = settings.get(name) or LogSink(type="log")
            self._lanes[name] = _Lane(
                name, sink, s, RecordRedactor(s.redact, patterns), DeadLetters(s.dead_letter_file)
            )
        self._unknown = DeadLetters(None)
        self._unknown_redactor = RecordRedactor(patterns=patterns)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(
        cls, sinks: Mapping[str, HandoffSink], patterns: Sequence[tuple[str, str]] = ()
    ) -> HandoffDispatcher:
        built = {name: build_sink(s) for name, s in sinks.items()}
        return cls(built, sinks, patterns)

    # ------------------------------------------------------------ counters

    @property
    def counters(self) -> dict[str, SinkCounters]:
        for lane in self._lanes.values():
            lane.counters.queue_depth = lane.queue.qsize() if lane.queue else 0
        return {name: lane.counters for name, lane in self._lanes.items()}

    def _total(self, attribute: str) -> int:
        return sum(getattr(c, attribute) for c in self.counters.values())

    @property
    def delivered(self) -> int:
        return self._total("delivered")

    @property
    def retried(self) -> int:
        return self._total("retried")

    @property
    def dead_lettered(self) -> int:
        return self._total("dead_lettered")

    @property
    def queue_depth(self) -> int:
        return self._total("queue_depth")

    @property
    def failures(self) -> int:
        """Records that were not delivered (the name the routing code used before)."""
        return self.dead_lettered

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create the queues and workers on the running event loop (idempotent)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        for lane in self._lanes.values():
            lane.queue = asyncio.Queue(maxsize=lane.settings.queue_size)
            count = lane.retry.workers if lane.retry else 1
            lane.workers = [
                loop.create_task(lane.work(), name=f"handoff-{lane.name}-{i}") for i in range(count)
            ]

    async def drain(self) -> None:
        """Wait until every queued record has been delivered or dead-lettered."""
        for lane in self._lanes.values():
            if lane.queue is not None:
                await lane.queue.join()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued within ``timeout_s``; dead-letter the rest; close sinks."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout_s)
        for lane in self._lanes.values():
            for task in lane.workers:
                task.cancel()
            await asyncio.gather(*lane.workers, return_exceptions=True)
            lane.workers = []
            while lane.queue is not None and not lane.queue.empty():
                record = lane.queue.get_nowait()
                lane.dead_letter(lane.counted(lane.prepare(record)), "shutdown", 0)
            lane.queue = None
            if isinstance(lane.sink, Closable):
                await lane.sink.aclose()
        self._loop = None

    # ------------------------------------------------------------ request path

    def submit(self, sink: str, record: Mapping[str, Any]) -> bool:
        """Queue ``record`` for ``sink`` and return at once (call on the event loop).

        False when it could not be queued (unknown sink, queue full): it is then
        dead-lettered here without its conversation (see ``without_conversation``).
        """
        lane = self._lanes.get(sink)
        if lane is None:
            prepared = prepare(without_conversation(record), 4_096, self._unknown_redactor).record
            logger.error("handoff %s: unknown sink %r", record.get("id"), sink)
            self._unknown.write(sink, "unknown sink", 0, prepared)
            return False
        self.start()
        assert lane.queue is not None
        try:
            lane.queue.put_nowait(record)
        except asyncio.QueueFull:
            light = prepare(without_conversation(record), 4_096, lane.redactor)
            lane.dead_letter(lane.counted(light), "queue full", 0)
            return False
        lane.counters.enqueued += 1
        lane.counters.queue_depth = lane.queue.qsize()
        return True

    async def deliver(self, sink: str, record: Mapping[str, Any]) -> bool:
        """``submit``, for callers that await (the routing hook); never raises, never waits."""
        return self.submit(sink, record)
