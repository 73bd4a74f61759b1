"""Gemini (Google AI Studio) wire format.

``POST {anything}/models/{model}:generateContent`` and ``...:streamGenerateContent?alt=sse``
(LiteLLM builds ``{api_base}/models/{model}:{method}``). Accepts both the camelCase and the
snake_case spelling of request fields (LiteLLM sends ``system_instruction``,
``function_declarations``, ``max_output_tokens``). The key comes from the ``key`` query
parameter or the ``x-goog-api-key`` header. Errors use ``{"error": {"code", "message",
"status"}}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .faults import FaultHeaderError
from .runtime import (
    Event,
    Plan,
    SimState,
    admit,
    answer_json,
    json_response,
    parse_json_object,
    retry_after_headers,
    sse_data,
    sse_response,
    wire_allowed,
)
from .settings import WireFormat
from .text import (
    MESSAGE_OVERHEAD_TOKENS,
    arguments_for_schema,
    estimate_tokens,
    generate_answer,
    split_chunks,
)

WIRE = WireFormat.GEMINI
GENERATE = "generateContent"
STREAM_GENERATE = "streamGenerateContent"

_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_error(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    retry_after_s: float | None = None,
) -> Response:
    """An error response in Google's shape (with ``RetryInfo`` for 429)."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if retry_after_s is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{retry_after_s:g}s",
            }
        ]
    return json_response({"error": error}, status, headers)


def _get(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = data.get(camel)
    return data.get(snake) if value is None else value


def part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    text = part.get("text")
    if isinstance(text, str):
        return text
    call = _get(part, "functionCall", "function_call")
    if isinstance(call, dict):
        return f"[call {call.get('name')} {json.dumps(call.get('args', {}), sort_keys=True)}]"
    result = _get(part, "functionResponse", "function_response")
    if isinstance(result, dict):
        return f"[result {result.get('name')} {json.dumps(result.get('response'), sort_keys=True)}]"
    return "[part]"


def prompt_of(body: Mapping[str, Any]) -> tuple[str, int]:
    """(prompt text used for hashing, prompt token estimate)."""
    lines: list[str] = []
    tokens = 0
    system = _get(body, "systemInstruction", "system_instruction")
    if isinstance(system, dict) and isinstance(system.get("parts"), list):
        text = "\n".join(part_text(p) for p in system["parts"])
        lines.append(f"system: {text}")
        tokens += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(text)
    for content in body.get("contents") or ():
        if not isinstance(content, dict):
            continue
        parts = content.get("parts")
        text = "\n".join(part_text(p) for p in parts) if isinstance(parts, list) else ""
        lines.append(f"{content.get('role', 'user')}: {text}")
        tokens += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(text)
    declarations = function_declarations(body)
    if declarations:
        tokens += estimate_tokens(json.dumps(declarations, separators=(",", ":")))
    return "\n".join(lines), tokens


def function_declarations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            declared = _get(tool, "functionDeclarations", "function_declarations")
            if isinstance(declared, list):
                found.extend(d for d in declared if isinstance(d, dict) and "name" in d)
    return found


def chosen_function(body: Mapping[str, Any]) -> tuple[str, Any] | None:
    """(name, parameters) of the function to call, or ``None`` to answer with text.

    Mode ``NONE`` -> text; ``ANY`` -> the first allowed (or first) function; ``AUTO``/absent
    -> the first function unless the last turn carries a ``functionResponse``.
    """
    declarations = function_declarations(body)
    if not declarations:
        return None
    config = _get(body, "toolConfig", "tool_config")
    calling = (
        _get(config, "functionCallingConfig", "function_calling_config")
        if isinstance(config, dict)
        else None
    )
    mode = str(calling.get("mode", "AUTO")).upper() if isinstance(calling, dict) else "AUTO"
    if mode == "NONE":
        return None
    if mode == "ANY":
        allowed = (
            _get(calling, "allowedFunctionNames", "allowed_function_names")
            if isinstance(calling, dict)
            else None
        )
        if isinstance(allowed, list) and allowed:
            for declaration in declarations:
                if declaration["name"] in allowed:
                    return str(declaration["name"]), _parameters(declaration)
    else:
        contents = body.get("contents")
        last = contents[-1] if isinstance(contents, list) and contents else None
        parts = last.get("parts") if isinstance(last, dict) else None
        if isinstance(parts, list) and any(
            isinstance(p, dict) and _get(p, "functionResponse", "function_response") is not None
            for p in parts
        ):
            return None
    return str(declarations[0]["name"]), _parameters(declarations[0])


def _parameters(declaration: Mapping[str, Any]) -> Any:
    params = declaration.get("parameters")
    if params is None:
        params = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
    return params


def max_output_tokens(body: Mapping[str, Any]) -> tuple[int | None, str | None]:
    config = _get(body, "generationConfig", "generation_config")
    if not isinstance(config, dict):
        return None, None
    value = _get(config, "maxOutputTokens", "max_output_tokens")
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return (
            None,
            f"generation_config.max_output_tokens must be a positive integer, got {value!r}",
        )
    return value, None


def _validate(body: Mapping[str, Any]) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            return f"* GenerateContentRequest.contents[{index}].parts: must be a list"
    return None


# ---------------------------------------------------------------------------------- routes


def build_router(state: SimState) -> APIRouter:
    router = APIRouter()

    async def generate(request: Request, model_action: str) -> Response:
        model, _, action = model_action.rpartition(":")
        if not model or action not in (GENERATE, STREAM_GENERATE):
            return gemini_error(
                404, f"Method {action or model_action!r} is not supported by the simulator."
            )
        stream = action == STREAM_GENERATE
        body = parse_json_object(await request.body())
        endpoint = "gemini.stream_generate_content" if stream else "gemini.generate_content"
        state.record(endpoint, model, request, body, stream)
        key = request.query_params.get("key") or request.headers.get("x-goog-api-key")
        if not state.api_key_ok(key):
            return gemini_error(401, "API key not valid. Please pass a valid API key.")
        if body is None:
            return gemini_error(400, "Invalid JSON payload received.")
        limit: int | None = None
        problem = _validate(body)
        if problem is None:
            limit, problem = max_output_tokens(body)
        if problem is not None:
            return gemini_error(400, problem)
        if not wire_allowed(state.behaviour(model), WIRE):
            return gemini_error(404, f"models/{model} is not found (not a Gemini model).")
        try:
            plan = state.plan(model, request.headers)
        except FaultHeaderError as exc:
            return gemini_error(400, str(exc))
        status = await admit(plan, request)
        if status is not None:
            assert plan.fault is not None
            retry = plan.fault.retry_after_s if status == 429 else None
            return gemini_error(
                status,
                f"Simulated {plan.fault.kind.value} for model {model}",
                retry_after_headers(plan.fault, with_ms=False),
                retry,
            )
        return await _answer(plan, request, body, limit, stream)

    router.add_api_route("/models/{model_action}", generate, methods=["POST"])
    router.add_api_route("/{prefix:path}/models/{model_action}", generate, methods=["POST"])
    return router


async def _answer(
    plan: Plan, request: Request, body: dict[str, Any], limit: int | None, stream: bool
) -> Response:
    model = plan.model
    prompt, prompt_tokens = prompt_of(body)
    function = chosen_function(body)
    response_id = uuid.uuid4().hex[:22]
    parts: list[dict[str, Any]]
    if function is not None:
        name, schema = function
        args = arguments_for_schema(schema)
        parts = [{"functionCall": {"name": name, "args": args}}]
        output_tokens = estimate_tokens(name) + estimate_tokens(
            json.dumps(args, separators=(",", ":"))
        )
        finish = "STOP"
    else:
        words = plan.behaviour.answer_words
        answer = generate_answer(model, prompt, words.min, words.max, limit)
        parts = [{"text": answer.text}]
        output_tokens = answer.tokens
        finish = "MAX_TOKENS" if answer.truncated else "STOP"
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }

    def response(chunk_parts: list[dict[str, Any]], finish_reason: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": chunk_parts, "role": "model"}, "index": 0}
        data: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": model,
            "responseId": response_id,
        }
        if finish_reason is not None:
            candidate["finishReason"] = finish_reason
            data["usageMetadata"] = usage
        return data

    if not stream:
        return await answer_json(plan, request, response(parts, finish), output_tokens)
    events: list[Event] = []
    if "text" in parts[0]:
        pieces = split_chunks(parts[0]["text"]) or [""]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            events.append(
                Event(
                    sse_data(response([{"text": piece}], finish if last else None)),
                    estimate_tokens(piece),
                )
            )
    else:
        events.append(Event(sse_data(response(parts, finish)), output_tokens))
    return sse_response(plan, events)
