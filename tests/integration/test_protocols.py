"""Every client protocol through the real proxy with the official SDKs, unchanged except for
``base_url`` and the key: OpenAI Chat, OpenAI Responses and Anthropic Messages, plain and
streaming; the router's actions, every model group, both caches; metering, budgets and
the parallel limit on each protocol; the request log and usage counting each request once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.stack import NO_CACHE, Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration
PROTOCOLS = ("chat", "responses", "messages")
KEYS = {
    f"{kind}-{p}": f"sk-test-{kind}-{p}-51c3"
    for kind in ("budget", "parallel", "meter")
    for p in PROTOCOLS
}
KEYS["app"] = "sk-test-protocols-app-77d0"


@pytest.fixture(scope="module")
def proxy(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        keys = [{"alias": "app", "owner": "t", "env": "TEST_KEY_APP"}]
        for name in KEYS:
            if name == "app":
                continue
            entry: dict[str, Any] = {"alias": name, "owner": "t", "env": _env(name)}
            if name.startswith("budget"):
                entry["daily_budget_usd"] = 0.0012
            if name.startswith("parallel"):  # fallbacks only among these two groups
                entry["max_parallel"] = 1
                entry["models"] = ["gpt-sim", "gpt-sim-mini"]
            keys.append(entry)
        data["access"] = {"keys": keys}
        data["cache"]["scope"] = "key"
        data["observability"]["request_log"]["content"]["routes"] = []

    config = derive_gateway_config(tmp_path_factory.mktemp("protocols"), edit)
    env = {_env(name): key for name, key in KEYS.items()}
    started = Proxy(log_dir, sim, gateway_config=config, extra_env=env, name="protocols").start()
    yield started
    started.stop()


def _env(name: str) -> str:
    return "TEST_KEY_" + name.upper().replace("-", "_")


def oai(proxy: Proxy, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{proxy.base_url}/v1", api_key=key, max_retries=0, timeout=30
    )


def ant(proxy: Proxy, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=30)


async def ask(
    proxy: Proxy,
    protocol: str,
    model: str,
    text: str | list[dict[str, str]],
    stream: bool = False,
    key: str = KEYS["app"],
    max_tokens: int = 30,
    **extra: Any,
) -> tuple[str, Mapping[str, str]]:
    """One request through the official SDK of ``protocol``: the answer's text and headers."""
    messages = [{"role": "user", "content": text}] if isinstance(text, str) else text
    if protocol == "chat":
        raw = await oai(proxy, key).chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=stream, max_tokens=max_tokens, **extra
        )
        if not stream:
            return raw.parse().choices[0].message.content or "", raw.headers
        parts = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
        return "".join(parts), raw.headers
    if protocol == "responses":
        raw = await oai(proxy, key).responses.with_raw_response.create(
            model=model, input=messages, stream=stream, max_output_tokens=max_tokens, **extra
        )
        if not stream:
            return raw.parse().output_text, raw.headers
        deltas = [e.delta async for e in raw.parse() if e.type == "response.output_text.delta"]
        return "".join(deltas), raw.headers
    raw = await ant(proxy, key).messages.with_raw_response.create(
        model=model, max_tokens=max_tokens, messages=messages, stream=stream, **extra
    )
    parsed = await raw.parse()
    if not stream:
        return "".join(b.text for b in parsed.content if b.type == "text"), raw.headers
    texts = [
        e.delta.text
        async for e in parsed
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ]
    return "".join(texts), raw.headers


ROUTER_CASES = [
    ("I forgot my password", "RESPOND", "reset-password"),
    ("I was charged twice this month", "HANDOFF", "billing team"),
    ("what's the weather like tomorrow", "REFUSE", "Acme"),
    ("my app crashes when I open it", "ROUTE", ""),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_router_on_every_protocol(
    proxy: Proxy, clean_sim: SimProvider, protocol: str, stream: bool
) -> None:
    for query, action, expected in ROUTER_CASES:
        text, headers = await ask(proxy, protocol, "support-bot", query, stream,
                                  extra_body=NO_CACHE)  # fmt: skip
        assert headers["x-gateway-action"] == action, query
        assert headers["x-gateway-intent"], query
        assert expected in text, (query, text)
    assert clean_sim.count("sim-claude") == 1  # only the technical question reached a model
    assert clean_sim.stats()["total"] == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_clarify_round_trip(proxy: Proxy, protocol: str) -> None:
    question, headers = await ask(proxy, protocol, "support-bot", "freeze")
    assert headers["x-gateway-action"] == "CLARIFY"
    conversation = [
        {"role": "user", "content": "freeze"},
        {"role": "assistant", "content": question},
        {"role": "user", "content": "my account"},
    ]
    _, headers = await ask(proxy, protocol, "support-bot", conversation)
    assert headers["x-gateway-intent"] == "freeze_account"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_every_model_group(proxy: Proxy, protocol: str, stream: bool) -> None:
    for group, provider in (
        ("gpt-sim", "openai"),
        ("claude-sim", "anthropic"),
        ("gemini-sim", "gemini"),
        ("gpt-sim-mini", "openai"),
    ):
        text, headers = await ask(
            proxy, protocol, group, f"hello {group} {protocol} {stream}", stream
        )
        assert text.startswith("Simulated reply"), (group, text)
        assert headers["x-gateway-model-group"] == group
        assert headers["x-gateway-provider"] == provider
        assert headers["x-gateway-cache"] == "MISS"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_exact_and_semantic_hits(proxy: Proxy, protocol: str) -> None:
    question = f"How do I export my data from the Acme app? ({protocol})"
    first, h1 = await ask(proxy, protocol, "gpt-sim", question)
    second, h2 = await ask(proxy, protocol, "gpt-sim", question)
    third, h3 = await ask(proxy, protocol, "gpt-sim", question.lower().replace("?", ""))
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"], h3["x-gateway-cache"]) == (
        "MISS",
        "HIT_EXACT",
        "HIT_SEMANTIC",
    )
    assert first == second == third


def _log_records(proxy: Proxy, alias: str) -> list[dict[str, Any]]:
    records = []
    for line in proxy.process.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"ts"') and f'"key_alias":"{alias}"' in line:
            records.append(json.loads(line))
    return records


async def _usage(proxy: Proxy) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=proxy.base_url) as http:
        r = await http.get(
            "/gateway/usage", headers={"authorization": f"Bearer {proxy.master_key}"}
        )
        r.raise_for_status()
        return dict(r.json())


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_request_is_logged_and_counted_once(proxy: Proxy, protocol: str) -> None:
    alias = f"meter-{protocol}"
    sent = 0
    for stream in (False, True):
        await ask(proxy, protocol, "claude-sim", f"metered {stream}", stream, key=KEYS[alias])
        await ask(proxy, protocol, "support-bot", "I forgot my password", stream, key=KEYS[alias])
        sent += 2
    await asyncio.sleep(0.5)  # the log is written by a thread
    records = _log_records(proxy, alias)
    assert len(records) == sent
    assert {r["endpoint"] for r in records} == {protocol}
    assert len({r["request_id"] for r in records}) == sent
    usage = (await _usage(proxy))["key"][alias]
    assert usage["requests"] == sent
    assert usage["tokens"] == sum(
        r["tokens"]["prompt"] + r["tokens"]["completion"] for r in records
    )
    assert usage["spend_usd"] == pytest.approx(sum(r["cost_usd"] for r in records), rel=1e-6)
    assert usage["spend_usd"] > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_budget_applies_on_every_protocol(proxy: Proxy, protocol: str) -> None:
    key = KEYS[f"budget-{protocol}"]
    spent = 0
    with pytest.raises((openai.RateLimitError, anthropic.RateLimitError)) as caught:
        for i in range(40):  # claude-sim: about $0.0005 per answer of 30 tokens
            await ask(proxy, protocol, "claude-sim", f"budget question {i}", key=key)
            spent += 1
    assert 1 <= spent < 40 and "budget" in str(caught.value)


async def _hold_a_stream(proxy: Proxy, protocol: str, key: str) -> None:
    """Open a stream, read its first event, then drop the connection."""
    async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30) as http:
        body: dict[str, Any] = {
            "model": "gpt-sim",
            "stream": True,
            "max_tokens": 500,
            "messages": [{"role": "user", "content": "a long story"}],
        }
        path = {
            "chat": "/v1/chat/completions",
            "messages": "/v1/messages",
            "responses": "/v1/responses",
        }[protocol]
        if protocol == "responses":
            body = {
                "model": "gpt-sim",
                "stream": True,
                "input": "a long story",
                "max_output_tokens": 500,
            }
        async with http.stream(
            "POST", path, json=body, headers={"authorization": f"Bearer {key}"}
        ) as r:
            assert r.status_code == 200
            lines: AsyncIterator[str] = r.aiter_lines()
            await anext(lines)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_parallel_slot_is_freed_after_success_error_and_disconnect(
    proxy: Proxy, clean_sim: SimProvider, protocol: str
) -> None:
    key = KEYS[f"parallel-{protocol}"]
    clean_sim.set_model("sim-gpt-a", {"ttft_ms": 800})
    clean_sim.set_model("sim-gpt-b", {"ttft_ms": 800})
    slow = asyncio.create_task(ask(proxy, protocol, "gpt-sim", "slow one", key=key))
    await asyncio.sleep(0.3)
    with pytest.raises((openai.RateLimitError, anthropic.RateLimitError)):
        await ask(proxy, protocol, "gpt-sim", "second at once", key=key)
    await slow  # success: the slot is free again
    await ask(proxy, protocol, "gpt-sim-mini", "after success", key=key)
    failing = {"faults": [{"kind": "http_500", "rate": 1.0}]}
    for model in ("sim-gpt-mini", "sim-gpt-a", "sim-gpt-b"):  # the group and its fallback
        clean_sim.set_model(model, failing)
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)):
        await ask(proxy, protocol, "gpt-sim-mini", "an error", key=key)
    for model in ("sim-gpt-mini", "sim-gpt-a", "sim-gpt-b"):
        clean_sim.clear_model(model)
    await ask(proxy, protocol, "gpt-sim-mini", "after an error", key=key)
    clean_sim.set_model("sim-gpt-a", {"tokens_per_second": 20})
    clean_sim.set_model("sim-gpt-b", {"tokens_per_second": 20})
    await _hold_a_stream(proxy, protocol, key)
    for _ in range(50):  # the gateway notices the client left and closes the request
        try:
            await ask(proxy, protocol, "gpt-sim-mini", "after a disconnect", key=key)
            break
        except (openai.RateLimitError, anthropic.RateLimitError):
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the parallel slot was not freed after the client disconnected")


async def test_embeddings_miss_counts_one_request(proxy: Proxy) -> None:
    client = oai(proxy, KEYS["app"])
    before = (await _usage(proxy))["model"].get("embed-sim", {}).get("requests", 0)
    raw = await client.embeddings.with_raw_response.create(
        model="embed-sim", input=["a unique embedding text"]
    )
    assert raw.headers["x-gateway-cache"] == "MISS"
    after = (await _usage(proxy))["model"]["embed-sim"]["requests"]
    assert after - before == 1


async def test_structured_output_gets_a_model_answer(proxy: Proxy) -> None:
    raw = await oai(proxy, KEYS["app"]).chat.completions.with_raw_response.create(
        model="support-bot",
        messages=[{"role": "user", "content": "I forgot my password"}],
        response_format={"type": "json_object"},
    )
    assert raw.headers["x-gateway-structured-output"] == "model"
    json.loads(raw.parse().choices[0].message.content or "")
