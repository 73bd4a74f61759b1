"""Handoff delivery off the request path, against a local webhook server (loopback port):
a slow webhook does not hold the request, failures are retried then dead-lettered,
records are redacted and bounded before they leave, and the queue is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from extensions.router.handoff import HandoffDispatcher, LogHandoffSink
from extensions.router.settings import HandoffSink, LogSink, RedisStreamSink, WebhookSink

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
EMAIL = "jane.roe@example.com"


@dataclass
class Hook:
    """A webhook receiver: /ok, /slow (5 s), /fail (500), /refuse (400)."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook()

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state.attempts[name] = state.attempts.get(name, 0) + 1
        body = await request.read()
        if name == "slow":
            await asyncio.sleep(5.0)
        if name == "fail":
            return web.Response(status=500)
        if name == "refuse":
            return web.Response(status=400)
        state.bodies.append(body)
        return web.Response(status=204)

    app = web.Application(client_max_size=20_000_000)
    app.router.add_post("/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}"
    yield state
    await runner.cleanup()


def webhook(url: str, **settings: Any) -> WebhookSink:
    return WebhookSink.model_validate({"type": "webhook", "url": url, **settings})


def record(text: str = "I was charged twice", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"handoff-{time.monotonic_ns()}",
        "router": "support-bot",
        "queue": "billing",
        "conversation": [{"role": "user", "content": text}],
        **extra,
    }


def dead_letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_enqueue_returns_at_once_while_the_webhook_takes_5s(hook: Hook) -> None:
    dispatcher = HandoffDispatcher.from_settings(
        {"ops": webhook(f"{hook.url}/slow", retries=0, timeout_s=10)}
    )
    t0 = time.perf_counter()
    queued = await dispatcher.deliver("ops", record())
    elapsed = time.perf_counter() - t0
    assert queued and elapsed < 0.05, elapsed
    assert dispatcher.counters["ops"].enqueued == 1
    t1 = time.perf_counter()
    await dispatcher.close(timeout_s=10)
    assert 4.0 < time.perf_counter() - t1 < 9.0  # the worker waited for the webhook
    assert dispatcher.delivered == 1 and dispatcher.dead_lettered == 0
    assert json.loads(hook.bodies[0])["queue"] == "billing"


async def test_retries_with_backoff_then_dead_letter(hook: Hook, tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = webhook(f"{hook.url}/fail", retries=2, backoff_s=0.05, dead_letter_file=path)
    dispatcher = HandoffDispatcher.from_settings({"ops": sink})
    assert dispatcher.submit("ops", record(f"my card is {CARD}"))
    await dispatcher.close(timeout_s=10)
    assert hook.attempts["fail"] == 3
    counters = dispatcher.counters["ops"]
    assert (counters.delivered, counters.retried, counters.dead_lettered) == (0, 2, 1)
    (line,) = dead_letters(path)
    assert line["sink"] == "ops" and line["attempts"] == 3
    assert "HTTPStatusError" in line["reason"] and "500" in line["reason"]
    assert line["record"]["conversation"][0]["content"] == "my card is [CARD]"
    assert CARD not in path.read_text()


async def test_a_refusal_is_not_retried(hook: Hook, tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = webhook(f"{hook.url}/refuse", retries=3, backoff_s=0.05, dead_letter_file=path)
    dispatcher = HandoffDispatcher.from_settings({"ops": sink})
    dispatcher.submit("ops", record())
    await dispatcher.close()
    assert hook.attempts["refuse"] == 1
    assert dead_letters(path)[0]["reason"] == "refused: HTTP 400"
    assert dispatcher.retried == 0 and dispatcher.failures == 1


async def test_records_are_redacted_before_they_leave(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    sinks: dict[str, HandoffSink] = {"ops": webhook(f"{hook.url}/ok"), "log": LogSink(type="log")}
    dispatcher = HandoffDispatcher.from_settings(sinks, patterns=[("order", r"ORD-\d{6}")])
    text = f"card {CARD}, key {KEY}, mail {EMAIL}, order ORD-123456"
    with caplog.at_level(logging.WARNING, logger="gateway.handoff"):
        dispatcher.submit("ops", record(text, key_alias=EMAIL))
        dispatcher.submit("log", record(text))
        await dispatcher.close()
    body = hook.bodies[0].decode()
    sent = json.loads(body)
    assert sent["conversation"][0]["content"] == (
        "card [CARD], key [SECRET], mail [EMAIL], order [order]"
    )
    assert sent["key_alias"] == "[EMAIL]"
    for raw in (CARD, KEY, EMAIL, "ORD-123456"):
        assert raw not in body and raw not in caplog.text
    assert "HANDOFF" in caplog.text and "[SECRET]" in caplog.text
    assert dispatcher.counters["ops"].redacted == 1 and dispatcher.delivered == 2


async def test_a_3_5_mb_conversation_is_capped(hook: Hook) -> None:
    turns = [{"role": "user", "content": f"turn {i} " + "x" * 10_000} for i in range(350)]
    dispatcher = HandoffDispatcher.from_settings(
        {"ops": webhook(f"{hook.url}/ok", max_record_bytes=65_536)}
    )
    big = {**record(), "conversation": turns}
    assert len(json.dumps(big)) > 3_500_000
    t0 = time.perf_counter()
    dispatcher.submit("ops", big)
    assert time.perf_counter() - t0 < 0.05
    await dispatcher.close()
    (body,) = hook.bodies
    assert len(body) <= 65_536
    sent = json.loads(body)
    assert sent["conversation"][-1]["content"].startswith("turn 349 ")
    assert sent["truncated"]["dropped_turns"] == 350 - len(sent["conversation"])
    assert dispatcher.counters["ops"].truncated == 1


async def test_the_queue_is_bounded_and_shutdown_dead_letters_the_rest(
    hook: Hook, tmp_path: Path
) -> None:
    path = tmp_path / "dead.jsonl"
    sink = webhook(f"{hook.url}/slow", queue_size=2, retries=0, dead_letter_file=path)
    dispatcher = HandoffDispatcher.from_settings({"ops": sink})
    t0 = time.perf_counter()
    accepted = [dispatcher.submit("ops", record(f"n{i} {EMAIL}")) for i in range(6)]
    assert time.perf_counter() - t0 < 0.05
    assert accepted == [True, True, False, False, False, False]
    assert dispatcher.queue_depth == 2 and dispatcher.dead_lettered == 4
    await asyncio.sleep(0.3)  # the worker takes one to the (slow) webhook
    assert dispatcher.queue_depth == 1
    await dispatcher.close(timeout_s=0.2)
    lines = dead_letters(path)
    assert [line["reason"] for line in lines] == ["queue full"] * 4 + ["shutdown"] * 2
    # written on the request path: without the conversation; at shutdown: with it
    assert lines[0]["record"]["conversation_dropped_turns"] == 1
    assert "conversation" not in lines[0]["record"]
    assert lines[-1]["record"]["conversation"][0]["content"] == "n1 [EMAIL]"
    assert EMAIL not in path.read_text()
    assert dispatcher.delivered == 0 and dispatcher.dead_lettered == 6


async def test_an_unreachable_redis_stream_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    path = tmp_path / "dead.jsonl"
    sink = RedisStreamSink.model_validate(
        {
            "type": "redis_stream",
            "url": f"redis://127.0.0.1:{port}/0",
            "retries": 1,
            "backoff_s": 0.05,
            "dead_letter_file": str(path),
        }
    )
    dispatcher = HandoffDispatcher.from_settings({"stream": sink})
    dispatcher.submit("stream", record())
    await dispatcher.close(timeout_s=10)
    assert dispatcher.retried == 1 and dispatcher.dead_lettered == 1
    assert "ConnectionError" in dead_letters(path)[0]["reason"]


async def test_an_unknown_sink_is_dead_lettered(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = HandoffDispatcher({"log": LogHandoffSink()})
    with caplog.at_level(logging.ERROR):
        assert not await dispatcher.deliver("nowhere", record(f"{EMAIL}"))
    assert "unknown sink" in caplog.text and EMAIL not in caplog.text
    await dispatcher.close()
