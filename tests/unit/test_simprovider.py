"""Unit tests of the simulated provider: pure logic and the app through ASGITransport."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from extensions.simprovider.app import create_app
from extensions.simprovider.faults import FaultBook, FaultHeaderError, fault_from_headers
from extensions.simprovider.prompt_cache import CacheOutcome, PromptCache
from extensions.simprovider.runtime import is_simulated_drop, sleep_unless_disconnected
from extensions.simprovider.schema_values import (
    TEXT,
    OutputFormat,
    OutputKind,
    arguments_for_schema,
    render_answer,
)
from extensions.simprovider.server import DropLogFilter, main
from extensions.simprovider.settings import (
    FaultKind,
    FaultRule,
    ModelBehaviour,
    SimSettings,
    WireFormat,
    load_sim_settings,
    parse_sim_settings,
)
from extensions.simprovider.text import (
    VOCABULARY,
    decode_base64_floats,
    embedding_vector,
    encode_base64_floats,
    estimate_tokens,
    generate_answer,
    split_chunks,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEFAULT_YAML = REPO / "config" / "simprovider.yaml"
OPENAI_AUTH = {"authorization": "Bearer test-key"}
ANTHROPIC_AUTH = {"x-api-key": "test-key"}
GEMINI_AUTH = {"x-goog-api-key": "test-key"}
WEATHER_TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "metric": {"type": "boolean"},
        "note": {"type": "string"},
    },
    "required": ["city", "days", "metric"],
}
EXPECTED_ARGS = {"city": "sim", "days": 1, "metric": True}


def fast_settings(**overrides: Any) -> SimSettings:
    data: dict[str, Any] = {
        "seed": 7,
        "defaults": {"ttft_ms": 0, "tokens_per_second": 1_000_000, "cache_min_tokens": 50},
        "models": {
            "gpt": {"api": "openai"},
            "claude": {"api": "anthropic"},
            "gem": {"api": "gemini"},
        },
    }
    data.update(overrides)
    return parse_sim_settings(data, "<test>")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fast_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        yield c


def sse_payloads(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        name = lines[0].removeprefix("event: ")
        events.append((name, json.loads(lines[1].removeprefix("data: "))))
    return events


# ------------------------------------------------------------------------------- settings


def test_default_yaml_loads_with_all_gateway_models() -> None:
    settings = load_sim_settings(DEFAULT_YAML)
    for name in ("sim-gpt-a", "sim-gpt-b", "sim-gpt-mini", "sim-claude", "sim-gemini", "sim-embed"):
        assert name in settings.models
    assert settings.behaviour_for("sim-claude").api is WireFormat.ANTHROPIC
    assert settings.behaviour_for("sim-gemini").api is WireFormat.GEMINI
    assert settings.behaviour_for("unlisted").api is WireFormat.ANY
    assert settings.defaults.ttft_ms <= 50


def test_entry_overlays_only_fields_it_sets() -> None:
    settings = fast_settings(
        defaults={"ttft_ms": 5, "tokens_per_second": 99, "answer_words": {"min": 3, "max": 4}},
        models={"m": {"ttft_ms": 50}},
    )
    merged = settings.behaviour_for("m")
    assert merged.ttft_ms == 50
    assert merged.tokens_per_second == 99
    assert merged.answer_words.max == 4


def test_bad_rate_names_file_and_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("models:\n  sim-gpt-a:\n    faults:\n      - {kind: http_500, rate: 1.5}\n")
    with pytest.raises(ValueError) as info:
        load_sim_settings(path)
    message = str(info.value)
    assert str(path) in message
    assert "models.sim-gpt-a.faults[0].rate" in message
    assert "less than or equal to 1" in message


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("defaults:\n  ttft: 3\n", "defaults.ttft"),
        ("models:\n  m:\n    faults: [{kind: explode}]\n", "models.m.faults[0].kind"),
        ("models:\n  m:\n    answer_words: {min: 9, max: 2}\n", "models.m.answer_words"),
        ("defaults:\n  tokens_per_second: 0\n", "defaults.tokens_per_second"),
        ("defaults:\n  cache_increment_tokens: 0\n", "defaults.cache_increment_tokens"),
        ("models:\n  m:\n    cached_content_ttl_s: -1\n", "models.m.cached_content_ttl_s"),
        ("- just\n- a list\n", "expected a mapping"),
        ("models: {m: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_settings_messages(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=r"bad\.yaml") as info:
        load_sim_settings(path)
    assert expected in str(info.value)


def test_missing_file_is_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_sim_settings(tmp_path / "nope.yaml")


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_sim_settings(path) == SimSettings()


# --------------------------------------------------------------------------------- faults


def test_first_n_faults_then_passes() -> None:
    book = FaultBook(seed=1)
    rules = (FaultRule(kind=FaultKind.HTTP_503, first_n=2),)
    outcomes = [book.decide("m", rules) for _ in range(4)]
    assert [o.kind if o else None for o in outcomes] == [FaultKind.HTTP_503] * 2 + [None] * 2
    book.reset("m")
    assert book.decide("m", rules) is not None


def test_rate_is_reproducible_and_roughly_right() -> None:
    rules = (FaultRule(kind=FaultKind.HTTP_500, rate=0.3),)

    def run(seed: int) -> list[bool]:
        book = FaultBook(seed)
        return [book.decide("m", rules) is not None for _ in range(400)]

    assert run(5) == run(5)
    assert run(5) != run(6)
    assert 80 < sum(run(5)) < 160


def test_rules_in_order_and_rate_zero_never_fires() -> None:
    book = FaultBook(0)
    rules = (
        FaultRule(kind=FaultKind.HTTP_500, rate=0.0),
        FaultRule(kind=FaultKind.HTTP_429, first_n=1),
        FaultRule(kind=FaultKind.DROP),
    )
    first, second = book.decide("m", rules), book.decide("m", rules)
    assert first is not None and first.kind is FaultKind.HTTP_429
    assert second is not None and second.kind is FaultKind.DROP


def test_fault_headers() -> None:
    assert fault_from_headers({}) is None
    rule = fault_from_headers({"x-sim-fault": "HTTP_429", "x-sim-retry-after-s": "2.5"})
    assert rule is not None and rule.kind is FaultKind.HTTP_429 and rule.retry_after_s == 2.5
    with pytest.raises(FaultHeaderError, match="x-sim-fault"):
        fault_from_headers({"x-sim-fault": "meteor"})
    with pytest.raises(FaultHeaderError, match="x-sim-hang-s"):
        fault_from_headers({"x-sim-fault": "timeout", "x-sim-hang-s": "soon"})


# ----------------------------------------------------------------------------------- text


def test_token_rule() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2


def test_answers_are_deterministic_and_bounded() -> None:
    one = generate_answer("m", "hello", 20, 60)
    assert one == generate_answer("m", "hello", 20, 60)
    assert one.text.startswith("Simulated reply from m: ")
    assert one != generate_answer("m", "hello!", 20, 60)
    assert one != generate_answer("other", "hello", 20, 60)
    words = one.text.removeprefix("Simulated reply from m: ").rstrip(".").split()
    assert 20 <= len(words) <= 60
    assert set(words) <= set(VOCABULARY)
    assert one.tokens == estimate_tokens(one.text) and not one.truncated
    assert "".join(split_chunks(one.text)) == one.text


def test_answer_capped_by_max_tokens() -> None:
    capped = generate_answer("m", "hello", 40, 40, max_tokens=5)
    assert capped.truncated and capped.tokens == 5 and len(capped.text) == 20


def test_arguments_from_schema() -> None:
    assert arguments_for_schema(WEATHER_TOOL_SCHEMA) == EXPECTED_ARGS
    nested = {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"type": "number"}},
            "opt": {"type": ["null", "string"]},
            "inner": {
                "type": "OBJECT",
                "properties": {"flag": {"type": "BOOLEAN"}},
                "required": ["flag"],
            },
        },
        "required": ["unit", "tags", "opt", "inner"],
    }
    assert arguments_for_schema(nested) == {
        "unit": "c",
        "tags": [1],
        "opt": "sim",
        "inner": {"flag": True},
    }
    assert arguments_for_schema(None) == {}


def test_structured_answers_fill_every_property_within_constraints() -> None:
    schema = {
        "$defs": {
            "Day": {"type": "string", "format": "date"},
            "Base": {"type": "object", "properties": {"id": {"type": "string", "minLength": 5}}},
        },
        "allOf": [{"$ref": "#/$defs/Base"}],
        "type": "object",
        "properties": {
            "day": {"$ref": "#/$defs/Day"},
            "score": {"type": "number", "exclusiveMinimum": 1, "maximum": 10},
            "count": {"type": "integer", "minimum": 0.5},
            "small": {"type": "integer", "maximum": 0},
            "pair": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
            "none": {"type": "array", "maxItems": 0},
            "short": {"type": "string", "maxLength": 2},
            "choice": {"anyOf": [{"type": "null"}, {"const": 7}]},
        },
        "required": ["day"],
    }
    fmt = OutputFormat(OutputKind.JSON_SCHEMA, schema)
    answer = json.loads(render_answer(fmt, "text"))
    assert answer == {
        "day": "2025-01-01",
        "score": 2,
        "count": 1,
        "small": 0,
        "pair": [True, True],
        "none": [],
        "short": "si",
        "choice": 7,
        "id": "simsi",
    }
    jsonschema.validate(answer, schema)
    assert json.loads(render_answer(OutputFormat(OutputKind.JSON_OBJECT), "t")) == {"answer": "t"}
    assert render_answer(OutputFormat(OutputKind.ENUM, {"enum": ["x", "y"]}), "t") == "x"
    assert render_answer(TEXT, "t") == "t"


SCHEMA_KEYS = st.sampled_from(
    ["type", "properties", "required", "items", "enum", "$ref", "allOf", "anyOf", "minimum",
     "exclusiveMaximum", "minItems", "maxItems", "minLength", "format", "$defs", "const"]
)  # fmt: skip
SCHEMA_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
SCHEMA_LIKE = st.recursive(
    SCHEMA_SCALARS | st.sampled_from(["object", "array", "string", "#/$defs/a", "#/"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SCHEMA_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(schema=SCHEMA_LIKE)
@settings(max_examples=300, deadline=None)
def test_schema_values_never_raise(schema: Any) -> None:
    json.loads(render_answer(OutputFormat(OutputKind.JSON_SCHEMA, schema), "t"))
    assert isinstance(arguments_for_schema(schema), dict)


def test_embeddings_unit_norm_deterministic_and_base64() -> None:
    vector = embedding_vector("hello", 64)
    assert len(vector) == 64
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-9)
    assert vector == embedding_vector("hello", 64)
    assert vector != embedding_vector("hullo", 64)
    decoded = decode_base64_floats(encode_base64_floats(vector))
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(vector, decoded, strict=True))


def test_prompt_cache_write_read_expiry() -> None:
    cache = PromptCache()
    assert cache.lookup("m", "k", 100, 1024, 300, now=0).outcome is CacheOutcome.NONE
    assert cache.lookup("m", "k", 2000, 1024, 300, now=0).outcome is CacheOutcome.WRITE
    hit = cache.lookup("m", "k", 2000, 1024, 300, now=200)
    assert hit.outcome is CacheOutcome.READ and hit.tokens == 2000
    assert cache.lookup("m", "k", 2000, 1024, 300, now=450).outcome is CacheOutcome.READ
    assert cache.lookup("other", "k", 2000, 1024, 300, now=450).outcome is CacheOutcome.WRITE
    assert cache.lookup("m", "k", 2000, 1024, 300, now=2000).outcome is CacheOutcome.WRITE


def test_drop_log_filter() -> None:
    from extensions.simprovider.runtime import SimulatedDrop

    try:
        raise SimulatedDrop("x")
    except SimulatedDrop as exc:
        drop_info = (type(exc), exc, exc.__traceback__)
    record = logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, "boom", (), drop_info)
    assert not DropLogFilter().filter(record)
    other = logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, "boom", (), None)
    assert DropLogFilter().filter(other)
    group = BaseExceptionGroup("g", [SimulatedDrop("y")])
    assert is_simulated_drop(group)


def test_main_rejects_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("seed: [1]\n")
    assert main(["--config", str(path), "--port", "0"]) == 2
    assert "seed" in capsys.readouterr().err


# ------------------------------------------------------------------------------ OpenAI app


async def test_openai_chat_plain(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hello there"}]}
    first = await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    second = await client.post("/chat/completions", json=body, headers=OPENAI_AUTH)
    assert first.status_code == 200
    data = first.json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == second.json()["choices"][0]["message"]["content"]
    usage = data["usage"]
    assert usage["prompt_tokens"] == 4 + estimate_tokens("hello there")
    assert usage["completion_tokens"] == estimate_tokens(choice["message"]["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_openai_stream_with_usage(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "stream me"}],
        "max_tokens": 8,
    }
    plain = (await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)).json()
    assert plain["choices"][0]["finish_reason"] == "length"
    body.update(stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


async def test_openai_tool_calls_plain_and_stream(client: httpx.AsyncClient) -> None:
    tools = [
        {"type": "function", "function": {"name": "other", "parameters": {}}},
        {"type": "function", "function": {"name": "weather", "parameters": WEATHER_TOOL_SCHEMA}},
    ]
    body: dict[str, Any] = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    }
    data = (await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == EXPECTED_ARGS

    body["stream"] = True
    response = await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    chunks = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "weather"
    arguments = "".join(
        d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d
    )
    assert json.loads(arguments) == EXPECTED_ARGS
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_openai_tool_choice_none_and_after_tool_result(client: httpx.AsyncClient) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    base = {"model": "gpt", "tools": tools}
    no_tools = {**base, "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"}
    after_result = {
        **base,
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
    }
    for body in (no_tools, after_result):
        data = (await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)).json()
        assert data["choices"][0]["finish_reason"] == "stop"
        assert data["choices"][0]["message"]["content"].startswith("Simulated reply from gpt")


async def test_openai_errors(client: httpx.AsyncClient) -> None:
    ok_body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    missing_key = await client.post("/v1/chat/completions", json=ok_body)
    assert missing_key.status_code == 401
    assert missing_key.json()["error"]["code"] == "invalid_api_key"
    empty_key = await client.post(
        "/v1/chat/completions", json=ok_body, headers={"authorization": "Bearer "}
    )
    assert empty_key.status_code == 401
    bad_json = await client.post("/v1/chat/completions", content=b"{nope", headers=OPENAI_AUTH)
    assert bad_json.status_code == 400
    assert set(bad_json.json()["error"]) >= {"message", "type", "code"}
    no_messages = await client.post(
        "/v1/chat/completions", json={"model": "gpt"}, headers=OPENAI_AUTH
    )
    assert no_messages.status_code == 400
    wrong_api = await client.post(
        "/v1/chat/completions", json={**ok_body, "model": "claude"}, headers=OPENAI_AUTH
    )
    assert wrong_api.status_code == 404


async def test_openai_429_headers(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    headers = {**OPENAI_AUTH, "x-sim-fault": "http_429", "x-sim-retry-after-s": "1.5"}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.json()["error"]["type"] == "requests"


async def test_embeddings(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"model": "gpt", "input": ["alpha", "beta"]}
    floats = (await client.post("/v1/embeddings", json=body, headers=OPENAI_AUTH)).json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 256 and math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-6)
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # ceil(5/4) + ceil(4/4)

    body.update(encoding_format="base64", dimensions=32)
    packed = (await client.post("/v1/embeddings", json=body, headers=OPENAI_AUTH)).json()
    decoded = decode_base64_floats(packed["data"][0]["embedding"])
    assert len(decoded) == 32
    again = await client.post(
        "/v1/embeddings",
        json={"model": "gpt", "input": "alpha", "dimensions": 32},
        headers=OPENAI_AUTH,
    )
    same = again.json()["data"][0]["embedding"]
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded, same, strict=True))

    ids = await client.post(
        "/v1/embeddings", json={"model": "gpt", "input": [[1, 2, 3], [4]]}, headers=OPENAI_AUTH
    )
    assert len(ids.json()["data"]) == 2
    for bad in ({"model": "gpt", "input": []}, {"model": "gpt", "input": [{}]}):
        response = await client.post("/v1/embeddings", json=bad, headers=OPENAI_AUTH)
        assert response.status_code == 400


async def test_models_list(client: httpx.AsyncClient) -> None:
    data = (await client.get("/v1/models")).json()
    assert {m["id"] for m in data["data"]} == {"gpt", "claude", "gem"}


# --------------------------------------------------------------------------- Anthropic app


async def test_anthropic_plain_and_stream_sequence(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 1000,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}],
    }
    plain = (await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)).json()
    assert plain["type"] == "message" and plain["stop_reason"] == "end_turn"
    usage = plain["usage"]
    assert usage["input_tokens"] == 4 + estimate_tokens("be brief") + estimate_tokens("hi")
    assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0

    body["stream"] = True
    response = await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == plain["content"][0]["text"]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == usage["output_tokens"]


async def test_anthropic_tool_use_stream(client: httpx.AsyncClient) -> None:
    body = {
        "model": "claude",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"name": "weather", "input_schema": WEATHER_TOOL_SCHEMA}],
        "stream": True,
    }
    response = await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)
    events = sse_events(response.text)
    start = events[1][1]["content_block"]
    assert start["type"] == "tool_use" and start["name"] == "weather"
    partial = "".join(
        data["delta"]["partial_json"] for name, data in events if name == "content_block_delta"
    )
    assert json.loads(partial) == EXPECTED_ARGS
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_anthropic_prompt_caching(client: httpx.AsyncClient) -> None:
    long_system = "You are a careful assistant. " * 20  # 580 chars -> 145 tokens >= 50
    body = {
        "model": "claude",
        "max_tokens": 50,
        "system": [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "question one"}],
    }
    cached_tokens = estimate_tokens(long_system)
    first = (await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)).json()["usage"]
    assert first["cache_creation_input_tokens"] == cached_tokens
    assert first["cache_read_input_tokens"] == 0
    assert first["input_tokens"] == 4 + estimate_tokens("question one")
    body["messages"] = [{"role": "user", "content": "a different question"}]
    second = (await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)).json()["usage"]
    assert second["cache_read_input_tokens"] == cached_tokens
    assert second["cache_creation_input_tokens"] == 0
    # below the minimum: no caching at all
    body["system"] = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    third = (await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)).json()["usage"]
    assert third["cache_creation_input_tokens"] == third["cache_read_input_tokens"] == 0
    # reset forgets the cache
    await client.post("/_sim/reset")
    body["system"] = [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
    fourth = (await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)).json()["usage"]
    assert fourth["cache_creation_input_tokens"] == cached_tokens


async def test_anthropic_errors(client: httpx.AsyncClient) -> None:
    body = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    no_key = await client.post("/v1/messages", json=body)
    assert no_key.status_code == 401
    assert no_key.json()["type"] == "error"
    assert no_key.json()["error"]["type"] == "authentication_error"
    missing_max = {k: v for k, v in body.items() if k != "max_tokens"}
    bad = await client.post("/v1/messages", json=missing_max, headers=ANTHROPIC_AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    limited = await client.post(
        "/v1/messages", json=body, headers={**ANTHROPIC_AUTH, "x-sim-fault": "http_429"}
    )
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_error"


# ------------------------------------------------------------------------------ Gemini app


async def test_gemini_plain_stream_and_function_call(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": "hello gemini"}]}],
        "system_instruction": {"parts": [{"text": "be nice"}]},
        "generationConfig": {"max_output_tokens": 7},
    }
    url = "/v1beta/models/gem:generateContent"
    plain = (await client.post(url, json=body, headers=GEMINI_AUTH)).json()
    candidate = plain["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS"
    usage = plain["usageMetadata"]
    assert usage["candidatesTokenCount"] == 7
    assert usage["promptTokenCount"] == 8 + estimate_tokens("hello gemini") + estimate_tokens(
        "be nice"
    )

    stream_url = "/v1beta/models/gem:streamGenerateContent?alt=sse&key=test-key"
    response = await client.post(stream_url, json=body)
    chunks = [json.loads(p) for p in sse_payloads(response.text)]
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == candidate["content"]["parts"][0]["text"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert chunks[-1]["usageMetadata"] == usage

    body["tools"] = [
        {"function_declarations": [{"name": "weather", "parameters": WEATHER_TOOL_SCHEMA}]}
    ]
    called = (await client.post(url, json=body, headers=GEMINI_AUTH)).json()
    part = called["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"] == {"name": "weather", "args": EXPECTED_ARGS}
    body["toolConfig"] = {"functionCallingConfig": {"mode": "NONE"}}
    text_only = (await client.post(url, json=body, headers=GEMINI_AUTH)).json()
    assert "text" in text_only["candidates"][0]["content"]["parts"][0]


async def test_gemini_errors(client: httpx.AsyncClient) -> None:
    url = "/v1beta/models/gem:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    no_key = await client.post(url, json=body)
    assert no_key.status_code == 401
    assert no_key.json()["error"] == {
        "code": 401,
        "message": no_key.json()["error"]["message"],
        "status": "UNAUTHENTICATED",
    }
    bad = await client.post(url, json={"contents": []}, headers=GEMINI_AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    unavailable = await client.post(
        url, json=body, headers={**GEMINI_AUTH, "x-sim-fault": "http_503"}
    )
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["status"] == "UNAVAILABLE"
    unknown = await client.post("/v1beta/models/gem:embedContent", json=body, headers=GEMINI_AUTH)
    assert unknown.status_code == 404


# ---------------------------------------------------------------- latency, faults, admin


async def test_ttft_header_delays_answer(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    started = time.perf_counter()
    response = await client.post(
        "/v1/chat/completions", json=body, headers={**OPENAI_AUTH, "x-sim-ttft-ms": "150"}
    )
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.14
    bad = await client.post(
        "/v1/chat/completions", json=body, headers={**OPENAI_AUTH, "x-sim-ttft-ms": "-1"}
    )
    assert bad.status_code == 400


async def test_stream_is_paced_by_tokens_per_second(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "pace"}], "stream": True}
    pace = {**OPENAI_AUTH, "x-sim-ttft-ms": "30", "x-sim-tokens-per-second": "1000"}
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body, headers=pace)
    elapsed = time.perf_counter() - started
    chunks = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in chunks]
    paced_tokens = sum(estimate_tokens(p) for p in pieces[:-1])
    assert elapsed >= 0.03 + 0.9 * paced_tokens / 1000


async def test_timeout_fault_hangs_then_answers(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    headers = {**OPENAI_AUTH, "x-sim-fault": "timeout", "x-sim-hang-s": "0.2"}
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.19


async def test_long_sleep_ends_when_client_disconnects() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    started = time.perf_counter()
    assert await sleep_unless_disconnected(request, 30.0) is False
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("stream", [False, True])
async def test_drop_aborts_response(client: httpx.AsyncClient, stream: bool) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    headers = {**OPENAI_AUTH, "x-sim-fault": "drop", "x-sim-after-chunks": "2"}
    with pytest.raises(Exception) as info:  # ASGITransport re-raises the app's error
        await client.post("/v1/chat/completions", json=body, headers=headers)
    assert is_simulated_drop(info.value)


async def test_admin_override_first_n_stats_and_reset(client: httpx.AsyncClient) -> None:
    behaviour = {"faults": [{"kind": "http_503", "first_n": 1}], "ttft_ms": 0}
    put = await client.put("/_sim/models/gpt", json=behaviour)
    assert put.status_code == 200
    assert put.json()["source"] == "override"
    assert put.json()["behaviour"]["faults"][0]["kind"] == "http_503"
    body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
    statuses = [
        (await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 200, 200]
    await client.post("/v1/messages", json={"model": "claude"}, headers=ANTHROPIC_AUTH)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["total"] == 4
    assert stats["by_model"] == {"gpt": 3, "claude": 1}
    assert stats["by_endpoint"] == {"openai.chat_completions": 3, "anthropic.messages": 1}
    assert stats["by_fault"] == {"http_503": 1}

    invalid = await client.put("/_sim/models/gpt", json={"faults": [{"kind": "x", "rate": 2}]})
    assert invalid.status_code == 422
    assert "models.gpt.faults[0].kind" in invalid.json()["error"]["message"]
    deleted = (await client.delete("/_sim/models/gpt")).json()
    assert deleted["removed"] is True and deleted["source"] == "yaml"

    await client.put("/_sim/models/gpt", json=behaviour)
    assert (await client.post("/_sim/reset")).json() == {"status": "reset"}
    assert (await client.get("/_sim/stats")).json()["total"] == 0
    assert (await client.get("/_sim/models/gpt")).json()["source"] == "yaml"


async def test_request_log_hides_credentials(client: httpx.AsyncClient) -> None:
    for word in ("one", "two", "three"):
        body = {"model": "gpt", "messages": [{"role": "user", "content": word}]}
        await client.post(
            "/v1/chat/completions", json=body, headers={**OPENAI_AUTH, "x-trace": word}
        )
    await client.post("/v1beta/models/gem:generateContent?key=secret", json={"contents": []})
    logged = (await client.get("/_sim/requests", params={"model": "gpt", "limit": 2})).json()
    entries = logged["requests"]
    assert [e["body"]["messages"][0]["content"] for e in entries] == ["two", "three"]
    assert "authorization" not in entries[0]["headers"]
    assert entries[0]["headers"]["x-trace"] == "two"
    gem = (await client.get("/_sim/requests", params={"model": "gem"})).json()["requests"]
    assert gem[0]["query"] == {} and gem[0]["path"] == "/v1beta/models/gem:generateContent"
    everything = (await client.get("/_sim/requests", params={"limit": 100})).json()["requests"]
    assert len(everything) == 4


async def test_health_and_double_slash(client: httpx.AsyncClient) -> None:
    health = (await client.get("/_sim/health")).json()
    assert health["status"] == "ok"
    body = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("http://sim//v1/messages", json=body, headers=ANTHROPIC_AUTH)
    assert response.status_code == 200


async def test_accepted_api_keys() -> None:
    app = create_app(fast_settings(accepted_api_keys=["good"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        body = {"model": "gpt", "messages": [{"role": "user", "content": "x"}]}
        bad = await c.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer bad"}
        )
        good = await c.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer good"}
        )
    assert (bad.status_code, good.status_code) == (401, 200)


def test_model_behaviour_schema_is_strict() -> None:
    with pytest.raises(ValueError):
        ModelBehaviour.model_validate({"ttft_ms": 1, "surprise": True})
