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


class _Gateway:
    """Just what FastLane reads at construction and on the 413 path."""

    def __init__(self, limit: int) -> None:
        from extensions.config.schema import GatewayConfig

        self.config = GatewayConfig.model_validate({"requests": {"max_body_bytes": limit}})
        self.observer = None

    def refused_record(self, *args: Any) -> None:
        self.refused = args

    def pinned(self) -> _Gateway:  # stands in for Generations too
        return self

    @property
    def current(self) -> _Gateway:
        return self


async def _post(lane: Any, body: bytes, declared: bool) -> tuple[int, Any, bool]:
    from extensions.hooks.fast_lane import FastLane

    assert isinstance(lane, FastLane)
    sent: list[dict[str, Any]] = []
    reached: list[bool] = []
    headers = [(b"content-length", str(len(body)).encode())] if declared else []
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    parts = [body[i : i + 1000] for i in range(0, len(body), 1000)]

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    lane.app = lambda *_: reached.append(True) or _noop()
    await lane(scope, receive, send)
    status = sent[0]["status"] if sent else 0
    payload = json.loads(sent[1]["body"]) if len(sent) > 1 else None
    return status, payload, bool(reached)


async def _noop() -> None:
    return None


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_bodies_over_the_limit_get_413_before_litellm(declared: bool) -> None:
    from extensions.hooks.fast_lane import FastLane

    lane = FastLane(None, _Gateway(2048), None)  # type: ignore[arg-type]
    status, payload, reached = await _post(lane, b"x" * 5000, declared)
    assert (status, reached) == (413, False)
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["code"] == "request_too_large"
    assert "2048 bytes" in payload["error"]["message"]


async def test_bodies_under_the_limit_reach_litellm() -> None:
    from extensions.hooks.fast_lane import FastLane

    lane = FastLane(None, _Gateway(8192), None)  # type: ignore[arg-type]
    body = json.dumps({"model": "gpt-sim", "pad": "y" * 4000}).encode()  # no key: LiteLLM's 401
    _, _, reached = await _post(lane, body, True)
    assert reached


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"model": [1]}', b'{"x": NaN}',
                                  b"[" * 5000 + b"]" * 5000], ids=["text", "array", "model",
                                                                   "nan", "deep"])  # fmt: skip
async def test_malformed_bodies_get_400_here(body: bytes) -> None:
    from extensions.hooks.fast_lane import FastLane

    lane = FastLane(None, _Gateway(1 << 20), None)  # type: ignore[arg-type]
    status, payload, reached = await _post(lane, body, True)
    assert (status, reached) == (400, False)
    assert payload["error"]["type"] == "invalid_request_error"
