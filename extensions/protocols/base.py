"""What a protocol adapter is: a translator between one wire format and the neutral forms.

An adapter parses a request body into the pipeline's neutral request (raising
``BadRequest`` for anything it does not understand), renders the neutral answer (an
OpenAI chat completion) and the neutral stream (OpenAI chunks) in its wire format,
and renders a ``GatewayError`` the way its clients expect. It never orchestrates:
no lookups, no decisions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson

from extensions.pipeline.context import NeutralRequest
from extensions.pipeline.context import Protocol as WireProtocol
from extensions.pipeline.errors import BadRequest, GatewayError

# Fields no client may send: they would choose deployments, keys, endpoints or answers
# that the gateway's configuration decides (LiteLLM's router honours them otherwise).
ROUTING_CONTROLS = frozenset(
    {
        "fallbacks",
        "context_window_fallback_dict",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "api_type",
        "organization",
        "user_config",
        "mock_response",
        "mock_tool_calls",
        "mock_timeout",
        "model_list",
        "custom_llm_provider",
        "num_retries",
        "max_retries",
        "timeout",
        "stream_timeout",
        "request_timeout",
        "deployment_id",
        "model_info",
        "proxy_server_request",
        "secret_fields",
        "extra_headers",
        "headers",
        "input_cost_per_token",
        "output_cost_per_token",
        "region_name",
        "azure_ad_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "tags",
        "guardrails",
        "caching",
        "no-log",
        "drop_params",
    }
)


class StreamRenderer(Protocol):
    """Turns a neutral stream into wire-format bytes, one chunk at a time."""

    def begin(self) -> list[bytes]: ...

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]: ...

    def end(self) -> list[bytes]: ...


class Adapter(Protocol):
    protocol: WireProtocol

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> NeutralRequest: ...

    def render(self, answer: Mapping[str, Any], request: NeutralRequest) -> dict[str, Any]: ...

    def renderer(self, request: NeutralRequest) -> StreamRenderer: ...

    def error(self, error: GatewayError) -> dict[str, Any]: ...

    def stream_error(self, error: GatewayError) -> bytes: ...


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event (``event:`` line only when named)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


def openai_error(error: GatewayError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI answers errors."""
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def refuse_fields(body: Mapping[str, Any], allowed: Iterable[str], where: str = "") -> None:
    """400 for routing controls and for any field the protocol does not define."""
    known = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
    for name in body:
        if name in known:
            continue
        shown = f"{where}{name}"
        if name in ROUTING_CONTROLS or name.startswith("litellm"):
            raise BadRequest(
                f"'{shown}' is not allowed: routing, keys and fallbacks are set by "
                "the gateway's configuration, not by clients.",
                param=shown,
            )
        raise BadRequest(f"Unrecognized request argument supplied: {shown}", param=shown)


def require_mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadRequest(f"'{where}' must be an object.", param=where)
    return value


def optional_mapping(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    return require_mapping(value, name)
