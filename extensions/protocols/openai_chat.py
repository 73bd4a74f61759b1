"""OpenAI Chat Completions (``POST /v1/chat/completions``): the neutral form itself.

Parsing checks the body and splits it into messages, forwarded parameters and the
gateway's own controls; rendering passes the completion through (its ``model`` is the
model group that answered). Dropped, never forwarded: ``metadata`` (LiteLLM reads its
own fields from it) and ``store`` (asking the provider to keep the conversation is the
operator's decision, not a client's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extensions.cache.policy import ClientControl
from extensions.pipeline.context import ChatRequest, NeutralRequest, Protocol
from extensions.pipeline.errors import BadRequest, GatewayError
from extensions.protocols.base import openai_error, refuse_fields, sse
from extensions.protocols.validation import check_chat_request

# Parameters of OpenAI's Chat Completions API forwarded to the model as they are
# (plus top_k and thinking, which LiteLLM maps for the providers that have them).
FORWARDED = frozenset(
    {
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "user",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
        "verbosity",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "top_k",
        "thinking",
    }
)
OWN = frozenset({"model", "messages", "stream", "stream_options", "metadata", "store", "cache"})
FIELDS = FORWARDED | OWN
JSON_FORMATS = frozenset({"json_object", "json_schema"})


def client_cache(body: Mapping[str, Any], headers: Mapping[str, str]) -> ClientControl:
    """The gateway's cache controls: body ``cache: {...}`` or a ``Cache-Control`` header."""
    controls = body.get("cache")
    if controls is not None and not isinstance(controls, Mapping):
        raise BadRequest(
            "'cache' must be an object (no-cache, no-store, ttl, s-maxage).", param="cache"
        )
    return ClientControl.parse(controls, headers.get("cache-control"))


def wants_json(params: Mapping[str, Any]) -> bool:
    fmt = params.get("response_format")
    return isinstance(fmt, Mapping) and fmt.get("type") in JSON_FORMATS


def parse_chat(body: Mapping[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    """The neutral request of a Chat Completions body (400 for anything wrong)."""
    refuse_fields(body, FIELDS)
    problem = check_chat_request(body)
    if problem is not None:
        raise BadRequest(problem.message, param=problem.param)
    params = {k: v for k, v in body.items() if k in FORWARDED and v is not None}
    return ChatRequest(
        model=str(body["model"]),
        messages=[dict(m) for m in body["messages"]],
        params=params,
        stream=body.get("stream") is True,
        client_cache=client_cache(body, headers),
        structured=wants_json(params),
        include_usage=include_usage(body.get("stream_options")),
    )


def include_usage(body_options: object) -> bool:
    return isinstance(body_options, Mapping) and body_options.get("include_usage") is True


class ChatStream:
    """``data: <chunk>`` events and ``data: [DONE]``; the usage chunk only if asked for."""

    def __init__(self, usage: bool) -> None:
        self.usage = usage

    def begin(self) -> list[bytes]:
        return []

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        usage = chunk.get("usage")
        if usage is None:
            return [sse(chunk)]
        out = []
        choices = chunk.get("choices") or []
        if any(c.get("finish_reason") or any((c.get("delta") or {}).values()) for c in choices):
            out.append(sse({k: v for k, v in chunk.items() if k != "usage"}))
        if self.usage:  # OpenAI's shape: usage in a last chunk of its own, with no choices
            out.append(sse({**chunk, "choices": [], "usage": usage}))
        return out

    def end(self) -> list[bytes]:
        return [b"data: [DONE]\n\n"]


class ChatAdapter:
    protocol = Protocol.CHAT

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> NeutralRequest:
        return parse_chat(body, headers)

    def render(self, answer: Mapping[str, Any], request: NeutralRequest) -> dict[str, Any]:
        return dict(answer)

    def renderer(self, request: NeutralRequest) -> ChatStream:
        return ChatStream(isinstance(request, ChatRequest) and request.include_usage)

    def error(self, error: GatewayError) -> dict[str, Any]:
        return openai_error(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return sse(openai_error(error))
