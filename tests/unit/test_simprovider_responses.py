"""The simulator's OpenAI Responses API through ASGITransport, checked against the openai
SDK's own types (strict pydantic validation of every object and stream event)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from extensions.simprovider.app import create_app
from extensions.simprovider.runtime import is_simulated_drop
from extensions.simprovider.text import MESSAGE_OVERHEAD_TOKENS, estimate_tokens
from tests.unit.test_simprovider import (
    EXPECTED_ARGS,
    OPENAI_AUTH,
    WEATHER_TOOL_SCHEMA,
    fast_settings,
    sse_events,
)

pytestmark = pytest.mark.unit

EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "weather", "parameters": WEATHER_TOOL_SCHEMA}
TEXT_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TEXT_END = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(fast_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        yield c


async def post(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post("/v1/responses", json=body, headers={**OPENAI_AUTH, **headers})


def turn_tokens(*texts: str) -> int:
    return sum(MESSAGE_OVERHEAD_TOKENS + estimate_tokens(t) for t in texts)


def stream_of(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    for name, data in events:
        assert data["type"] == name
        EVENT.validate_python(data)  # raises if the SDK's type does not accept it
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    return events


async def test_plain_response_shape_and_usage(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "input": "hello there", "instructions": "be brief"}
    response = await post(client, body)
    assert response.status_code == 200
    data = response.json()
    parsed = Response.model_validate(data)
    assert parsed.status == "completed" and parsed.output_text.startswith("Simulated reply")
    assert data["instructions"] == "be brief" and data["object"] == "response"
    text = data["output"][0]["content"][0]["text"]
    usage = data["usage"]
    assert usage["input_tokens"] == turn_tokens("be brief", "hello there")
    assert usage["output_tokens"] == estimate_tokens(text)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    again = await client.post("/responses", json=body, headers=OPENAI_AUTH)
    assert again.json()["output"][0]["content"][0]["text"] == text


async def test_stream_event_sequence_matches_plain(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"model": "gpt", "input": "stream me"}
    plain = (await post(client, body)).json()
    events = stream_of(await post(client, {**body, "stream": True}))
    names = [name for name, _ in events]
    assert names[:4] == TEXT_SEQUENCE and names[-4:] == TEXT_END
    assert set(names[4:-4]) == {"response.output_text.delta"}
    deltas = "".join(data["delta"] for name, data in events if name.endswith(".delta"))
    final_text = plain["output"][0]["content"][0]["text"]
    assert deltas == final_text == events[-4][1]["text"]
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[0][1]["response"]["usage"] is None
    completed = events[-1][1]["response"]
    assert completed["usage"] == plain["usage"]
    assert completed["id"] == events[0][1]["response"]["id"]
    assert completed["output"][0]["id"] == events[2][1]["item"]["id"]


async def test_input_items_tools_and_tool_results(client: httpx.AsyncClient) -> None:
    items: list[dict[str, Any]] = [
        {"role": "system", "content": "be exact"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "weather?"},
                {"type": "input_image", "image_url": "https://example.com/a.png"},
            ],
        },
    ]
    called = (await post(client, {"model": "gpt", "input": items, "tools": [WEATHER]})).json()
    call = called["output"][0]
    assert call["type"] == "function_call" and call["name"] == "weather"
    assert json.loads(call["arguments"]) == EXPECTED_ARGS
    assert call["call_id"].startswith("call_")
    Response.model_validate(called)

    follow_up = [
        *items,
        {k: call[k] for k in ("type", "call_id", "name", "arguments")},
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp": 21}'},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It is 21."}]},
        {"type": "function_call_output", "call_id": call["call_id"], "output": "again"},
    ]
    answer = (await post(client, {"model": "gpt", "input": follow_up, "tools": [WEATHER]})).json()
    assert answer["output"][0]["type"] == "message"

    none = {"model": "gpt", "input": "x", "tools": [WEATHER], "tool_choice": "none"}
    assert (await post(client, none)).json()["output"][0]["type"] == "message"
    other = {"type": "function", "name": "other", "parameters": {}}
    named = {
        "model": "gpt",
        "input": "x",
        "tools": [other, WEATHER],
        "tool_choice": {"type": "function", "name": "weather"},
    }
    assert (await post(client, named)).json()["output"][0]["name"] == "weather"
    builtin_only = {"model": "gpt", "input": "x", "tools": [{"type": "web_search"}]}
    assert (await post(client, builtin_only)).json()["output"][0]["type"] == "message"


async def test_streamed_function_call(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "input": "weather?", "tools": [WEATHER], "stream": True}
    events = stream_of(await post(client, body))
    names = [name for name, _ in events]
    assert names[:3] == TEXT_SEQUENCE[:3]
    assert names[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert added["type"] == "function_call" and added["arguments"] == ""
    pieces = "".join(d["delta"] for n, d in events if n == "response.function_call_arguments.delta")
    assert json.loads(pieces) == EXPECTED_ARGS == json.loads(events[-3][1]["arguments"])
    assert events[-1][1]["response"]["output"][0]["call_id"] == added["call_id"]


async def test_text_format_json(client: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "name": "w", "schema": schema, "strict": True}
    data = (await post(client, {"model": "gpt", "input": "x", "text": {"format": fmt}})).json()
    answer = json.loads(data["output"][0]["content"][0]["text"])
    jsonschema.validate(answer, schema)
    assert answer == {"city": "sim", "days": 3}
    assert data["text"]["format"]["type"] == "json_schema"
    mode = {"model": "gpt", "input": "x", "text": {"format": {"type": "json_object"}}}
    loose = (await post(client, mode)).json()["output"][0]["content"][0]["text"]
    assert json.loads(loose)["answer"].startswith("Simulated reply")


async def test_max_output_tokens_gives_incomplete(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"model": "gpt", "input": "hello", "max_output_tokens": 5}
    data = (await post(client, body)).json()
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["output"][0]["status"] == "incomplete"
    assert data["usage"]["output_tokens"] == 5
    Response.model_validate(data)
    events = stream_of(await post(client, {**body, "stream": True}))
    assert events[-1][0] == "response.incomplete"


async def test_errors_faults_stats_and_log(client: httpx.AsyncClient) -> None:
    ok = {"model": "gpt", "input": "x"}
    assert (await client.post("/v1/responses", json=ok)).status_code == 401
    bad_json = await client.post("/v1/responses", content=b"{", headers=OPENAI_AUTH)
    assert bad_json.status_code == 400
    for bad in (
        {"model": "gpt"},
        {"model": "gpt", "input": []},
        {"model": "gpt", "input": [{"role": "robot", "content": "x"}]},
        {"model": "gpt", "input": [{"role": "user", "content": 5}]},
        {"model": "gpt", "input": "x", "max_output_tokens": 0},
        {"model": "gpt", "input": "x", "previous_response_id": "resp_1"},
        {"input": "x"},
    ):
        response = await post(client, bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert (await post(client, {**ok, "model": "claude"})).status_code == 404
    limited = await post(client, ok, **{"x-sim-fault": "http_429", "x-sim-retry-after-s": "2"})
    assert limited.status_code == 429 and limited.headers["retry-after-ms"] == "2000"
    with pytest.raises(Exception) as info:
        await post(client, {**ok, "stream": True}, **{"x-sim-fault": "drop"})
    assert is_simulated_drop(info.value)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["by_endpoint"]["openai.responses"] == 12
    assert stats["by_fault"] == {"http_429": 1, "drop": 1}
    logged = (await client.get("/_sim/requests", params={"model": "gpt", "limit": 1})).json()
    assert logged["requests"][0]["path"] == "/v1/responses"
    assert "authorization" not in logged["requests"][0]["headers"]
