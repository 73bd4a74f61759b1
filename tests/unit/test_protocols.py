"""The protocol adapters as pure translators: requests in, answers and streams out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from extensions.cache.keys import chat_key
from extensions.cache.policy import ClientControl, Plan
from extensions.cache.requests import Pending, RequestCache, Ticket
from extensions.cache.service import ResponseCache
from extensions.cache.settings import CacheSettings, Rules
from extensions.cache.store import MemoryStore
from extensions.pipeline.context import ChatRequest
from extensions.pipeline.errors import BadRequest
from extensions.protocols.anthropic_messages import MessagesAdapter, parse_messages
from extensions.protocols.chunks import Accumulator, completion, completion_chunks, text_chunks
from extensions.protocols.embeddings import parse_embeddings
from extensions.protocols.openai_chat import ChatStream, parse_chat
from extensions.protocols.openai_responses import ResponsesAdapter, parse_responses

pytestmark = pytest.mark.unit


def events(raw: list[bytes]) -> list[tuple[str | None, Any]]:
    out = []
    for item in raw:
        for block in item.decode().split("\n\n"):
            if not block:
                continue
            name = None
            data = None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
            out.append((name, data if data == "[DONE]" else json.loads(data or "null")))
    return out


def tool_answer() -> dict[str, Any]:
    body = completion("m", "Let me check.", "tool_calls")
    body["choices"][0]["message"]["tool_calls"] = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"order": 7}'},
        }
    ]
    body["usage"] = {
        "prompt_tokens": 30,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    return body


# -- Anthropic Messages ------------------------------------------------------------------------


def test_messages_request_becomes_chat() -> None:
    request = parse_messages(
        {
            "model": "m",
            "max_tokens": 50,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"],
            "top_k": 5,
            "metadata": {"user_id": "u1"},
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": True},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"order": 7}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "shipped"},
                        {"type": "text", "text": "ok?"},
                    ],
                },
            ],
        },
        {},
    )
    system, user, assistant, tool, follow_up = request.messages
    assert system["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert user["content"][1]["image_url"]["url"] == "data:image/png;base64,AAA"
    assert assistant["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"order":7}'}
    assert tool == {"role": "tool", "tool_call_id": "t1", "content": "shipped"}
    assert follow_up["content"] == [{"type": "text", "text": "ok?"}]
    assert request.params["stop"] == ["END"] and request.params["user"] == "u1"
    assert request.params["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert request.params["parallel_tool_calls"] is False
    assert request.params["tools"][0]["function"]["parameters"] == {"type": "object"}


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},  # no max_tokens
        {
            "model": "m",
            "max_tokens": 5,
            "temperature": 1.5,
            "messages": [{"role": "user", "content": "x"}],
        },
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
        },
        {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
        {"model": "m", "max_tokens": 5, "messages": [], "fallbacks": ["x"]},
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "metadata": None,
            "unknown": 1,
        },
    ],
)
def test_messages_bad_requests_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        parse_messages(body, {})


def test_messages_answer_and_stream_carry_tool_use() -> None:
    request = ChatRequest("m", [{"role": "user", "content": "x"}], {})
    adapter = MessagesAdapter()
    body = adapter.render(tool_answer(), request)
    assert [b["type"] for b in body["content"]] == ["text", "tool_use"]
    assert body["content"][1]["input"] == {"order": 7}
    assert body["stop_reason"] == "tool_use"
    assert body["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
    }
    renderer = adapter.renderer(request)
    raw = renderer.begin()
    for chunk in completion_chunks(tool_answer()):
        raw += renderer.chunk(chunk)
    raw += renderer.end()
    names = [name for name, _ in events(raw)]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == 2 == names.count("content_block_stop")
    delta = next(d for n, d in events(raw) if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 5


# -- OpenAI Responses --------------------------------------------------------------------------


def test_responses_request_becomes_chat() -> None:
    request = parse_responses(
        {
            "model": "m",
            "instructions": "be brief",
            "max_output_tokens": 40,
            "store": True,
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
            "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "where is 7?"}]},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "shipped"},
            ],
        },
        {},
    )
    system, user, call, result = request.messages
    assert system == {"role": "system", "content": "be brief"}
    assert user["content"] == [{"type": "text", "text": "where is 7?"}]
    assert call["tool_calls"][0]["id"] == "c1"
    assert result == {"role": "tool", "tool_call_id": "c1", "content": "shipped"}
    assert request.params["max_tokens"] == 40 and request.structured
    assert request.params["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert request.params["tools"][0]["function"]["name"] == "lookup"


@pytest.mark.parametrize(
    "extra",
    [
        {"previous_response_id": "resp_1"},
        {"conversation": "c"},
        {"background": True},
        {"tools": [{"type": "web_search"}]},
        {"api_base": "x"},
    ],
)
def test_responses_stateful_and_unknown_features_are_400(extra: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        parse_responses({"model": "m", "input": "hi", **extra}, {})


def test_responses_answer_and_stream() -> None:
    request = ChatRequest("m", [{"role": "user", "content": "x"}], {})
    adapter = ResponsesAdapter()
    body = adapter.render(tool_answer(), request)
    assert [o["type"] for o in body["output"]] == ["message", "function_call"]
    assert body["usage"]["input_tokens_details"]["cached_tokens"] == 20
    renderer = adapter.renderer(request)
    raw = renderer.begin()
    for chunk in completion_chunks(tool_answer()):
        raw += renderer.chunk(chunk)
    raw += renderer.end()
    parsed = events(raw)
    assert parsed[0][0] == "response.created" and parsed[-1][0] == "response.completed"
    assert [d["sequence_number"] for _, d in parsed] == list(range(len(parsed)))
    final = parsed[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Let me check."
    assert final["output"][1]["arguments"] == '{"order": 7}'


# -- OpenAI Chat and the neutral stream ----------------------------------------------------------


def test_chat_stream_moves_usage_into_a_chunk_of_its_own() -> None:
    chunk = {
        "id": "c",
        "choices": [{"index": 0, "delta": {}, "finish_reason": None}],
        "usage": {"total_tokens": 3},
    }
    assert [d for _, d in events(ChatStream(usage=True).chunk(chunk))] == [
        {"id": "c", "choices": [], "usage": {"total_tokens": 3}}
    ]
    assert ChatStream(usage=False).chunk(chunk) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("stop", 5), ("tools", "x"), ("seed", "x"), ("user", 5), ("metadata", "x"), ("n", 0)],
)
def test_chat_wrong_types_are_400(field: str, value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_chat({"model": "m", "messages": [{"role": "user", "content": "x"}], field: value}, {})
    assert caught.value.param == field


def test_accumulator_rebuilds_the_completion() -> None:
    total = Accumulator()
    for chunk in completion_chunks(tool_answer()):
        total.add(chunk)
    rebuilt = total.completion()
    original = tool_answer()["choices"][0]
    assert rebuilt["choices"][0]["message"]["content"] == original["message"]["content"]
    assert rebuilt["choices"][0]["message"]["tool_calls"] == original["message"]["tool_calls"]
    assert rebuilt["choices"][0]["finish_reason"] == "tool_calls"


def test_text_chunks_keep_every_character() -> None:
    text = "one two  three\nfour five six seven eight nine"
    pieces = text_chunks(text)
    assert "".join(pieces) == text and len(pieces) >= 2


def test_embeddings_checks_its_parameters() -> None:
    request = parse_embeddings({"model": "e", "input": ["a"], "dimensions": 8}, {})
    assert request.params == {"dimensions": 8}
    for bad in ({"dimensions": 0}, {"encoding_format": "hex"}, {"metadata": "x"}, {"x": 1}):
        with pytest.raises(BadRequest):
            parse_embeddings({"model": "e", "input": ["a"], **bad}, {})


# -- what the cache keeps ------------------------------------------------------------------------


def cache(max_tokens: int = 4096) -> RequestCache:
    settings = CacheSettings(enabled=True, rules=Rules(max_tokens_cached=max_tokens))
    return RequestCache(ResponseCache(settings, MemoryStore(10), None), None, {})


def pending(store: bool = True) -> Pending:
    body = {"messages": [{"role": "user", "content": "q"}]}
    ticket = Ticket(
        "gpt-sim", chat_key("gpt-sim", "global", body), Plan(True, store), ClientControl()
    )
    return Pending(ticket, None, None, 60)


def answer(
    finish: str = "stop", content: str | None = "hello", tokens: int = 5, choices: int = 1
) -> dict[str, Any]:
    choice = {
        "index": 0,
        "finish_reason": finish,
        "message": {"role": "assistant", "content": content},
    }
    return {"choices": [choice] * choices, "usage": {"completion_tokens": tokens}}


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        (answer(), True),
        (answer(finish="length"), True),
        (answer(finish="content_filter"), False),
        (answer(content=""), False),
        (answer(choices=2), False),
        (answer(finish="None"), False),
    ],
)
async def test_only_complete_answers_are_stored(response: dict[str, Any], kept: bool) -> None:
    c = cache()
    assert await c.store(pending(), response, "gpt-sim", 0.0) is kept
    assert (await c.cache.exact(pending().ticket.key.exact) is not None) is kept


async def test_no_store_plan_and_size_rule() -> None:
    assert await cache().store(pending(store=False), answer(), "gpt-sim", 0.0) is False
    assert await cache(max_tokens=3).store(pending(), answer(tokens=4), "gpt-sim", 0.0) is False


def test_client_ttl_may_shorten_never_lengthen() -> None:
    c = cache()
    assert c.ttl_s(ClientControl(ttl_s=10**12), None) == c.settings.ttl_s
    assert c.ttl_s(ClientControl(ttl_s=5), None) == 5
