"""Anthropic Messages (``POST /v1/messages``) to and from the neutral form.

Request: ``system`` (a string or text blocks) becomes a system message; content blocks
``text`` (with ``cache_control``), ``image`` (base64 or URL), ``tool_use`` and
``tool_result`` become OpenAI content parts, ``tool_calls`` and ``tool`` messages;
``tools``/``tool_choice``, ``max_tokens``, ``stop_sequences``, ``temperature``,
``top_p``, ``top_k``, ``metadata.user_id`` and ``thinking`` map to their OpenAI-style
parameters (LiteLLM maps them back for Anthropic deployments). Other block types
(documents, server tools, earlier thinking blocks) are refused with a 400 naming them.

Answer: a ``message`` with text and ``tool_use`` blocks, ``stop_reason`` and usage
(input, output, cache read and cache creation tokens); streams follow Anthropic's event
sequence ``message_start`` … ``content_block_*`` … ``message_delta``, ``message_stop``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from extensions.pipeline.context import ChatRequest, NeutralRequest, Protocol
from extensions.pipeline.errors import BadRequest, GatewayError
from extensions.protocols.base import optional_mapping, refuse_fields, sse
from extensions.protocols.chunks import answer_text, finish_reason_of, first_message
from extensions.protocols.openai_chat import client_cache
from extensions.protocols.validation import check_chat_request

FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "service_tier",
        "cache",
    }
)
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def _text_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("text"), str):
        raise BadRequest(f"'{where}.text' must be a string.", param=f"{where}.text")
    part: dict[str, Any] = {"type": "text", "text": block["text"]}
    if isinstance(block.get("cache_control"), Mapping):
        part["cache_control"] = dict(block["cache_control"])
    return part


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    url = source.get("url") if isinstance(source, Mapping) else None
    if isinstance(source, Mapping) and source.get("type") == "url" and isinstance(url, str):
        return {"type": "image_url", "image_url": {"url": url}}
    raise BadRequest(
        f"'{where}.source' must be a base64 or url image source.", param=f"{where}.source"
    )


def _result_text(content: object, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return [
            _text_part(b, f"{where}.content[{i}]")
            for i, b in enumerate(content)
            if isinstance(b, Mapping) and b.get("type") == "text"
        ]
    raise BadRequest(
        f"'{where}.content' must be a string or a list of blocks.", param=f"{where}.content"
    )


def _message(i: int, message: object) -> list[dict[str, Any]]:
    """One Anthropic message as one or more OpenAI messages (tool results split out)."""
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise BadRequest(f"'{where}' must be an object with 'role' and 'content'.", param=where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise BadRequest(f"'{where}.role' must be 'user' or 'assistant'.", param=f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise BadRequest(
            f"'{where}.content' must be a string or a list of content blocks.",
            param=f"{where}.content",
        )
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if not isinstance(block, Mapping) or not isinstance(kind, str):
            raise BadRequest(f"'{at}' must be a content block with a 'type'.", param=at)
        if kind == "text":
            parts.append(_text_part(block, at))
        elif kind == "image" and role == "user":
            parts.append(_image_part(block, at))
        elif kind == "tool_use" and role == "assistant":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise BadRequest(f"'{at}' needs 'id' and 'name'.", param=at)
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
        elif kind == "tool_result" and role == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise BadRequest(f"'{at}.tool_use_id' must be a string.", param=f"{at}.tool_use_id")
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": block["tool_use_id"],
                    "content": _result_text(block.get("content"), at),
                }
            )
        else:
            raise BadRequest(
                f"'{at}': content blocks of type '{kind}' are not supported in "
                f"{role} messages by this gateway.",
                param=at,
            )
    out: list[dict[str, Any]] = list(results)
    if parts or calls:
        item: dict[str, Any] = {"role": role, "content": parts or None}
        if calls:
            item["tool_calls"] = calls
        out.append(item)
    if not out:
        raise BadRequest(f"'{where}.content' must not be empty.", param=f"{where}.content")
    return out


def _system(system: object) -> dict[str, Any] | None:
    if system is None:
        return None
    if isinstance(system, str):
        return {"role": "system", "content": system} if system else None
    if isinstance(system, list):
        parts = [
            _text_part(b, f"system[{i}]") for i, b in enumerate(system) if isinstance(b, Mapping)
        ]
        if len(parts) != len(system):
            raise BadRequest("'system' must be a string or a list of text blocks.", param="system")
        return {"role": "system", "content": parts} if parts else None
    raise BadRequest("'system' must be a string or a list of text blocks.", param="system")


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise BadRequest(f"'tools[{i}]' must be an object with a 'name'.", param=f"tools[{i}]")
        if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            raise BadRequest(
                f"'tools[{i}]': only client tools with an 'input_schema' are "
                "supported by this gateway.",
                param=f"tools[{i}]",
            )
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Mapping[str, Any], params: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        params["tool_choice"] = "auto"
    elif kind == "any":
        params["tool_choice"] = "required"
    elif kind == "none":
        params["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        params["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise BadRequest(
            "'tool_choice.type' must be auto, any, tool (with a name) or none.", param="tool_choice"
        )
    if choice.get("disable_parallel_tool_use") is True:
        params["parallel_tool_calls"] = False


def _int(body: Mapping[str, Any], name: str, low: int = 1) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BadRequest(f"'{name}' must be an integer ≥ {low}.", param=name)
    return value


def parse_messages(body: Mapping[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    refuse_fields(body, FIELDS)
    max_tokens = _int(body, "max_tokens")
    if max_tokens is None:
        raise BadRequest("'max_tokens' is required.", param="max_tokens")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty list of messages.", param="messages")
    messages = [m for i, item in enumerate(raw) for m in _message(i, item)]
    system = _system(body.get("system"))
    if system is not None:
        messages.insert(0, system)
    params: dict[str, Any] = {"max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise BadRequest(f"'{name}' must be a number between 0 and 1.", param=name)
            params[name] = value
    if (top_k := _int(body, "top_k")) is not None:
        params["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("'stop_sequences' must be a list of strings.", param="stop_sequences")
        params["stop"] = stops
    if body.get("tools") is not None:
        params["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        _tool_choice(optional_mapping(body, "tool_choice"), params)
    user = optional_mapping(body, "metadata").get("user_id")
    if user is not None:
        if not isinstance(user, str):
            raise BadRequest("'metadata.user_id' must be a string.", param="metadata.user_id")
        params["user"] = user
    if body.get("thinking") is not None:
        params["thinking"] = dict(optional_mapping(body, "thinking"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false.", param="stream")
    if not isinstance(body.get("model"), str):
        raise BadRequest("'model' is required and must be a string.", param="model")
    neutral = {"model": body["model"], "messages": messages, **params}
    problem = check_chat_request(neutral)
    if problem is not None:  # the translated request must be a valid chat request too
        raise BadRequest(problem.message, param=problem.param)
    return ChatRequest(
        model=body["model"],
        messages=messages,
        params=params,
        stream=stream is True,
        client_cache=client_cache(body, headers),
        include_usage=True,
    )


def _input_json(arguments: object) -> Any:
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def usage_of(usage: object) -> dict[str, int]:
    u = usage if isinstance(usage, Mapping) else {}
    details = u.get("prompt_tokens_details")
    cached = int((details or {}).get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
    cached = int(u.get("cache_read_input_tokens") or cached)
    written = int(u.get("cache_creation_input_tokens") or 0)
    prompt = int(u.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(0, prompt - cached - written),
        "output_tokens": int(u.get("completion_tokens") or 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def _message_id(answer: Mapping[str, Any]) -> str:
    return f"msg_{str(answer.get('id') or uuid.uuid4().hex).removeprefix('chatcmpl-')}"


class MessagesStream:
    """The neutral stream as Anthropic's SSE events."""

    def __init__(self) -> None:
        self.started = False
        self.block: int = -1  # index of the open content block
        self.kind: str | None = None  # its type: "text" or "tool_use"
        self.calls: dict[int, int] = {}  # neutral tool-call index -> block index
        self.stop_reason: str | None = None
        self.usage: dict[str, int] | None = None

    def begin(self) -> list[bytes]:
        return []

    def _start(self, chunk: Mapping[str, Any]) -> list[bytes]:
        self.started = True
        message: dict[str, Any] = {
            "id": _message_id(chunk),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "ping"}, "ping"),
        ]

    def _close(self) -> list[bytes]:
        if self.block < 0 or self.kind is None:
            return []
        self.kind = None
        return [sse({"type": "content_block_stop", "index": self.block}, "content_block_stop")]

    def _open(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.kind = block["type"]
        event = {"type": "content_block_start", "index": self.block, "content_block": block}
        return [*out, sse(event, "content_block_start")]

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = [] if self.started else self._start(chunk)
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if int(choice.get("index") or 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.kind != "text":
                    out += self._open({"type": "text", "text": ""})
                event = {
                    "type": "content_block_delta",
                    "index": self.block,
                    "delta": {"type": "text_delta", "text": text},
                }
                out.append(sse(event, "content_block_delta"))
            for call in delta.get("tool_calls") or []:
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _tool_delta(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = int(call.get("index") or 0)
        function = call.get("function") or {}
        if index not in self.calls:
            out += self._open(
                {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{index}",
                    "name": function.get("name") or "",
                    "input": {},
                }
            )
            self.calls[index] = self.block
        if function.get("arguments"):
            event = {
                "type": "content_block_delta",
                "index": self.calls[index],
                "delta": {"type": "input_json_delta", "partial_json": function["arguments"]},
            }
            out.append(sse(event, "content_block_delta"))
        return out

    def end(self) -> list[bytes]:
        out = [] if self.started else self._start({})
        out += self._close()
        usage = self.usage or usage_of(None)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
            "usage": usage,
        }
        return [*out, sse(delta, "message_delta"), sse({"type": "message_stop"}, "message_stop")]


class MessagesAdapter:
    protocol = Protocol.MESSAGES

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> NeutralRequest:
        return parse_messages(body, headers)

    def render(self, answer: Mapping[str, Any], request: NeutralRequest) -> dict[str, Any]:
        message = first_message(answer)
        content: list[dict[str, Any]] = []
        if answer_text(answer):
            content.append({"type": "text", "text": answer_text(answer)})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": _input_json(function.get("arguments")),
                }
            )
        return {
            "id": _message_id(answer),
            "type": "message",
            "role": "assistant",
            "model": answer.get("model"),
            "content": content,
            "stop_reason": STOP_REASONS.get(finish_reason_of(answer) or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": usage_of(answer.get("usage")),
        }

    def renderer(self, request: NeutralRequest) -> MessagesStream:
        return MessagesStream()

    def error(self, error: GatewayError) -> dict[str, Any]:
        kind = ERROR_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}

    def stream_error(self, error: GatewayError) -> bytes:
        return sse(self.error(error), "error")
