"""Deliver handoff records (a conversation a human operator should pick up) to a sink.

A sink that fails does not fail the user's request: the record is written to the
log instead, marked undelivered, and the failure is counted (fail-open, loudly).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from extensions.router.settings import HandoffSink, LogSink, RedisStreamSink, WebhookSink

logger = logging.getLogger("gateway.handoff")


class Sink(Protocol):
    async def deliver(self, record: Mapping[str, Any]) -> None: ...


class LogHandoffSink:
    async def deliver(self, record: Mapping[str, Any]) -> None:
        logger.warning("HANDOFF %s", json.dumps(record, sort_keys=True, default=str))


class WebhookHandoffSink:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, record: Mapping[str, Any]) -> None:
        response = await self._client.post(self._url, json=dict(record))
        response.raise_for_status()


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


def build_sink(settings: HandoffSink) -> Sink:
    if isinstance(settings, LogSink):
        return LogHandoffSink()
    if isinstance(settings, WebhookSink):
        return WebhookHandoffSink(settings.url, settings.timeout_s)
    assert isinstance(settings, RedisStreamSink)
    return RedisStreamHandoffSink(settings.url, settings.stream, settings.max_len)


class HandoffDispatcher:
    """Named sinks; ``deliver`` never raises."""

    def __init__(self, sinks: Mapping[str, Sink]) -> None:
        self._sinks = dict(sinks)
        self._fallback = LogHandoffSink()
        self.failures = 0

    async def deliver(self, sink: str, record: Mapping[str, Any]) -> bool:
        try:
            await self._sinks[sink].deliver(record)
            return True
        except Exception as exc:  # noqa: BLE001 - any sink failure falls back to the log
            self.failures += 1
            logger.error("handoff sink %r failed (%s); record logged instead", sink,
                         type(exc).__name__)  # fmt: skip
            await self._fallback.deliver({**record, "undelivered_to": sink})
            return False
