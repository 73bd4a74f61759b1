"""The simulated provider, run as a real server process, called through the LiteLLM SDK.

Proves LiteLLM 1.108's own provider code (openai/, anthropic/, gemini/) parses what the
simulator sends: content, usage, tool calls, Anthropic cached-token usage, error mapping.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
import struct
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from openai.types.responses import FunctionToolParam

from extensions.simprovider.text import MESSAGE_OVERHEAD_TOKENS, estimate_tokens
from tests.integration.simprovider_process import running_simulator

pytestmark = pytest.mark.integration

KEY = "sim-key"
SIM_CONFIG = f"""
seed: 11
accepted_api_keys: [{KEY}]
defaults:
  ttft_ms: 5
  tokens_per_second: 5000
models:
  sim-gpt-a: {{api: openai}}
  sim-claude: {{api: anthropic}}
  sim-gemini: {{api: gemini}}
  sim-embed: {{api: openai, embedding_dim: 256}}
"""
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
            },
            "required": ["city", "days", "metric"],
        },
    },
}
EXPECTED_ARGS = {"city": "sim", "days": 1, "metric": True}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
QUESTION_TOKENS = MESSAGE_OVERHEAD_TOKENS + estimate_tokens(QUESTION[0]["content"])
NO_RETRIES: dict[str, Any] = {"num_retries": 0, "max_retries": 0}


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m extensions.simprovider`` on a free port; yield its base URL."""
    with running_simulator(SIM_CONFIG, tmp_path_factory.mktemp("sim")) as url:
        yield url


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    module = importlib.import_module("litellm")
    setattr(module, "suppress_debug_info", True)  # noqa: B010 - ModuleType has no such attr
    return module


@pytest.fixture
async def sim(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Admin client; the simulator is reset before each test."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=10) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client


def targets(sim_url: str) -> dict[str, tuple[str, str]]:
    """wire format -> (LiteLLM model, api_base), exactly as litellm.yaml should have them."""
    return {
        "openai": ("openai/sim-gpt-a", f"{sim_url}/v1"),
        "anthropic": ("anthropic/sim-claude", sim_url),
        "gemini": ("gemini/sim-gemini", f"{sim_url}/v1beta"),
    }


WIRES = ["openai", "anthropic", "gemini"]


async def _complete(litellm: ModuleType, sim_url: str, wire: str, **kwargs: Any) -> Any:
    model, api_base = targets(sim_url)[wire]
    return await litellm.acompletion(
        model=model, api_base=api_base, api_key=KEY, **{**NO_RETRIES, **kwargs}
    )


async def _stream(litellm: ModuleType, sim_url: str, wire: str, **kwargs: Any) -> list[Any]:
    response = await _complete(litellm, sim_url, wire, stream=True, **kwargs)
    return [chunk async for chunk in response]


# ------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("wire", WIRES)
async def test_plain_and_stream_content_and_usage(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, wire: str
) -> None:
    plain = await _complete(litellm, sim_url, wire, messages=QUESTION, max_tokens=500)
    content = plain.choices[0].message.content
    name = targets(sim_url)[wire][0].split("/")[1]
    assert content.startswith(f"Simulated reply from {name}: ")
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage.prompt_tokens == QUESTION_TOKENS
    assert plain.usage.completion_tokens == estimate_tokens(content)
    assert plain.usage.total_tokens == QUESTION_TOKENS + estimate_tokens(content)

    chunks = await _stream(
        litellm,
        sim_url,
        wire,
        messages=QUESTION,
        max_tokens=500,
        stream_options={"include_usage": True},
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "stop" in finishes
    usages = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usages, "no usage chunk in stream"
    assert usages[-1].prompt_tokens == QUESTION_TOKENS
    assert usages[-1].completion_tokens == estimate_tokens(content)

    stats = (await sim.get("/_sim/stats")).json()
    assert stats["by_model"] == {name: 2} and stats["streaming"] == 1


@pytest.mark.parametrize("wire", WIRES)
async def test_max_tokens_gives_length(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, wire: str
) -> None:
    response = await _complete(litellm, sim_url, wire, messages=QUESTION, max_tokens=5)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5
    assert len(response.choices[0].message.content) == 20


@pytest.mark.parametrize("wire", WIRES)
async def test_tool_calls_plain_and_stream(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, wire: str
) -> None:
    plain = await _complete(litellm, sim_url, wire, messages=QUESTION, tools=[WEATHER_TOOL])
    assert plain.choices[0].finish_reason == "tool_calls"
    call = plain.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == EXPECTED_ARGS

    chunks = await _stream(litellm, sim_url, wire, messages=QUESTION, tools=[WEATHER_TOOL])
    built = litellm.stream_chunk_builder(chunks, messages=QUESTION)
    assert built.choices[0].finish_reason == "tool_calls"
    streamed_call = built.choices[0].message.tool_calls[0]
    assert streamed_call.function.name == "get_weather"
    assert json.loads(streamed_call.function.arguments) == EXPECTED_ARGS

    # the tool result goes back: the model answers with text (no endless tool loop)
    follow_up = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    answer = await _complete(litellm, sim_url, wire, messages=follow_up, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content.startswith("Simulated reply from")


# --------------------------------------------------------------------- Anthropic caching


async def test_anthropic_cache_usage_mapped_by_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient
) -> None:
    system_text = "You are a meticulous assistant for the gateway demo. " * 100
    cached = estimate_tokens(system_text)
    assert cached >= 1024
    messages = [
        {"role": "system", "content": system_text},
        {"role": "user", "content": "First question?"},
    ]
    injection = [{"location": "message", "role": "system"}]

    first = await _complete(
        litellm,
        sim_url,
        "anthropic",
        messages=messages,
        max_tokens=30,
        cache_control_injection_points=injection,
    )
    assert first.usage.cache_creation_input_tokens == cached
    assert first.usage.prompt_tokens_details.cache_creation_tokens == cached
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    uncached = MESSAGE_OVERHEAD_TOKENS + estimate_tokens("First question?")
    assert first.usage.prompt_tokens == cached + uncached

    sent = (await sim.get("/_sim/requests", params={"model": "sim-claude", "limit": 1})).json()
    body = sent["requests"][0]["body"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "x-api-key" not in sent["requests"][0]["headers"]

    messages[1] = {"role": "user", "content": "Second question?"}
    chunks = await _stream(
        litellm,
        sim_url,
        "anthropic",
        messages=messages,
        max_tokens=30,
        cache_control_injection_points=injection,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in chunks if getattr(c, "usage", None)][-1]
    assert usage.prompt_tokens_details.cached_tokens == cached
    assert usage.cache_read_input_tokens == cached
    assert usage.cache_creation_input_tokens == 0


# ---------------------------------------------------------------------------- embeddings


async def test_embeddings_through_litellm_and_openai_sdk(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient
) -> None:
    response = await litellm.aembedding(
        model="openai/sim-embed",
        input=["hello", "world"],
        api_base=f"{sim_url}/v1",
        api_key=KEY,
        **NO_RETRIES,
    )
    vectors = [item["embedding"] for item in response.data]
    assert [len(v) for v in vectors] == [256, 256]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-6)
    assert response.usage.prompt_tokens == estimate_tokens("hello") + estimate_tokens("world")

    # The openai SDK itself asks for base64 by default and decodes it.
    import openai

    async with openai.AsyncOpenAI(base_url=f"{sim_url}/v1", api_key=KEY, max_retries=0) as sdk:
        direct = await sdk.embeddings.create(model="sim-embed", input=["hello"])
        # LiteLLM refuses `dimensions` for openai/ models it does not know; the SDK sends it.
        smaller = await sdk.embeddings.create(model="sim-embed", input="hello", dimensions=64)
    assert len(smaller.data[0].embedding) == 64
    assert all(
        math.isclose(a, b, abs_tol=1e-6)
        for a, b in zip(direct.data[0].embedding, vectors[0], strict=True)
    )
    raw = (await sim.get("/_sim/requests", params={"model": "sim-embed", "limit": 2})).json()
    assert raw["requests"][0]["body"]["encoding_format"] == "base64"

    packed_response = await sim.post(
        "/v1/embeddings",
        json={"model": "sim-embed", "input": "hello", "encoding_format": "base64"},
        headers={"authorization": f"Bearer {KEY}"},
    )
    packed = packed_response.json()["data"][0]["embedding"]
    raw_bytes = base64.b64decode(packed)
    assert list(struct.unpack("<256f", raw_bytes))[:3] == pytest.approx(vectors[0][:3], abs=1e-6)


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("wire", WIRES)
async def test_errors_map_to_litellm_exceptions(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, wire: str
) -> None:
    expected = {
        "http_429": litellm.RateLimitError,
        "http_503": litellm.ServiceUnavailableError,
        "http_500": litellm.InternalServerError,
    }
    for fault, exception in expected.items():
        with pytest.raises(exception):
            await _complete(
                litellm, sim_url, wire, messages=QUESTION, headers={"x-sim-fault": fault}
            )

    model, api_base = targets(sim_url)[wire]
    with pytest.raises(litellm.AuthenticationError):
        await litellm.acompletion(
            model=model, api_base=api_base, api_key="wrong-key", messages=QUESTION, **NO_RETRIES
        )

    with pytest.raises(litellm.Timeout):
        await _complete(
            litellm,
            sim_url,
            wire,
            messages=QUESTION,
            timeout=0.5,
            headers={"x-sim-fault": "timeout", "x-sim-hang-s": "5"},
        )

    for stream in (False, True):
        with pytest.raises(
            (
                litellm.APIConnectionError,
                litellm.InternalServerError,
                litellm.ServiceUnavailableError,
            )
        ):
            response = await _complete(
                litellm,
                sim_url,
                wire,
                messages=QUESTION,
                stream=stream,
                headers={"x-sim-fault": "drop", "x-sim-after-chunks": "2"},
            )
            if stream:
                async for _ in response:
                    pass

    stats = (await sim.get("/_sim/stats")).json()
    assert stats["by_fault"] == {
        "http_429": 1,
        "http_503": 1,
        "http_500": 1,
        "timeout": 1,
        "drop": 2,
    }


async def test_yaml_fault_rule_first_n_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient
) -> None:
    override = {"api": "gemini", "faults": [{"kind": "http_429", "first_n": 1, "retry_after_s": 2}]}
    (await sim.put("/_sim/models/sim-gemini", json=override)).raise_for_status()
    with pytest.raises(litellm.RateLimitError):
        await _complete(litellm, sim_url, "gemini", messages=QUESTION)
    ok = await _complete(litellm, sim_url, "gemini", messages=QUESTION)
    assert ok.choices[0].message.content.startswith("Simulated reply from sim-gemini")
    (await sim.delete("/_sim/models/sim-gemini")).raise_for_status()


@pytest.mark.parametrize(
    ("model", "api_base_suffix"),
    [
        ("anthropic/sim-claude", "/"),  # LiteLLM builds "//v1/messages"
        ("gemini/sim-gemini", ""),  # "{api_base}/models/sim-gemini:generateContent"
        ("openai/sim-gpt-a", ""),  # "/chat/completions" without /v1
    ],
)
async def test_api_base_variants(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, model: str, api_base_suffix: str
) -> None:
    response = await litellm.acompletion(
        model=model,
        api_base=f"{sim_url}{api_base_suffix}",
        api_key=KEY,
        messages=QUESTION,
        **NO_RETRIES,
    )
    name = model.split("/")[1]
    assert response.choices[0].message.content.startswith(f"Simulated reply from {name}")


# ------------------------------------------------------------------------- Responses API

RESPONSES_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
    "strict": False,
}


async def test_responses_api_through_the_openai_sdk(sim_url: str, sim: httpx.AsyncClient) -> None:
    import openai
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        days: int

    async with openai.AsyncOpenAI(base_url=f"{sim_url}/v1", api_key=KEY, max_retries=0) as sdk:
        plain = await sdk.responses.create(
            model="sim-gpt-a", input="What is the capital of France?", instructions="be brief"
        )
        assert plain.status == "completed"
        assert plain.output_text.startswith("Simulated reply from sim-gpt-a: ")
        assert plain.usage is not None
        assert plain.usage.output_tokens == estimate_tokens(plain.output_text)

        stream = await sdk.responses.create(
            model="sim-gpt-a", input="What is the capital of France?", stream=True
        )
        kinds = [event.type async for event in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"

        async with sdk.responses.stream(
            model="sim-gpt-a", input="weather?", tools=[RESPONSES_TOOL]
        ) as events:
            final = await events.get_final_response()
        call = final.output[0]
        assert call.type == "function_call" and json.loads(call.arguments) == EXPECTED_ARGS

        parsed = await sdk.responses.parse(model="sim-gpt-a", input="x", text_format=Weather)
        assert parsed.output_parsed == Weather(city="sim", days=1)

    stats = (await sim.get("/_sim/stats")).json()
    assert stats["by_endpoint"] == {"openai.responses": 4} and stats["streaming"] == 2


async def test_responses_api_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient
) -> None:
    common: dict[str, Any] = {"api_base": f"{sim_url}/v1", "api_key": KEY, **NO_RETRIES}
    plain = await litellm.aresponses(model="openai/sim-gpt-a", input="hello there", **common)
    text = plain.output[0].content[0].text
    assert text.startswith("Simulated reply from sim-gpt-a: ")
    assert plain.usage.input_tokens == MESSAGE_OVERHEAD_TOKENS + estimate_tokens("hello there")
    assert plain.usage.output_tokens == estimate_tokens(text)

    stream = await litellm.aresponses(
        model="openai/sim-gpt-a", input="hello there", stream=True, **common
    )
    events = [event async for event in stream]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == text
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == plain.usage.output_tokens

    called = await litellm.aresponses(
        model="openai/sim-gpt-a", input="weather?", tools=[RESPONSES_TOOL], **common
    )
    assert json.loads(called.output[0].arguments) == EXPECTED_ARGS
    streamed = await litellm.aresponses(
        model="openai/sim-gpt-a", input="weather?", tools=[RESPONSES_TOOL], stream=True, **common
    )
    done = [e async for e in streamed if e.type == "response.function_call_arguments.done"]
    assert json.loads(done[0].arguments) == EXPECTED_ARGS


# ------------------------------------------------------------- Gemini structured output

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["warm", "cold"]}},
    },
    "required": ["city", "temperature", "tags"],
    "additionalProperties": False,
}


@pytest.fixture
def gemini_schema_model(litellm: ModuleType) -> Iterator[str]:
    """A sim Gemini model LiteLLM believes supports response_schema (what model_info's
    ``supports_response_schema: true`` does in litellm.yaml); unregistered afterwards."""
    key = "gemini/sim-gemini-schema"
    litellm.register_model(
        {key: {"litellm_provider": "gemini", "mode": "chat", "supports_response_schema": True}}
    )
    yield key
    litellm.model_cost.pop(key, None)


@pytest.mark.parametrize("kind", ["responseJsonSchema", "responseSchema"])
async def test_gemini_structured_output_through_litellm(
    litellm: ModuleType,
    sim_url: str,
    sim: httpx.AsyncClient,
    gemini_schema_model: str,
    kind: str,
) -> None:
    import jsonschema  # type: ignore[import-untyped]

    # LiteLLM sends responseJsonSchema to gemini-2+ names, responseSchema (OpenAPI) otherwise
    model = "gemini/gemini-2.5-flash" if kind == "responseJsonSchema" else gemini_schema_model
    response = await litellm.acompletion(
        model=model,
        api_base=f"{sim_url}/v1beta",
        api_key=KEY,
        messages=QUESTION,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
        },
        **NO_RETRIES,
    )
    answer = json.loads(response.choices[0].message.content)
    jsonschema.validate(answer, WEATHER_SCHEMA)
    assert answer == {"city": "sim", "temperature": 1, "tags": ["warm"]}
    sent = (await sim.get("/_sim/requests", params={"limit": 1})).json()["requests"][0]
    config = sent["body"]["generationConfig"]
    assert config["response_mime_type"] == "application/json"
    snake = {"responseJsonSchema": "response_json_schema", "responseSchema": "response_schema"}
    assert snake[kind] in config
