"""OpenAI wire format: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

The same routes are also served without the ``/v1`` prefix, so ``api_base`` may be given
either way. Errors use OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape.
Prompts of ``cache_min_tokens`` or more are cached automatically (``auto_cache``) and
usage reports the cached part as ``prompt_tokens_details.cached_tokens``. The Responses
API (``responses_api``) shares the prompt, tool and output-format logic defined here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .auto_cache import Prompt, build_prompt
from .faults import FaultHeaderError
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
    sse_data,
    sse_response,
    wire_allowed,
)
from .schema_values import TEXT, OutputFormat, OutputKind, arguments_json, render_answer
from .settings import WireFormat
from .text import (
    embedding_vector,
    encode_base64_floats,
    estimate_tokens,
    generate_answer,
    short_id,
    split_chunks,
    split_fixed,
)

WIRE = WireFormat.OPENAI
SYSTEM_FINGERPRINT = "fp_simprovider"

_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


def openai_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error response in OpenAI's shape."""
    kind, code = _ERRORS.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json_response(body, status, headers)


def fault_error(plan: Plan, status: int) -> Response:
    assert plan.fault is not None
    return openai_error(
        status,
        f"Simulated {plan.fault.kind.value} for model {plan.model}",
        retry_after_headers(plan.fault, with_ms=True),
    )


def api_key_of(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return request.headers.get("api-key")


# ------------------------------------------------------------------------------ prompt text


def content_text(content: Any) -> str:
    """Text of an OpenAI message ``content`` (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                pieces.append(text if isinstance(text, str) else f"[{part.get('type', 'part')}]")
            elif isinstance(part, str):
                pieces.append(part)
        return "\n".join(pieces)
    return ""


def message_text(message: Mapping[str, Any]) -> str:
    text = content_text(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                text += f"\n[call {function.get('name')} {function.get('arguments')}]"
    return text


def prompt_of(messages: list[Any], tools: Any) -> Prompt:
    """The prompt of a chat completions request."""
    turns = [
        (str(message.get("role")), message_text(message))
        for message in messages
        if isinstance(message, dict)
    ]
    return build_prompt(turns, tools)


def choose_function(
    functions: Sequence[tuple[str, Any]], choice: Any, wanted: str | None, after_result: bool
) -> tuple[str, Any] | None:
    """(name, parameters) of the function to call, or ``None`` to answer with text.

    ``choice`` "none" -> text; a named function (``wanted``) -> that one; "required" -> the
    first; "auto"/absent -> the first unless the last turn is a tool result.
    """
    if not functions or choice == "none":
        return None
    if wanted is not None:
        for name, parameters in functions:
            if name == wanted:
                return name, parameters
        return wanted, None
    if choice != "required" and after_result:
        return None
    return functions[0]


def chosen_tool(body: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The chat completions tool to call (see ``choose_function``)."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    functions = [
        (str(t["function"].get("name", "tool")), t["function"].get("parameters"))
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = body.get("tool_choice", "auto")
    wanted: str | None = None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        wanted = name if isinstance(name, str) else None
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    after_result = isinstance(last, dict) and last.get("role") in ("tool", "function")
    return choose_function(functions, choice, wanted, after_result)


def positive_int(body: Mapping[str, Any], *names: str) -> tuple[int | None, str | None]:
    """The first of ``names`` that is set, which must be a positive integer."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return None, f"'{name}' must be a positive integer, got {value!r}"
        return value, None
    return None, None


def chat_output_format(body: Mapping[str, Any]) -> OutputFormat:
    """``response_format`` of a chat completions request."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return TEXT
    if fmt.get("type") == "json_object":
        return OutputFormat(OutputKind.JSON_OBJECT)
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return OutputFormat(OutputKind.JSON_SCHEMA, schema)
    return TEXT


# ---------------------------------------------------------------------------------- routes


def build_router(state: SimState) -> APIRouter:
    router = APIRouter()

    async def chat_completions(request: Request) -> Response:
        body = parse_json_object(await request.body())
        model = body.get("model") if body is not None else None
        model = model if isinstance(model, str) and model else UNKNOWN_MODEL
        stream = bool(body.get("stream")) if body is not None else False
        state.record("openai.chat_completions", model, request, body, stream)
        if not state.api_key_ok(api_key_of(request)):
            return openai_error(401, "Incorrect or missing API key provided.")
        if body is None:
            return openai_error(400, "We could not parse the JSON body of your request.")
        messages = body.get("messages")
        if model == UNKNOWN_MODEL:
            return openai_error(400, "you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "'messages' must be a non-empty array")
        max_tokens, problem = positive_int(body, "max_completion_tokens", "max_tokens")
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

        prompt = prompt_of(messages, body.get("tools"))
        prompt_tokens = prompt.tokens
        cached = state.automatic_cache(plan, prompt.pieces)
        tool = chosen_tool(body)
        created = int(time.time())
        response_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": 0,
            "total_tokens": prompt_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        message: dict[str, Any]
        if tool is not None:
            name, schema = tool
            arguments = arguments_json(schema)
            call_id = "call_" + short_id("openai-call", model, prompt.text, name)
            completion_tokens = estimate_tokens(name) + estimate_tokens(arguments)
            finish = "tool_calls"
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ],
            }
        else:
            words = plan.behaviour.answer_words
            answer = generate_answer(model, prompt.text, words.min, words.max, max_tokens)
            content = render_answer(chat_output_format(body), answer.text)
            completion_tokens = (
                estimate_tokens(content) if content != answer.text else answer.tokens
            )
            finish = "length" if answer.truncated else "stop"
            message = {"role": "assistant", "content": content, "refusal": None}
        usage["completion_tokens"] = completion_tokens
        usage["total_tokens"] = prompt_tokens + completion_tokens
        headers = {"x-request-id": response_id, "openai-processing-ms": "1"}

        if not stream:
            data = {
                "id": response_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            return await answer_json(plan, request, data, completion_tokens, headers)

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data: dict[str, Any] = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                data["usage"] = None
            return sse_data(data)

        events: list[Event] = []
        if "tool_calls" in message:
            call = message["tool_calls"][0]
            events.append(
                Event(
                    chunk(
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""},
                                }
                            ],
                        }
                    ),
                    estimate_tokens(call["function"]["name"]),
                )
            )
            for piece in split_fixed(call["function"]["arguments"], 16):
                events.append(
                    Event(
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        estimate_tokens(piece),
                    )
                )
        else:
            events.append(Event(chunk({"role": "assistant", "content": "", "refusal": None})))
            for piece in split_chunks(message["content"]):
                events.append(Event(chunk({"content": piece}), estimate_tokens(piece)))
        events.append(Event(chunk({}, finish)))
        if include_usage:
            events.append(Event(sse_data({**base, "choices": [], "usage": usage})))
        events.append(Event(b"data: [DONE]\n\n"))
        return sse_response(plan, events, headers)

    async def embeddings(request: Request) -> Response:
        body = parse_json_object(await request.body())
        model = body.get("model") if body is not None else None
        model = model if isinstance(model, str) and model else UNKNOWN_MODEL
        state.record("openai.embeddings", model, request, body, False)
        if not state.api_key_ok(api_key_of(request)):
            return openai_error(401, "Incorrect or missing API key provided.")
        if body is None:
            return openai_error(400, "We could not parse the JSON body of your request.")
        if model == UNKNOWN_MODEL:
            return openai_error(400, "you must provide a model parameter")
        texts = embedding_inputs(body.get("input"))
        if texts is None:
            return openai_error(
                400, "'input' must be a non-empty string, array of strings or array of token ids"
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return openai_error(
                400, f"'encoding_format' must be 'float' or 'base64', got {encoding!r}"
            )
        if not wire_allowed(state.behaviour(model), WIRE):
            return openai_error(404, f"The model `{model}` does not exist (not an OpenAI model).")
        try:
            plan = state.plan(model, request.headers)
        except FaultHeaderError as exc:
            return openai_error(400, str(exc))
        dim = body.get("dimensions", plan.behaviour.embedding_dim)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 8192:
            return openai_error(400, f"'dimensions' must be an integer from 1 to 8192, got {dim!r}")
        status = await admit(plan, request)
        if status is not None:
            return fault_error(plan, status)
        data = []
        for index, text in enumerate(texts):
            vector = embedding_vector(f"{model}\x00{text}", dim)
            embedding: list[float] | str = (
                encode_base64_floats(vector) if encoding == "base64" else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(estimate_tokens(t) for t in texts)
        result = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await answer_json(plan, request, result, 0)

    async def list_models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "simprovider"}
            for name in state.known_models()
        ]
        return json_response({"object": "list", "data": data})

    async def get_model(model: str) -> Response:
        return json_response(
            {"id": model, "object": "model", "created": 0, "owned_by": "simprovider"}
        )

    for prefix in ("/v1", ""):
        router.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"])
        router.add_api_route(f"{prefix}/embeddings", embeddings, methods=["POST"])
        router.add_api_route(f"{prefix}/models", list_models, methods=["GET"])
        router.add_api_route(f"{prefix}/models/{{model}}", get_model, methods=["GET"])
    return router


def embedding_inputs(raw: Any) -> list[str] | None:
    """Inputs as texts: a string, strings, token ids or lists of token ids (ids become
    ``"tokens:1,2,3"``). ``None`` if the input is missing, empty or of another shape."""
    if isinstance(raw, str):
        return [raw] if raw else None
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        return ["tokens:" + ",".join(str(x) for x in raw)]
    texts: list[str] = []
    for item in raw:
        if isinstance(item, str) and item:
            texts.append(item)
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
        ):
            texts.append("tokens:" + ",".join(str(x) for x in item))
        else:
            return None
    return texts
