"""The gateway through the official openai SDK: every wire format, streaming,
embeddings, the model list, tool calls, load balancing and typed errors."""

from __future__ import annotations

import math
from collections import Counter

import openai
import pytest

from tests.support.stack import NO_CACHE, Proxy, SimProvider

pytestmark = pytest.mark.integration

# model group -> (deployment id in litellm.yaml, upstream model name at the provider)
CHAT_GROUPS = {
    "claude-sim": ("claude-sim", "sim-claude"),
    "gemini-sim": ("gemini-sim", "sim-gemini"),
    "gpt-sim-mini": ("gpt-sim-mini", "sim-gpt-mini"),
}
MESSAGES = [{"role": "user", "content": "Explain what an API gateway does, briefly."}]


async def test_model_list_names_every_group(gateway: Proxy) -> None:
    models = await gateway.client().models.list()
    ids = {m.id for m in models.data}
    assert {"gpt-sim", "gpt-sim-mini", "claude-sim", "gemini-sim", "embed-sim"} <= ids


@pytest.mark.parametrize("group", sorted(CHAT_GROUPS))
async def test_chat_completion_per_wire_format(
    gateway: Proxy, clean_sim: SimProvider, group: str
) -> None:
    deployment, upstream = CHAT_GROUPS[group]
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model=group,
        messages=MESSAGES,  # type: ignore[arg-type]
    )
    resp = raw.parse()
    text = resp.choices[0].message.content or ""
    assert text.startswith(f"Simulated reply from {upstream}")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens > 5
    assert resp.usage.completion_tokens > 5
    assert raw.headers["x-gateway-deployment"] == deployment
    assert raw.headers["x-gateway-model-group"] == group
    assert clean_sim.count(upstream) == 1


@pytest.mark.parametrize("group", sorted(CHAT_GROUPS))
async def test_streaming_per_wire_format(
    gateway: Proxy, clean_sim: SimProvider, group: str
) -> None:
    _, upstream = CHAT_GROUPS[group]
    client = gateway.client()
    plain = await client.chat.completions.create(
        model=group,
        messages=MESSAGES,
        extra_body=NO_CACHE,  # type: ignore[arg-type]
    )
    stream = await client.chat.completions.create(
        model=group,
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
        extra_body=NO_CACHE,
    )
    pieces: list[str] = []
    finish: str | None = None
    usage_seen = False
    async for chunk in stream:
        if chunk.usage is not None:
            usage_seen = chunk.usage.completion_tokens > 0
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 3, "expected several content chunks"
    assert "".join(pieces) == plain.choices[0].message.content
    assert finish == "stop"
    assert usage_seen
    assert clean_sim.count(upstream) == 2


@pytest.mark.parametrize("group", sorted(CHAT_GROUPS))
async def test_tool_calls_per_wire_format(
    gateway: Proxy, clean_sim: SimProvider, group: str
) -> None:
    tools = [{
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Look up an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }]  # fmt: skip
    resp = await gateway.client().chat.completions.create(
        model=group,
        messages=[{"role": "user", "content": "Where is order 42?"}],
        tools=tools,  # type: ignore[arg-type]
    )
    calls = resp.choices[0].message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].function.name == "get_order_status"  # type: ignore[union-attr]
    assert '"order_id"' in calls[0].function.arguments  # type: ignore[union-attr]


async def test_embeddings(gateway: Proxy, clean_sim: SimProvider) -> None:
    client = gateway.client()
    resp = await client.embeddings.create(model="embed-sim", input=["hello world", "goodbye"])
    assert len(resp.data) == 2
    vec = resp.data[0].embedding
    assert len(vec) > 16
    assert math.isclose(math.sqrt(sum(x * x for x in vec)), 1.0, rel_tol=1e-3)
    again = await client.embeddings.create(model="embed-sim", input="hello world")
    assert again.data[0].embedding == pytest.approx(vec, abs=1e-6)
    assert resp.data[1].embedding != pytest.approx(vec, abs=1e-3)
    assert resp.usage.prompt_tokens > 0
    assert clean_sim.count("sim-embed") == 2


async def test_balanced_group_spreads_load(gateway: Proxy, clean_sim: SimProvider) -> None:
    client = gateway.client()
    served: Counter[str] = Counter()
    for i in range(40):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-sim", messages=[{"role": "user", "content": f"question {i}"}]
        )
        served[raw.headers["x-gateway-deployment"]] += 1
    assert set(served) == {"gpt-sim-a", "gpt-sim-b"}
    assert min(served.values()) >= 8, served
    assert clean_sim.count("sim-gpt-a") == served["gpt-sim-a"]
    assert clean_sim.count("sim-gpt-b") == served["gpt-sim-b"]


async def test_missing_key_is_authentication_error(gateway: Proxy, clean_sim: SimProvider) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await gateway.client().chat.completions.create(
            model="gpt-sim",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"Authorization": openai.Omit()},  # the SDK sends no key at all
        )
    assert "No API key" in str(info.value)
    assert clean_sim.stats()["total"] == 0


async def test_wrong_key_is_authentication_error(gateway: Proxy, clean_sim: SimProvider) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await gateway.client(api_key="sk-wrong").chat.completions.create(
            model="gpt-sim",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
    assert "Invalid API key" in str(info.value)
    assert "sk-wrong" not in str(info.value)
    with pytest.raises(openai.AuthenticationError):
        await gateway.client(api_key="sk-wrong").models.list()
    assert clean_sim.stats()["total"] == 0


async def test_unknown_model_is_a_4xx(gateway: Proxy, clean_sim: SimProvider) -> None:
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as info:
        await gateway.client().chat.completions.create(
            model="no-such-model",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
    assert "no-such-model" in str(info.value)
    assert clean_sim.stats()["total"] == 0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": -5}, "max_tokens"),
    ],
)
async def test_malformed_request_is_bad_request(
    gateway: Proxy, clean_sim: SimProvider, extra: dict[str, object], param: str
) -> None:
    body: dict[str, object] = {"model": "gpt-sim", "messages": MESSAGES, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        await gateway.client().chat.completions.create(**body)  # type: ignore[call-overload]
    err = info.value.body
    assert isinstance(err, dict) and err.get("param") == param, err
    assert "Traceback" not in str(info.value)
    assert clean_sim.stats()["total"] == 0


async def test_malformed_json_is_bad_request(gateway: Proxy) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{gateway.base_url}/v1/chat/completions",
            content=b'{"model": "gpt-sim", "messages": [',
            headers={
                "Authorization": f"Bearer {gateway.master_key}",
                "Content-Type": "application/json",
            },
        )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_malformed_embedding_is_bad_request(gateway: Proxy, clean_sim: SimProvider) -> None:
    with pytest.raises(openai.BadRequestError):
        await gateway.client().embeddings.create(model="embed-sim", input=[])
    assert clean_sim.stats()["total"] == 0


async def test_worker_freezes_its_start_up_heap(gateway: Proxy) -> None:
    """Once started, each worker moves its start-up objects out of the collector's reach
    (a full collection over them stalled the event loop for up to 0.8 s)."""
    import asyncio
    import re

    from extensions.proxy.heap import SETTLE_S

    pattern = re.compile(r"froze the start-up heap: (\d+) objects")
    for _ in range(int(SETTLE_S * 4) + 20):
        found = pattern.findall(gateway.process.log_path.read_text())
        if found:
            break
        await asyncio.sleep(0.5)
    assert found, "no worker logged freezing its heap"
    assert all(int(n) > 100_000 for n in found)  # LiteLLM alone is millions of objects
