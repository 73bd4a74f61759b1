"""Anthropic Messages wire format: ``POST /v1/messages`` (plain and SSE streaming).

Simulates prompt caching (see ``prompt_cache``): usage reports ``cache_creation_input_tokens``
/ ``cache_read_input_tokens`` for the prefix up to the last ``cache_control`` marker, and
``input_tokens`` for the rest. Errors use ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .faults import FaultHeaderError
from .prompt_cache import CacheOutcome, CacheResult, prefix_key
from .runtime import (
    UNKNOWN_MODEL,
    Event,
    Plan,
    SimState,
    admit,
    answer_json,
    json_response,
    parse_json_object,
    retry_after_headers,
    sse_named,
    sse_response,
    wire_allowed,
)
from .schema_values import arguments_for_schema
from .settings import WireFormat
from .text import (
    MESSAGE_OVERHEAD_TOKENS,
    estimate_tokens,
    generate_answer,
    short_id,
    split_chunks,
    split_fixed,
)

WIRE = WireFormat.ANTHROPIC
ONE_HOUR_S = 3600.0

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",  # "overloaded_error" would make LiteLLM raise InternalServerError
    529: "overloaded_error",
}


def anthropic_error(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """An error response in Anthropic's shape."""
    body = {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }
    return json_response(body, status, headers)


def api_key_of(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is not None:
        return key
    auth = request.headers.get("authorization")  # ANTHROPIC_AUTH_TOKEN style
    if auth is not None and auth.lower().startswith("bearer "):
        return auth[7:]
    return None


# ------------------------------------------------------------------------------ prompt model


@dataclass(frozen=True, slots=True)
class Segment:
    """One cacheable unit of the prompt (a tool, a system block or a content block)."""

    key: str  # text hashed for caching and answer generation
    tokens: int
    cache_control: Mapping[str, Any] | None


def _strip_cache_control(block: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in block.items() if k != "cache_control"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def block_text(block: Any) -> str:
    """The text a content block contributes to the token estimate."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    if kind == "tool_use":
        return f"{block.get('name', '')} {json.dumps(block.get('input', {}), sort_keys=True)}"
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return "\n".join(block_text(b) for b in content)
        return content if isinstance(content, str) else ""
    if kind in ("thinking", "redacted_thinking"):
        return str(block.get("thinking", ""))
    if kind in ("image", "document"):
        return f"[{kind}]"
    return _strip_cache_control(block)


def _marker(block: Mapping[str, Any]) -> Mapping[str, Any] | None:
    marker = block.get("cache_control")
    return marker if isinstance(marker, dict) else None


def segments_of(body: Mapping[str, Any]) -> tuple[list[Segment], int]:
    """Prompt segments in cache order (tools, system, messages) and the per-turn overhead."""
    segments: list[Segment] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict):
                text = _strip_cache_control(tool)
                segments.append(Segment("tool:" + text, estimate_tokens(text), _marker(tool)))
    system = body.get("system")
    if isinstance(system, str) and system:
        segments.append(Segment("system:" + system, estimate_tokens(system), None))
    elif isinstance(system, list):
        for block in system:
            text = block_text(block)
            marker = _marker(block) if isinstance(block, dict) else None
            segments.append(Segment("system:" + text, estimate_tokens(text), marker))
    overhead = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        overhead += MESSAGE_OVERHEAD_TOKENS
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):
            segments.append(Segment(f"{role}:{content}", estimate_tokens(content), None))
        elif isinstance(content, list):
            for block in content:
                text = block_text(block)
                marker = _marker(block) if isinstance(block, dict) else None
                segments.append(Segment(f"{role}:{text}", estimate_tokens(text), marker))
    return segments, overhead


def cache_prefix(segments: list[Segment]) -> tuple[list[Segment], float | None]:
    """Segments up to and including the last ``cache_control`` one, and its TTL (``None``:
    the model's default; 3600 for ``"ttl": "1h"``)."""
    last = -1
    for index, segment in enumerate(segments):
        if segment.cache_control is not None:
            last = index
    if last < 0:
        return [], None
    marker = segments[last].cache_control or {}
    ttl = ONE_HOUR_S if marker.get("ttl") == "1h" else None
    return segments[: last + 1], ttl


def usage_for(
    segments: list[Segment], overhead: int, cache: CacheResult, output_tokens: int, ttl_1h: bool
) -> dict[str, Any]:
    """Anthropic usage: ``input_tokens`` excludes the cache write/read tokens."""
    total = overhead + sum(s.tokens for s in segments)
    written = cache.tokens if cache.outcome is CacheOutcome.WRITE else 0
    read = cache.tokens if cache.outcome is CacheOutcome.READ else 0
    return {
        "input_tokens": total - written - read,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if ttl_1h else written,
            "ephemeral_1h_input_tokens": written if ttl_1h else 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def chosen_tool(body: Mapping[str, Any]) -> tuple[str, Any] | None:
    """(name, input_schema) of the tool to use, or ``None`` to answer with text.

    ``tool_choice`` ``none`` -> text; ``tool`` -> the named one; ``any`` -> the first;
    ``auto``/absent -> the first unless the last message carries a ``tool_result``.
    """
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    usable = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    # server tools (web_search etc.) have a "type" other than "custom"; skip them
    usable = [t for t in usable if t.get("type") in (None, "custom")]
    if not usable:
        return None
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    if kind == "none":
        return None
    if kind == "tool" and isinstance(choice, dict):
        for tool in usable:
            if tool["name"] == choice.get("name"):
                return str(tool["name"]), tool.get("input_schema")
    elif kind != "any":
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        content = last.get("content") if isinstance(last, dict) else None
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return None
    return str(usable[0]["name"]), usable[0].get("input_schema")


def _validate(body: Mapping[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return f"max_tokens: Field required and must be a positive integer, got {max_tokens!r}"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), (str, list)):
            return f"messages.{index}.content: Field required"
    return None


# ---------------------------------------------------------------------------------- routes


def build_router(state: SimState) -> APIRouter:
    router = APIRouter()

    async def messages(request: Request) -> Response:
        body = parse_json_object(await request.body())
        model = body.get("model") if body is not None else None
        model = model if isinstance(model, str) and model else UNKNOWN_MODEL
        stream = bool(body.get("stream")) if body is not None else False
        state.record("anthropic.messages", model, request, body, stream)
        if not state.api_key_ok(api_key_of(request)):
            return anthropic_error(401, "invalid x-api-key")
        if body is None:
            return anthropic_error(400, "The request body is not valid JSON.")
        problem = _validate(body)
        if problem is not None:
            return anthropic_error(400, problem)
        if not wire_allowed(state.behaviour(model), WIRE):
            return anthropic_error(404, f"model: {model} (not an Anthropic model)")
        try:
            plan = state.plan(model, request.headers)
        except FaultHeaderError as exc:
            return anthropic_error(400, str(exc))
        status = await admit(plan, request)
        if status is not None:
            assert plan.fault is not None
            return anthropic_error(
                status,
                f"Simulated {plan.fault.kind.value} for model {model}",
                retry_after_headers(plan.fault, with_ms=False),
            )
        return await _answer(state, plan, request, body, stream)

    router.add_api_route("/v1/messages", messages, methods=["POST"])
    return router


async def _answer(
    state: SimState, plan: Plan, request: Request, body: dict[str, Any], stream: bool
) -> Response:
    model = plan.model
    segments, overhead = segments_of(body)
    prefix, ttl = cache_prefix(segments)
    cache = state.prompt_cache.lookup(
        model,
        prefix_key([s.key for s in prefix]),
        sum(s.tokens for s in prefix),
        plan.behaviour.cache_min_tokens,
        ttl if ttl is not None else plan.behaviour.cache_ttl_s,
        state.clock.monotonic(),
    )
    prompt = "\n".join(s.key for s in segments)
    tool = chosen_tool(body)
    message_id = "msg_" + uuid.uuid4().hex[:24]
    content: list[dict[str, Any]]
    if tool is not None:
        name, schema = tool
        arguments = arguments_for_schema(schema)
        arguments_text = json.dumps(arguments, separators=(",", ":"))
        tool_id = "toolu_" + short_id("anthropic-tool", model, prompt, name)
        content = [{"type": "tool_use", "id": tool_id, "name": name, "input": arguments}]
        output_tokens = estimate_tokens(name) + estimate_tokens(arguments_text)
        stop_reason = "tool_use"
    else:
        words = plan.behaviour.answer_words
        answer = generate_answer(model, prompt, words.min, words.max, int(body["max_tokens"]))
        content = [{"type": "text", "text": answer.text}]
        output_tokens = answer.tokens
        stop_reason = "max_tokens" if answer.truncated else "end_turn"
        arguments_text = ""
    usage = usage_for(segments, overhead, cache, output_tokens, ttl == ONE_HOUR_S)
    headers = {"request-id": "req_" + message_id[4:]}
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if not stream:
        return await answer_json(plan, request, message, output_tokens, headers)

    start_usage = {**usage, "output_tokens": 1}
    events = [
        Event(
            sse_named(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        **message,
                        "content": [],
                        "stop_reason": None,
                        "usage": start_usage,
                    },
                },
            )
        )
    ]
    block = content[0]
    if block["type"] == "tool_use":
        start_block = {**block, "input": {}}
        pieces = ["", *split_fixed(arguments_text, 16)]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        texts = pieces
    else:
        start_block = {"type": "text", "text": ""}
        texts = split_chunks(block["text"])
        deltas = [{"type": "text_delta", "text": t} for t in texts]
    events.append(
        Event(
            sse_named(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": start_block},
            )
        )
    )
    events.append(Event(sse_named("ping", {"type": "ping"})))
    for delta, text in zip(deltas, texts, strict=True):
        events.append(
            Event(
                sse_named(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                ),
                estimate_tokens(text),
            )
        )
    events.append(
        Event(sse_named("content_block_stop", {"type": "content_block_stop", "index": 0}))
    )
    delta_usage = {k: v for k, v in usage.items() if k not in ("cache_creation", "service_tier")}
    events.append(
        Event(
            sse_named(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": delta_usage,
                },
            )
        )
    )
    events.append(Event(sse_named("message_stop", {"type": "message_stop"})))
    return sse_response(plan, events, headers)
