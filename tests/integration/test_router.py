"""The intent router through the real proxy and the openai SDK: every action, plain
and streaming, its headers, no upstream call for non-model answers, handoffs
delivered to a real Redis stream, and the clarify round trip."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from tests.support.redis_server import RedisServer
from tests.support.stack import Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration
ROUTER = "support-bot"
STREAM = "test:handoffs"


@pytest.fixture(scope="module")
def router_gateway(
    log_dir: Path,
    sim: SimProvider,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    """The shipped gateway.yaml, with billing handoffs going to a Redis stream."""

    def edit(data: dict[str, Any]) -> None:
        data["handoff_sinks"]["operators-stream"] = {
            "type": "redis_stream", "url": redis_server.url, "stream": STREAM,
        }  # fmt: skip
        for intent in data["routers"][ROUTER]["intents"]:
            if intent["name"] == "billing_error":
                intent["handoff"]["sink"] = "operators-stream"
        data["cache"]["enabled"] = False  # routing alone here; test_cache covers both

    path = derive_gateway_config(tmp_path_factory.mktemp("router"), edit)
    proxy = Proxy(log_dir, sim, gateway_config=path, name="router-proxy").start()
    yield proxy
    proxy.stop()


async def ask(
    proxy: Proxy, messages: list[dict[str, str]], stream: bool = False
) -> tuple[str, dict[str, str], Any]:
    client = proxy.client()
    if not stream:
        raw = await client.chat.completions.with_raw_response.create(
            model=ROUTER,
            messages=messages,  # type: ignore[arg-type]
        )
        resp = raw.parse()
        return resp.choices[0].message.content or "", dict(raw.headers), resp.usage
    async with client.chat.completions.with_streaming_response.create(
        model=ROUTER,
        messages=messages,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    ) as raw:
        text, usage = "", None
        async for chunk in await raw.parse():
            usage = chunk.usage or usage
            text += "".join(c.delta.content or "" for c in chunk.choices)
        return text, dict(raw.headers), usage


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_respond_is_canned_and_free(
    router_gateway: Proxy, clean_sim: SimProvider, stream: bool
) -> None:
    text, headers, usage = await ask(router_gateway, user("I forgot my password"), stream)
    assert "https://acme.example.com/account/reset-password" in text
    assert headers["x-gateway-action"] == "RESPOND"
    assert headers["x-gateway-intent"] == "reset_password"
    assert headers["x-gateway-router"] == ROUTER
    assert 0.5 < float(headers["x-gateway-confidence"]) <= 1.0
    assert (headers["x-gateway-provider"], headers["x-gateway-deployment"]) == ("gateway", "router")
    assert "x-gateway-model-group" not in headers  # no model answered
    if usage is not None:
        assert usage.total_tokens == 0
    assert clean_sim.stats()["total"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_out_of_scope_is_refused_without_upstream_call(
    router_gateway: Proxy, clean_sim: SimProvider, stream: bool
) -> None:
    for query in ("what's the weather like tomorrow in paris", "tell me a joke about dogs"):
        text, headers, _ = await ask(router_gateway, user(query), stream)
        assert headers["x-gateway-action"] == "REFUSE"
        assert "Acme" in text
    assert clean_sim.stats()["total"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_route_picks_model_and_prepends_system_prompt(
    router_gateway: Proxy, clean_sim: SimProvider, stream: bool
) -> None:
    text, headers, usage = await ask(router_gateway, user("the app keeps crashing on start"),
                                     stream)  # fmt: skip
    assert headers["x-gateway-action"] == "ROUTE"
    assert headers["x-gateway-intent"] == "technical_issue"
    assert headers["x-gateway-model-group"] == "claude-sim"
    assert text.startswith("Simulated reply from sim-claude")
    assert usage is not None and usage.completion_tokens > 0
    sent = json.dumps(clean_sim.requests("sim-claude")[-1]["body"])
    assert "technical support engineer" in sent


async def test_cheap_model_for_subscription_questions(
    router_gateway: Proxy, clean_sim: SimProvider
) -> None:
    _, headers, _ = await ask(router_gateway, user("how do I cancel my subscription"))
    assert headers["x-gateway-model-group"] == "gpt-sim-mini"
    assert clean_sim.count("sim-gpt-mini") == 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_handoff_reaches_redis_stream(
    router_gateway: Proxy, clean_sim: SimProvider, redis_server: RedisServer, stream: bool
) -> None:
    text, headers, _ = await ask(router_gateway, user("I was charged twice this month"), stream)
    assert headers["x-gateway-action"] == "HANDOFF"
    assert "billing team" in text
    handoff_id = headers["x-gateway-handoff-id"]
    mine: list[dict[str, Any]] = []
    for _ in range(50):  # delivered by a background worker, after the answer
        entries = redis.Redis.from_url(redis_server.url).xrange(STREAM)
        records = [json.loads(fields[b"record"]) for _, fields in entries]
        mine = [r for r in records if r["id"] == handoff_id]
        if mine:
            break
        await asyncio.sleep(0.1)
    assert len(mine) == 1
    assert mine[0]["queue"] == "billing"
    assert mine[0]["intent"] == "billing_error"
    assert mine[0]["conversation"][-1]["content"] == "I was charged twice this month"
    assert clean_sim.stats()["total"] == 0


async def test_clarify_round_trip_resolves_on_second_turn(
    router_gateway: Proxy, clean_sim: SimProvider
) -> None:
    messages = user("freeze")
    question, headers, _ = await ask(router_gateway, messages)
    assert headers["x-gateway-action"] == "CLARIFY"
    assert "freeze your account" in question
    assert "fix a problem with the app" in question
    messages += [{"role": "assistant", "content": question}, *user("my account")]
    answer, headers, _ = await ask(router_gateway, messages)
    assert headers["x-gateway-action"] == "RESPOND"
    assert headers["x-gateway-intent"] == "freeze_account"
    assert "Freeze account" in answer
    # the other reading of "freeze" resolves the other way
    messages[-1] = {"role": "user", "content": "the app, it keeps hanging"}
    _, headers, _ = await ask(router_gateway, messages)
    assert headers["x-gateway-intent"] == "technical_issue"
    assert headers["x-gateway-action"] == "ROUTE"


async def test_new_question_after_clarify_is_classified_afresh(
    router_gateway: Proxy, clean_sim: SimProvider
) -> None:
    messages = user("freeze")
    question, _, _ = await ask(router_gateway, messages)
    messages += [{"role": "assistant", "content": question}, *user("I forgot my password")]
    _, headers, _ = await ask(router_gateway, messages)
    assert headers["x-gateway-intent"] == "reset_password"
    messages[-1] = {"role": "user", "content": "never mind, what's the weather in rome"}
    _, headers, _ = await ask(router_gateway, messages)
    assert headers["x-gateway-action"] == "REFUSE"


async def test_default_route_for_unclaimed_on_topic_query(
    router_gateway: Proxy, clean_sim: SimProvider
) -> None:
    _, headers, _ = await ask(router_gateway, user("how can I change the email on my account"))
    assert headers["x-gateway-action"] == "ROUTE"
    assert headers["x-gateway-intent"] == "default"
    assert headers["x-gateway-model-group"] == "gpt-sim"


async def test_model_groups_bypass_routing(router_gateway: Proxy, clean_sim: SimProvider) -> None:
    raw = await router_gateway.client().chat.completions.with_raw_response.create(
        model="gpt-sim-mini",
        messages=user("what's the weather like tomorrow"),  # type: ignore[arg-type]
    )
    assert "x-gateway-action" not in raw.headers
    assert raw.headers["x-gateway-model-group"] == "gpt-sim-mini"
    assert clean_sim.count("sim-gpt-mini") == 1


async def test_router_request_still_validated(router_gateway: Proxy) -> None:
    with pytest.raises(openai.BadRequestError):
        await router_gateway.client().chat.completions.create(
            model=ROUTER,
            messages=[{"role": "user"}],  # type: ignore[list-item]
        )
