"""The fast lane's SSE rendering and the Redis breaker's fail-open behaviour (small fakes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from extensions.backends.redis import RedisLink
from extensions.backends.settings import RedisSettings
from extensions.hooks.fast_lane import sse_events

pytestmark = pytest.mark.unit

ANSWER = {
    "id": "chatcmpl-1", "created": 1, "model": "m", "object": "chat.completion",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "one two three four five six seven"}}],
    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
}  # fmt: skip


def decode(events: list[bytes]) -> list[Any]:
    out = []
    for e in events:
        assert e.startswith(b"data: ") and e.endswith(b"\n\n")
        payload = e[6:-2]
        out.append(payload.decode() if payload == b"[DONE]" else json.loads(payload))
    return out


def test_sse_replays_text_in_several_chunks() -> None:
    chunks = decode(sse_events(ANSWER, include_usage=True))
    assert chunks[-1] == "[DONE]"
    usage = chunks[-2]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 0
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    text = "".join(d.get("content", "") for d in deltas)
    assert text == ANSWER["choices"][0]["message"]["content"]
    assert sum(1 for d in deltas if d.get("content")) >= 2
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1"
               for c in chunks[:-1])  # fmt: skip


def test_sse_without_usage() -> None:
    chunks = decode(sse_events(ANSWER, include_usage=False))
    assert all(c == "[DONE]" or c["choices"] for c in chunks)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_on_failure_and_retries_after_interval() -> None:
    clock = Clock()
    link = RedisLink(RedisSettings(url="redis://127.0.0.1:1/0", retry_after_s=5), clock=clock)
    calls = []

    async def failing(_: Any) -> str:
        calls.append(1)
        raise RedisConnectionError("down")

    async def working(_: Any) -> str:
        calls.append(1)
        return "ok"

    assert await link.run(failing, "fallback") == "fallback"
    assert not link.available and link.outages == 1
    assert await link.run(working, "fallback") == "fallback"  # open: not even tried
    assert len(calls) == 1
    clock.now += 5
    assert await link.run(working, "fallback") == "ok"  # retried, and closed again
    assert link.available and link.failures == 2
