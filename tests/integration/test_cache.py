"""The response caches through the real proxy, the openai SDK and a real Redis.

Every hit is checked against the simulated provider's request count: a hit never
calls a provider and reports zero usage.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_server import RedisServer
from tests.support.stack import Proxy, SimProvider, derive_gateway_config, proxy_pair

pytestmark = pytest.mark.integration


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def chat(
    proxy: Proxy, model: str, text: str, **kwargs: Any
) -> tuple[str, dict[str, str], Any]:
    """(answer, headers, usage) of one plain request."""
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model=model,
        messages=ask(text),
        **kwargs,  # type: ignore[arg-type]
    )
    resp = raw.parse()
    return resp.choices[0].message.content or "", dict(raw.headers), resp.usage


async def stream(
    proxy: Proxy, model: str, text: str, **kwargs: Any
) -> tuple[list[str], dict[str, str]]:
    """(text pieces, headers) of one streamed request, read to the end."""
    pieces = []
    async with proxy.client().chat.completions.with_streaming_response.create(
        model=model,
        messages=ask(text),
        stream=True,
        **kwargs,  # type: ignore[arg-type]
    ) as raw:
        async for chunk in await raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        return pieces, dict(raw.headers)


def unique(text: str) -> str:
    return f"{text} (ref {uuid.uuid4().hex[:8]})"


# -- the shipped configuration (memory tier) ---------------------------------------------


async def test_exact_hit_plain_and_streaming(gateway: Proxy, clean_sim: SimProvider) -> None:
    text = unique("Explain what a load balancer does")
    first, h1, _ = await chat(gateway, "gpt-sim", text)
    assert h1["x-gateway-cache"] == "MISS"
    assert clean_sim.stats()["total"] == 1
    second, h2, usage = await chat(gateway, "gpt-sim", text)
    assert h2["x-gateway-cache"] == "HIT_EXACT"
    assert second == first
    assert usage is not None and usage.total_tokens == 0
    pieces, h3 = await stream(gateway, "gpt-sim", text)
    assert h3["x-gateway-cache"] == "HIT_EXACT"
    assert len(pieces) >= 3 and "".join(pieces) == first
    assert clean_sim.stats()["total"] == 1  # neither hit reached the provider


async def test_streamed_answer_is_cached_once_complete(
    gateway: Proxy, clean_sim: SimProvider
) -> None:
    text = unique("Describe how DNS resolution works")
    pieces, h1 = await stream(gateway, "gpt-sim", text)
    assert h1["x-gateway-cache"] == "MISS"
    await asyncio.sleep(0.3)  # the store happens when LiteLLM logs the completed stream
    answer, h2, _ = await chat(gateway, "gpt-sim", text)
    assert h2["x-gateway-cache"] == "HIT_EXACT"
    assert answer == "".join(pieces)
    assert clean_sim.stats()["total"] == 1


async def test_semantic_hit_on_a_paraphrase(gateway: Proxy, clean_sim: SimProvider) -> None:
    first, h1, _ = await chat(
        gateway, "gpt-sim", "How do I reset my wifi router to factory settings?"
    )
    assert h1["x-gateway-cache"] in {"MISS", "HIT_SEMANTIC"}
    before = clean_sim.stats()["total"]
    answer, h2, usage = await chat(
        gateway, "gpt-sim", "How can I reset my wifi router to factory settings?"
    )
    assert h2["x-gateway-cache"] == "HIT_SEMANTIC"
    assert float(h2["x-gateway-cache-similarity"]) >= 0.95
    assert answer == first and usage is not None and usage.total_tokens == 0
    assert clean_sim.stats()["total"] == before


async def test_templated_near_miss_is_not_served(gateway: Proxy, clean_sim: SimProvider) -> None:
    await chat(gateway, "gpt-sim", "What is the population of Vietnam in 2020?")
    _, headers, _ = await chat(gateway, "gpt-sim", "What is the population of Laos in 2020?")
    assert headers["x-gateway-cache"] == "MISS"
    _, headers, _ = await chat(gateway, "gpt-sim", "What is the population of Vietnam in 2021?")
    assert headers["x-gateway-cache"] == "MISS"
    assert clean_sim.stats()["total"] == 3


async def test_router_semantic_hit_keeps_intent(gateway: Proxy, clean_sim: SimProvider) -> None:
    await chat(gateway, "support-bot", "The Acme app crashes every time I open the settings page")
    answer, headers, _ = await chat(
        gateway, "support-bot", "The Acme app crashes whenever I open the settings page"
    )
    assert headers["x-gateway-intent"] == "technical_issue"
    assert headers["x-gateway-cache"] == "HIT_SEMANTIC"
    assert answer.startswith("Simulated reply from sim-claude")
    assert clean_sim.stats()["total"] == 1


async def test_never_cached_intent(gateway: Proxy, clean_sim: SimProvider) -> None:
    for _ in range(2):
        _, headers, _ = await chat(gateway, "support-bot", "how do I cancel my subscription")
        assert headers["x-gateway-intent"] == "subscription"
        assert headers["x-gateway-cache"] == "BYPASS"
        assert headers["x-gateway-cache-reason"] == "intent 'subscription' is never cached"
    assert clean_sim.stats()["total"] == 2


async def test_cacheability_classifier_bypasses_user_specific(
    gateway: Proxy, clean_sim: SimProvider
) -> None:
    for _ in range(2):
        _, headers, _ = await chat(gateway, "gpt-sim", "What is the status of my recent order?")
        assert headers["x-gateway-cache"] == "BYPASS"
        assert headers["x-gateway-cache-reason"].startswith("classifier: not cacheable")
    assert clean_sim.stats()["total"] == 2


async def test_client_no_cache_and_no_store(gateway: Proxy, clean_sim: SimProvider) -> None:
    text = unique("Summarise the causes of inflation")
    _, h, _ = await chat(gateway, "gpt-sim", text, extra_body={"cache": {"no-store": True}})
    assert h["x-gateway-cache"] == "MISS" and h["x-gateway-cache-reason"] == "client: no-store"
    _, h, _ = await chat(gateway, "gpt-sim", text)
    assert h["x-gateway-cache"] == "MISS"  # nothing was stored
    _, h, _ = await chat(gateway, "gpt-sim", text, extra_body={"cache": {"no-cache": True}})
    assert h["x-gateway-cache"] == "MISS" and h["x-gateway-cache-reason"] == "client: no-cache"
    _, h, _ = await chat(gateway, "gpt-sim", text, extra_headers={"Cache-Control": "no-cache"})
    assert h["x-gateway-cache"] == "MISS"
    _, h, _ = await chat(gateway, "gpt-sim", text)
    assert h["x-gateway-cache"] == "HIT_EXACT"
    assert clean_sim.stats()["total"] == 4


async def test_ttl_expiry(gateway: Proxy, clean_sim: SimProvider) -> None:
    text = unique("List three uses of graph databases")
    await chat(gateway, "gpt-sim", text, extra_body={"cache": {"ttl": 1}})
    _, h, _ = await chat(gateway, "gpt-sim", text)
    assert h["x-gateway-cache"] == "HIT_EXACT"
    await asyncio.sleep(1.3)
    _, h, _ = await chat(gateway, "gpt-sim", text)
    assert h["x-gateway-cache"] == "MISS"
    assert clean_sim.stats()["total"] == 2


async def test_hot_temperature_and_tools_bypass(gateway: Proxy, clean_sim: SimProvider) -> None:
    text = unique("Write a haiku about autumn")
    _, h, _ = await chat(gateway, "gpt-sim", text, temperature=1.5)
    assert (
        h["x-gateway-cache"] == "BYPASS" and h["x-gateway-cache-reason"] == "temperature above 1.0"
    )
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    _, h, _ = await chat(gateway, "gpt-sim", text, tools=[tool])
    assert h["x-gateway-cache"] == "BYPASS"


async def test_embeddings_cached_exactly(gateway: Proxy, clean_sim: SimProvider) -> None:
    client = gateway.client()
    words = [unique("alpha"), unique("beta")]
    raw1 = await client.embeddings.with_raw_response.create(model="embed-sim", input=words)
    raw2 = await client.embeddings.with_raw_response.create(model="embed-sim", input=words)
    first, second = raw1.parse(), raw2.parse()
    assert raw1.headers["x-gateway-cache"] == "MISS"
    assert raw2.headers["x-gateway-cache"] == "HIT_EXACT"
    assert [d.embedding for d in second.data] == [d.embedding for d in first.data]
    assert second.usage.prompt_tokens == 0
    assert clean_sim.stats()["total"] == 1


# -- shadow mode -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shadow_gateway(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        data["cache"]["semantic"]["mode"] = "shadow"

    config = derive_gateway_config(tmp_path_factory.mktemp("shadow"), edit)
    proxy = Proxy(log_dir, sim, gateway_config=config, name="shadow-proxy").start()
    yield proxy
    proxy.stop()


async def test_shadow_mode_never_serves(shadow_gateway: Proxy, clean_sim: SimProvider) -> None:
    await chat(shadow_gateway, "gpt-sim", "How do I reset my wifi router to factory settings?")
    await asyncio.sleep(0.3)
    _, headers, usage = await chat(
        shadow_gateway, "gpt-sim", "How can I reset my wifi router to factory settings?"
    )
    assert headers["x-gateway-cache"] == "SHADOW_HIT"
    assert float(headers["x-gateway-cache-similarity"]) >= 0.95
    assert usage is not None and usage.total_tokens > 0  # answered by the model
    assert clean_sim.stats()["total"] == 2
    # the comparison is logged after the answer
    log = await shadow_gateway.process.log_with("cache shadow hit", "answer similarity")
    assert "cache shadow hit: query similarity" in log and "answer similarity" in log


# -- eviction policies -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["lru", "lfu", "fifo"])
def small_cache(
    request: pytest.FixtureRequest,
    log_dir: Path,
    sim: SimProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Proxy]]:
    policy = request.param

    def edit(data: dict[str, Any]) -> None:
        data["cache"]["memory"] = {"max_entries": 2, "eviction": policy}
        data["cache"]["semantic"]["enabled"] = False
        data["cache"]["cacheability"]["enabled"] = False

    config = derive_gateway_config(tmp_path_factory.mktemp(f"evict-{policy}"), edit)
    proxy = Proxy(log_dir, sim, gateway_config=config, name=f"evict-{policy}").start()
    yield policy, proxy
    proxy.stop()


async def test_eviction_order(small_cache: tuple[str, Proxy], clean_sim: SimProvider) -> None:
    policy, proxy = small_cache
    a, b, c = unique("question a"), unique("question b"), unique("question c")
    await chat(proxy, "gpt-sim", a)
    await chat(proxy, "gpt-sim", b)
    for _ in range(2):  # a is used twice more (recency and frequency), b never
        _, h, _ = await chat(proxy, "gpt-sim", a)
        assert h["x-gateway-cache"] == "HIT_EXACT"
    _, h, _ = await chat(proxy, "gpt-sim", b)  # b once: LFU keeps a (3 uses) over b (2)
    assert h["x-gateway-cache"] == "HIT_EXACT"
    await chat(proxy, "gpt-sim", c)  # full: one of a, b goes
    kept_a = (await chat(proxy, "gpt-sim", a))[1]["x-gateway-cache"] == "HIT_EXACT"
    expected_kept_a = {"lru": False, "lfu": True, "fifo": False}[policy]
    # LRU: b was used last before c, so a goes; FIFO: a came first, so a goes
    assert kept_a is expected_kept_a


async def test_hook_path_streams_hits_in_chunks(
    small_cache: tuple[str, Proxy], clean_sim: SimProvider
) -> None:
    _, proxy = small_cache
    text = unique("Explain eventual consistency")
    first, _, _ = await chat(proxy, "gpt-sim", text)
    pieces, headers = await stream(proxy, "gpt-sim", text)
    assert headers["x-gateway-cache"] == "HIT_EXACT"
    assert len(pieces) >= 3 and "".join(pieces) == first
    assert clean_sim.stats()["total"] == 1


# -- shared tier: two proxies and one Redis ----------------------------------------------


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("cache-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_pair(
    log_dir: Path,
    sim: SimProvider,
    shared_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proxy, Proxy]]:
    def edit(data: dict[str, Any]) -> None:
        data["redis"] = {"url": shared_redis.url, "socket_timeout_ms": 200, "retry_after_s": 0.5}
        data["cache"]["tier"] = "shared"

    config = derive_gateway_config(tmp_path_factory.mktemp("shared"), edit)
    yield from proxy_pair(log_dir, sim, config, "shared")


async def test_two_proxies_share_entries(
    shared_pair: tuple[Proxy, Proxy], clean_sim: SimProvider
) -> None:
    one, two = shared_pair
    text = unique("What does a reverse proxy do")
    first, h1, _ = await chat(one, "gpt-sim", text)
    assert h1["x-gateway-cache"] == "MISS"
    await asyncio.sleep(0.3)
    answer, h2, _ = await chat(two, "gpt-sim", text)
    assert h2["x-gateway-cache"] == "HIT_EXACT" and answer == first
    para_first, _, _ = await chat(one, "gpt-sim", "How do I clear the cache of my web browser?")
    await asyncio.sleep(0.3)
    para, h3, _ = await chat(two, "gpt-sim", "How can I clear the cache of my web browser?")
    assert h3["x-gateway-cache"] == "HIT_SEMANTIC" and para == para_first
    assert clean_sim.stats()["total"] == 2


async def test_redis_down_fails_open_and_recovers(
    shared_pair: tuple[Proxy, Proxy], shared_redis: RedisServer, clean_sim: SimProvider
) -> None:
    one, two = shared_pair
    shared_redis.kill()
    try:
        for i in range(3):
            answer, headers, _ = await chat(two, "gpt-sim", unique(f"Redis is down, question {i}"))
            assert answer.startswith("Simulated reply")
            assert headers["x-gateway-cache"] == "MISS"
        text = unique("Asked while Redis is down")
        await chat(one, "gpt-sim", text)
        _, headers, _ = await chat(two, "gpt-sim", text)
        assert headers["x-gateway-cache"] == "MISS"  # nothing shared without Redis
    finally:
        shared_redis.start()
    await asyncio.sleep(1.0)  # past retry_after_s: the next call tries Redis again
    text = unique("Asked after Redis came back")
    await chat(one, "gpt-sim", text)  # may still be the probe that finds Redis back
    await chat(one, "gpt-sim", unique("another one"))
    await asyncio.sleep(0.3)
    text = unique("Shared again after the restart")
    await chat(one, "gpt-sim", text)
    await asyncio.sleep(0.3)
    _, headers, _ = await chat(two, "gpt-sim", text)
    assert headers["x-gateway-cache"] == "HIT_EXACT"
    log = await two.process.log_with("Redis unavailable", "Redis is back")
    assert "Redis unavailable" in log and "Redis is back" in log


# -- provider prompt caching (Anthropic format) --------------------------------------------

LONG_SYSTEM = "You are Acme's support assistant. " + " ".join(
    f"Policy {i}: answers must be accurate, polite and short." for i in range(200)
)


async def test_anthropic_prompt_caching(gateway: Proxy, clean_sim: SimProvider) -> None:
    usages = []
    for question in ("Where is the invoice page?", "Tell me about data export options"):
        resp = await gateway.client().chat.completions.create(
            model="claude-sim",
            messages=[
                {"role": "system", "content": LONG_SYSTEM},
                {"role": "user", "content": unique(question)},
            ],
            extra_body={"cache": {"no-cache": True, "no-store": True}},
        )
        usages.append(resp.usage)
    first, second = usages
    assert first is not None and second is not None
    details = second.prompt_tokens_details
    assert details is not None and (details.cached_tokens or 0) >= 1024
    first_details = first.prompt_tokens_details
    assert first_details is None or not first_details.cached_tokens
    sent = clean_sim.requests("sim-claude", limit=2)[-1]["body"]
    system = sent["system"]
    assert isinstance(system, list) and system[-1]["cache_control"] == {"type": "ephemeral"}
    await asyncio.sleep(0.5)  # the request log is written by a thread
    lines = [
        json.loads(line)
        for line in gateway.process.log_path.read_text().splitlines()
        if line.startswith('{"ts"') and '"model_group":"claude-sim"' in line
    ]
    assert lines[-1]["tokens"]["cached"] >= 1024
