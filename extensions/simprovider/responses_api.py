"""OpenAI Responses API: ``POST /v1/responses`` (and ``/responses``), plain and streaming.

Accepts ``input`` as a string or a list of items (messages with ``input_text`` /
``output_text`` / ``input_image`` / ``input_file`` content, ``function_call`` and
``function_call_output`` items), ``instructions``, ``max_output_tokens``, ``text.format``
(``json_object`` / ``json_schema``), function ``tools`` and ``tool_choice``. Answers, tool
choice, structured output, automatic prompt caching, latency and faults are those of the
chat completions endpoint (``openai_api``); usage is in Responses form (``input_tokens``,
``input_tokens_details.cached_tokens``, ``output_tokens``, ...).

Streaming (``stream: true``) sends the documented named SSE events, each with a
``sequence_number``: ``response.created``, ``response.in_progress``,
``response.output_item.added``, then ``response.content_part.added``,
``response.output_text.delta`` ..., ``response.output_text.done``,
``response.content_part.done`` (text) or ``response.function_call_arguments.delta`` ...,
``response.function_call_arguments.done`` (tool call), ``response.output_item.done`` and
``response.completed`` (``response.incomplete`` when cut by ``max_output_tokens``).
Nothing is stored: ``previous_response_id`` and ``conversation`` get a 400.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .auto_cache import Prompt, build_prompt
from .faults import FaultHeaderError
from .openai_api import (
    api_key_of,
    choose_function,
    fault_error,
    openai_error,
    positive_int,
)
from .runtime import (
    UNKNOWN_MODEL,
    Event,
    Plan,
    SimState,
    admit,
    answer_json,
    parse_json_object,
    sse_named,
    sse_response,
    wire_allowed,
)
from .schema_values import TEXT, OutputFormat, OutputKind, arguments_json, render_answer
from .settings import WireFormat
from .text import estimate_tokens, generate_answer, short_id, split_chunks, split_fixed

WIRE = WireFormat.OPENAI
ENDPOINT = "openai.responses"
_UNSUPPORTED = ("previous_response_id", "conversation", "prompt")


class InputError(ValueError):
    """The request's ``input`` / ``instructions`` cannot be read."""


# ------------------------------------------------------------------------------ request


def _parts_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InputError(f"{where}.content must be a string or an array of content parts")
    pieces: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise InputError(f"{where}.content[{index}] must be an object")
        kind = part.get("type")
        text = part.get("text", part.get("refusal"))
        if kind in ("input_text", "output_text", "text", "refusal") and isinstance(text, str):
            pieces.append(text)
        else:
            pieces.append(f"[{kind or 'part'}]")
    return "\n".join(pieces)


def _item_turn(item: Any, index: int) -> tuple[str, str]:
    where = f"input[{index}]"
    if not isinstance(item, dict):
        raise InputError(f"{where} must be an object")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise InputError(f"{where}.role must be user, assistant, system or developer")
        return str(role), _parts_text(item.get("content"), where)
    if kind == "function_call":
        return "assistant", f"[call {item.get('name')} {item.get('arguments')}]"
    if kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _parts_text(output, where)
        return "tool", f"[result {item.get('call_id')}] {text}"
    return "assistant", f"[{kind}]"


def input_turns(body: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bool]:
    """(role, text) turns of ``instructions`` + ``input`` and whether the last input item
    is a function call's output. Raises ``InputError``."""
    turns: list[tuple[str, str]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        turns.append(("developer", instructions))
    elif instructions is not None and not isinstance(instructions, str):
        raise InputError("'instructions' must be a string")
    raw = body.get("input")
    if isinstance(raw, str) and raw:
        turns.append(("user", raw))
        return turns, False
    if not isinstance(raw, list) or not raw:
        raise InputError("'input' must be a non-empty string or array of input items")
    turns.extend(_item_turn(item, index) for index, item in enumerate(raw))
    last = raw[-1]
    return turns, isinstance(last, dict) and last.get("type") == "function_call_output"


def function_tools(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(name, parameters) of the request's function tools (built-in tools are skipped)."""
    tools = body.get("tools")
    return [
        (str(t["name"]), t.get("parameters"))
        for t in (tools if isinstance(tools, list) else ())
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]


def chosen_tool(body: Mapping[str, Any], after_result: bool) -> tuple[str, Any] | None:
    choice = body.get("tool_choice", "auto")
    wanted: str | None = None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        wanted = name if isinstance(name, str) else None
    return choose_function(function_tools(body), choice, wanted, after_result)


def output_format(body: Mapping[str, Any]) -> OutputFormat:
    """``text.format``: ``json_object`` or ``json_schema`` (schema directly inside)."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return TEXT
    if fmt.get("type") == "json_object":
        return OutputFormat(OutputKind.JSON_OBJECT)
    if fmt.get("type") == "json_schema":
        return OutputFormat(OutputKind.JSON_SCHEMA, fmt.get("schema"))
    return TEXT


# ----------------------------------------------------------------------------- response


@dataclass(frozen=True, slots=True)
class Output:
    """The generated output item (finished) and what streaming needs to rebuild it."""

    item: dict[str, Any]
    tokens: int
    truncated: bool


def _usage(prompt_tokens: int, cached: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + output_tokens,
    }


def _generate(
    plan: Plan, body: Mapping[str, Any], prompt: Prompt, after_result: bool, limit: int | None
) -> Output:
    model = plan.model
    tool = chosen_tool(body, after_result)
    if tool is not None:
        name, schema = tool
        arguments = arguments_json(schema)
        item: dict[str, Any] = {
            "id": "fc_" + uuid.uuid4().hex[:24],
            "type": "function_call",
            "status": "completed",
            "arguments": arguments,
            "call_id": "call_" + short_id("openai-call", model, prompt.text, name),
            "name": name,
        }
        return Output(item, estimate_tokens(name) + estimate_tokens(arguments), False)
    words = plan.behaviour.answer_words
    answer = generate_answer(model, prompt.text, words.min, words.max, limit)
    content = render_answer(output_format(body), answer.text)
    tokens = estimate_tokens(content) if content != answer.text else answer.tokens
    message: dict[str, Any] = {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "status": "incomplete" if answer.truncated else "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": content, "annotations": [], "logprobs": []}],
    }
    return Output(message, tokens, answer.truncated)


def _text_format_echo(body: Mapping[str, Any]) -> dict[str, Any]:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return {"format": fmt if isinstance(fmt, dict) else {"type": "text"}, "verbosity": "medium"}


def _response(
    response_id: str,
    created: int,
    model: str,
    body: Mapping[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    tools = body.get("tools")
    metadata = body.get("metadata")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": _text_format_echo(body),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools if isinstance(tools, list) else [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


class _Sequencer:
    """Numbers the stream's events (``sequence_number`` from 0)."""

    def __init__(self) -> None:
        self.next = 0

    def event(self, kind: str, tokens: int = 0, **fields: Any) -> Event:
        data = {"type": kind, "sequence_number": self.next, **fields}
        self.next += 1
        return Event(sse_named(kind, data), tokens)


def stream_events(initial: dict[str, Any], final: dict[str, Any], output: Output) -> list[Event]:
    """The SSE events of a streamed response whose only output item is ``output.item``."""
    seq = _Sequencer()
    item = output.item
    item_id = item["id"]
    events = [
        seq.event("response.created", response=initial),
        seq.event("response.in_progress", response=initial),
    ]
    where: dict[str, Any] = {"item_id": item_id, "output_index": 0}
    if item["type"] == "function_call":
        events.append(
            seq.event(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "arguments": ""},
            )
        )
        for piece in split_fixed(item["arguments"], 16):
            events.append(
                seq.event(
                    "response.function_call_arguments.delta",
                    estimate_tokens(piece),
                    **where,
                    delta=piece,
                )
            )
        events.append(
            seq.event(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        )
    else:
        part = item["content"][0]
        events.append(
            seq.event(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "content": []},
            )
        )
        where["content_index"] = 0
        events.append(seq.event("response.content_part.added", **where, part={**part, "text": ""}))
        for piece in split_chunks(part["text"]):
            events.append(
                seq.event(
                    "response.output_text.delta",
                    estimate_tokens(piece),
                    **where,
                    delta=piece,
                    logprobs=[],
                )
            )
        events.append(
            seq.event("response.output_text.done", **where, text=part["text"], logprobs=[])
        )
        events.append(seq.event("response.content_part.done", **where, part=part))
    events.append(seq.event("response.output_item.done", output_index=0, item=item))
    events.append(seq.event(f"response.{final['status']}", response=final))
    return events


# ------------------------------------------------------------------------------- routes


def build_router(state: SimState) -> APIRouter:
    router = APIRouter()

    async def create_response(request: Request) -> Response:
        body = parse_json_object(await request.body())
        model = body.get("model") if body is not None else None
        model = model if isinstance(model, str) and model else UNKNOWN_MODEL
        stream = bool(body.get("stream")) if body is not None else False
        state.record(ENDPOINT, model, request, body, stream)
        if not state.api_key_ok(api_key_of(request)):
            return openai_error(401, "Incorrect or missing API key provided.")
        if body is None:
            return openai_error(400, "We could not parse the JSON body of your request.")
        if model == UNKNOWN_MODEL:
            return openai_error(400, "you must provide a model parameter")
        for name in _UNSUPPORTED:
            if body.get(name) is not None:
                return openai_error(400, f"'{name}' is not supported by the simulator")
        try:
            turns, after_result = input_turns(body)
        except InputError as exc:
            return openai_error(400, str(exc))
        limit, problem = positive_int(body, "max_output_tokens")
        if problem is not None:
            return openai_error(400, problem)
        if not wire_allowed(state.behaviour(model), WIRE):
            return openai_error(404, f"The model `{model}` does not exist (not an OpenAI model).")
        try:
            plan = state.plan(model, request.headers)
        except FaultHeaderError as exc:
            return openai_error(400, str(exc))
        status = await admit(plan, request)
        if status is not None:
            return fault_error(plan, status)

        prompt = build_prompt(turns, body.get("tools"))
        cached = state.automatic_cache(plan, prompt.pieces)
        output = _generate(plan, body, prompt, after_result, limit)
        response_id = "resp_" + uuid.uuid4().hex
        created = int(time.time())
        usage = _usage(prompt.tokens, cached, output.tokens)
        final_status = "incomplete" if output.truncated else "completed"
        final = _response(response_id, created, model, body, final_status, [output.item], usage)
        headers = {"x-request-id": "req_" + response_id[5:29], "openai-processing-ms": "1"}
        if not stream:
            return await answer_json(plan, request, final, output.tokens, headers)
        initial = _response(response_id, created, model, body, "in_progress", [], None)
        return sse_response(plan, stream_events(initial, final, output), headers)

    for prefix in ("/v1", ""):
        router.add_api_route(f"{prefix}/responses", create_response, methods=["POST"])
    return router
