"""Gemini (Google AI Studio) wire format.

``POST {anything}/models/{model}:generateContent`` and ``...:streamGenerateContent?alt=sse``
(LiteLLM builds ``{api_base}/models/{model}:{method}``). Accepts both the camelCase and the
snake_case spelling of request fields (LiteLLM sends ``system_instruction``,
``function_declarations``, ``max_output_tokens``). The key comes from the ``key`` query
parameter or the ``x-goog-api-key`` header. Errors use ``{"error": {"code", "message",
"status"}}``.

Structured output: ``generationConfig.responseMimeType: application/json`` answers a JSON
object, valid for ``responseSchema`` / ``responseJsonSchema`` when one is given.

Caching: a request naming ``cachedContent`` (see ``gemini_cache_api``) is answered over the
cache's contents plus its own; ``usageMetadata.promptTokenCount`` includes the cache and
``cachedContentTokenCount`` / ``cacheTokensDetails`` report it. Without one, implicit caching
works like OpenAI's automatic prefix caching (``cachedContentTokenCount`` only).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .auto_cache import Prompt, build_prompt
from .cached_contents import CachedContent
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
from .schema_values import TEXT, OutputFormat, OutputKind, arguments_for_schema, render_answer
from .settings import WireFormat
from .text import (
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


def get_field(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = data.get(camel)
    return data.get(snake) if value is None else value


def api_key_of(request: Request) -> str | None:
    """The ``key`` query parameter or the ``x-goog-api-key`` header."""
    return request.query_params.get("key") or request.headers.get("x-goog-api-key")


def part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    text = part.get("text")
    if isinstance(text, str):
        return text
    call = get_field(part, "functionCall", "function_call")
    if isinstance(call, dict):
        return f"[call {call.get('name')} {json.dumps(call.get('args', {}), sort_keys=True)}]"
    result = get_field(part, "functionResponse", "function_response")
    if isinstance(result, dict):
        return f"[result {result.get('name')} {json.dumps(result.get('response'), sort_keys=True)}]"
    return "[part]"


def prompt_of(body: Mapping[str, Any]) -> Prompt:
    """The prompt of a generateContent (or cachedContents) body: function declarations,
    system instruction, then the contents."""
    turns: list[tuple[str, str]] = []
    system = get_field(body, "systemInstruction", "system_instruction")
    if isinstance(system, dict) and isinstance(system.get("parts"), list):
        turns.append(("system", "\n".join(part_text(p) for p in system["parts"])))
    for content in body.get("contents") or ():
        if not isinstance(content, dict):
            continue
        parts = content.get("parts")
        text = "\n".join(part_text(p) for p in parts) if isinstance(parts, list) else ""
        turns.append((str(content.get("role", "user")), text))
    return build_prompt(turns, function_declarations(body) or None)


def output_format(body: Mapping[str, Any]) -> OutputFormat:
    """``generationConfig`` structured output: ``responseMimeType`` ``application/json`` with
    ``responseSchema`` (OpenAPI subset) or ``responseJsonSchema`` (JSON Schema), the newer
    ``responseFormat.text``, or ``text/x.enum`` with an enum schema."""
    config = get_field(body, "generationConfig", "generation_config")
    if not isinstance(config, dict):
        return TEXT
    mime = get_field(config, "responseMimeType", "response_mime_type")
    schema = get_field(config, "responseJsonSchema", "response_json_schema")
    if schema is None:
        schema = get_field(config, "responseSchema", "response_schema")
    response_format = get_field(config, "responseFormat", "response_format")
    text_format = response_format.get("text") if isinstance(response_format, dict) else None
    if isinstance(text_format, dict):
        mime = "application/json" if text_format.get("mimeType") == "APPLICATION_JSON" else mime
        schema = text_format.get("schema", schema)
    if mime == "application/json":
        if isinstance(schema, dict):
            return OutputFormat(OutputKind.JSON_SCHEMA, schema)
        return OutputFormat(OutputKind.JSON_OBJECT)
    if mime == "text/x.enum" and isinstance(schema, dict):
        return OutputFormat(OutputKind.ENUM, schema)
    return TEXT


def function_declarations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            declared = get_field(tool, "functionDeclarations", "function_declarations")
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
    config = get_field(body, "toolConfig", "tool_config")
    calling = (
        get_field(config, "functionCallingConfig", "function_calling_config")
        if isinstance(config, dict)
        else None
    )
    mode = str(calling.get("mode", "AUTO")).upper() if isinstance(calling, dict) else "AUTO"
    if mode == "NONE":
        return None
    if mode == "ANY":
        allowed = (
            get_field(calling, "allowedFunctionNames", "allowed_function_names")
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
            isinstance(p, dict)
            and get_field(p, "functionResponse", "function_response") is not None
            for p in parts
        ):
            return None
    return str(declarations[0]["name"]), _parameters(declarations[0])


def _parameters(declaration: Mapping[str, Any]) -> Any:
    params = declaration.get("parameters")
    if params is None:
        params = get_field(declaration, "parametersJsonSchema", "parameters_json_schema")
    return params


def max_output_tokens(body: Mapping[str, Any]) -> tuple[int | None, str | None]:
    config = get_field(body, "generationConfig", "generation_config")
    if not isinstance(config, dict):
        return None, None
    value = get_field(config, "maxOutputTokens", "max_output_tokens")
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


CACHE_NOT_FOUND = "CachedContent not found (or permission denied)"
CACHE_CONFLICT = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, "
    "tools or tool_config.\n\nProposed fix: move those values to CachedContent from "
    "GenerateContent request."
)


def resolve_cached_content(
    state: SimState, body: Mapping[str, Any], model: str
) -> tuple[CachedContent | None, Response | None]:
    """The live cache a request names in ``cachedContent`` (or none), or Google's error."""
    name = get_field(body, "cachedContent", "cached_content")
    if name is None:
        return None, None
    cache = state.cached_contents.get(name, state.clock.wall()) if isinstance(name, str) else None
    if cache is None:
        return None, gemini_error(403, CACHE_NOT_FOUND)
    if cache.model != model:
        return None, gemini_error(
            400,
            f"Model used by GenerateContent request (models/{model}) and CachedContent "
            f"(models/{cache.model}) has to be the same.",
        )
    if any(
        get_field(body, camel, snake) is not None
        for camel, snake in (
            ("systemInstruction", "system_instruction"),
            ("tools", "tools"),
            ("toolConfig", "tool_config"),
        )
    ):
        return None, gemini_error(400, CACHE_CONFLICT)
    return cache, None


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
        if not state.api_key_ok(api_key_of(request)):
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
        cache, refusal = resolve_cached_content(state, body, model)
        if refusal is not None:
            return refusal
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
        return await _answer(state, plan, request, body, limit, stream, cache)

    router.add_api_route("/models/{model_action}", generate, methods=["POST"])
    router.add_api_route("/{prefix:path}/models/{model_action}", generate, methods=["POST"])
    return router


def usage_metadata(
    prompt_tokens: int, output_tokens: int, explicit: int, implicit: int
) -> dict[str, Any]:
    """Gemini usage: ``promptTokenCount`` includes cached tokens; ``cachedContentTokenCount``
    says how many came from a cache (with ``cacheTokensDetails`` for an explicit cache)."""
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    cached = explicit or implicit
    if cached:
        usage["cachedContentTokenCount"] = cached
    if explicit:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": explicit}]
    return usage


async def _answer(
    state: SimState,
    plan: Plan,
    request: Request,
    body: dict[str, Any],
    limit: int | None,
    stream: bool,
    cache: CachedContent | None,
) -> Response:
    model = plan.model
    prompt = prompt_of(body)
    if cache is not None:
        text = cache.prompt + "\n" + prompt.text
        prompt_tokens, explicit, implicit = cache.tokens + prompt.tokens, cache.tokens, 0
        function = chosen_function({**body, **cache.tool_fields})
    else:
        text, prompt_tokens, explicit = prompt.text, prompt.tokens, 0
        implicit = state.automatic_cache(plan, prompt.pieces)
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
        answer = generate_answer(model, text, words.min, words.max, limit)
        content = render_answer(output_format(body), answer.text)
        parts = [{"text": content}]
        output_tokens = estimate_tokens(content) if content != answer.text else answer.tokens
        finish = "MAX_TOKENS" if answer.truncated else "STOP"
    usage = usage_metadata(prompt_tokens, output_tokens, explicit, implicit)

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
