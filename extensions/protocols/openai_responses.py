"""OpenAI Responses (``POST /v1/responses``) to and from the neutral form.

Request: ``input`` as a string or a list of items (messages with ``input_text`` /
``output_text`` / ``input_image`` parts, ``function_call`` and ``function_call_output``
items), ``instructions`` (a system message), function ``tools`` and ``tool_choice``,
``text.format`` (JSON object or schema → ``response_format``), ``max_output_tokens``,
``reasoning.effort``, sampling parameters and ``user``. The gateway keeps no
conversation state: ``previous_response_id`` and ``conversation`` are refused (send
the conversation in ``input``); ``store`` is accepted and ignored (nothing is stored).

Answer: a ``response`` object whose ``output`` holds a message item with
``output_text`` and ``function_call`` items; streams are the ``response.*`` event
sequence with sequence numbers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from extensions.pipeline.context import ChatRequest, NeutralRequest, Protocol
from extensions.pipeline.errors import BadRequest, GatewayError
from extensions.protocols.base import openai_error, optional_mapping, refuse_fields, sse
from extensions.protocols.chunks import answer_text, finish_reason_of, first_message
from extensions.protocols.openai_chat import client_cache, wants_json
from extensions.protocols.validation import check_chat_request

FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "user",
        "metadata",
        "store",
        "parallel_tool_calls",
        "reasoning",
        "service_tier",
        "top_logprobs",
        "truncation",
        "include",
        "stream_options",
        "prompt_cache_key",
        "safety_identifier",
        "cache",
        "previous_response_id",
        "conversation",
        "background",
    }
)
STATEFUL = ("previous_response_id", "conversation")


def _part(part: object, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if not isinstance(part, Mapping) or not isinstance(kind, str):
        raise BadRequest(f"'{where}' must be a content part with a 'type'.", param=where)
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise BadRequest(f"'{where}.text' must be a string.", param=f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise BadRequest(
                f"'{where}.image_url' must be a URL (file_id is not supported).",
                param=f"{where}.image_url",
            )
        return {
            "type": "image_url",
            "image_url": {"url": url, "detail": part.get("detail") or "auto"},
        }
    raise BadRequest(f"'{where}': content parts of type '{kind}' are not supported.", param=where)


def _content(content: object, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return [_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
    raise BadRequest(f"'{where}' must be a string or a list of content parts.", param=where)


def _items(items: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, Mapping):
            raise BadRequest(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise BadRequest(
                    f"'{where}.role' must be user, assistant, system or developer.",
                    param=f"{where}.role",
                )
            messages.append(
                {"role": role, "content": _content(item.get("content"), f"{where}.content")}
            )
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise BadRequest(f"'{where}' needs 'call_id' and 'name'.", param=where)
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": str(item.get("arguments") or "{}")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise BadRequest(f"'{where}.call_id' must be a string.", param=f"{where}.call_id")
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": output if isinstance(output, str) else str(output),
                }
            )
        else:
            raise BadRequest(
                f"'{where}': input items of type '{kind}' are not supported.", param=where
            )
    return messages


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise BadRequest(
                f"'tools[{i}]': only function tools are supported by this gateway.",
                param=f"tools[{i}]",
            )
        if not isinstance(tool.get("name"), str):
            raise BadRequest(f"'tools[{i}].name' must be a string.", param=f"tools[{i}].name")
        function = {
            k: tool[k]
            for k in ("name", "description", "parameters", "strict")
            if tool.get(k) is not None
        }
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object) -> object:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise BadRequest(
        "'tool_choice' must be auto, none, required or a function.", param="tool_choice"
    )


def _format(text: Mapping[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or fmt.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        raise BadRequest(
            "'text.format.type' must be text, json_object or json_schema.", param="text.format"
        )
    if fmt["type"] != "json_schema":
        return {"type": fmt["type"]}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": schema}


def parse_responses(body: Mapping[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    refuse_fields(body, FIELDS)
    for name in STATEFUL:
        if body.get(name) is not None:
            raise BadRequest(
                f"'{name}' is not supported: this gateway stores no responses; send "
                "the whole conversation in 'input'.",
                param=name,
            )
    if body.get("background") is True:
        raise BadRequest("'background' responses are not supported.", param="background")
    raw = body.get("input")
    if isinstance(raw, str):
        messages = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        messages = _items(raw)
    else:
        raise BadRequest("'input' must be a string or a non-empty list of items.", param="input")
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("'instructions' must be a string.", param="instructions")
        messages.insert(0, {"role": "system", "content": instructions})
    params: dict[str, Any] = {}
    for name in (
        "temperature",
        "top_p",
        "user",
        "parallel_tool_calls",
        "service_tier",
        "top_logprobs",
        "prompt_cache_key",
        "safety_identifier",
    ):
        if body.get(name) is not None:
            params[name] = body[name]
    if body.get("max_output_tokens") is not None:
        params["max_tokens"] = body["max_output_tokens"]
    if body.get("tools") is not None:
        params["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        params["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = _format(optional_mapping(body, "text"))
    if fmt is not None and fmt["type"] != "text":
        params["response_format"] = fmt
    effort = optional_mapping(body, "reasoning").get("effort")
    if effort is not None:
        params["reasoning_effort"] = effort
    if not isinstance(body.get("model"), str):
        raise BadRequest("'model' is required and must be a string.", param="model")
    problem = check_chat_request(
        {"model": body["model"], "messages": messages, "stream": body.get("stream"), **params}
    )
    if problem is not None:
        param = {"max_tokens": "max_output_tokens"}.get(problem.param, problem.param)
        raise BadRequest(problem.message.replace("max_tokens", "max_output_tokens"), param=param)
    return ChatRequest(
        model=body["model"],
        messages=messages,
        params=params,
        stream=body.get("stream") is True,
        client_cache=client_cache(body, headers),
        structured=wants_json(params),
        include_usage=True,
    )


def usage_of(usage: object) -> dict[str, Any]:
    u = usage if isinstance(usage, Mapping) else {}
    details = u.get("prompt_tokens_details")
    cached = int((details or {}).get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _response_id(answer: Mapping[str, Any]) -> str:
    return f"resp_{str(answer.get('id') or uuid.uuid4().hex).removeprefix('chatcmpl-')}"


def _text_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call_item(call: Mapping[str, Any], status: str = "completed") -> dict[str, Any]:
    function = call.get("function") or {}
    call_id = str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}")
    return {
        "type": "function_call",
        "id": f"fc_{call_id.removeprefix('call_')}",
        "call_id": call_id,
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
        "status": status,
    }


def response_object(
    answer: Mapping[str, Any], request: NeutralRequest, output: list[Any], status: str
) -> dict[str, Any]:
    params = request.params
    length = finish_reason_of(answer) == "length"
    fmt = params.get("response_format")
    return {
        "id": _response_id(answer),
        "object": "response",
        "created_at": int(answer.get("created") or time.time()),
        "status": "incomplete" if status == "completed" and length else status,
        "incomplete_details": {"reason": "max_output_tokens"} if length else None,
        "error": None,
        "model": answer.get("model"),
        "output": output,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": params.get("parallel_tool_calls", True),
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "tool_choice": params.get("tool_choice", "auto"),
        "tools": [],
        "max_output_tokens": params.get("max_tokens"),
        "previous_response_id": None,
        "reasoning": {"effort": params.get("reasoning_effort"), "summary": None},
        "store": False,
        "truncation": "disabled",
        "text": {"format": _wire_format(fmt)},
        "usage": usage_of(answer.get("usage")) if status != "in_progress" else None,
    }


def _wire_format(fmt: object) -> dict[str, Any]:
    if not isinstance(fmt, Mapping):
        return {"type": "text"}
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", **(fmt.get("json_schema") or {})}
    return {"type": str(fmt.get("type"))}


class ResponsesStream:
    """The neutral stream as ``response.*`` events."""

    def __init__(self, request: NeutralRequest) -> None:
        self.request = request
        self.seq = 0
        self.first: Mapping[str, Any] | None = None
        self.text: list[str] = []
        self.text_open = False
        self.item_id = f"msg_{uuid.uuid4().hex[:24]}"
        self.calls: dict[int, dict[str, Any]] = {}  # neutral index -> output item
        self.output: list[dict[str, Any]] = []
        self.finish: str | None = None
        self.usage: Any = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(event, kind)

    def begin(self) -> list[bytes]:
        return []

    def _response(self, status: str, output: list[Any]) -> dict[str, Any]:
        base = {**(self.first or {}), "usage": self.usage}
        if self.finish:
            base["choices"] = [{"index": 0, "finish_reason": self.finish, "message": {}}]
        return response_object(base, self.request, output, status)

    def _start(self, chunk: Mapping[str, Any]) -> list[bytes]:
        self.first = dict(chunk)
        response = self._response("in_progress", [])
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _open_text(self) -> list[bytes]:
        self.text_open = True
        index = len(self.output)
        self.output.append(_text_item(self.item_id, "", "in_progress"))
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self._event(
                "response.output_item.added",
                output_index=index,
                item={**self.output[index], "content": []},
            ),
            self._event(
                "response.content_part.added",
                item_id=self.item_id,
                output_index=index,
                content_index=0,
                part=part,
            ),
        ]

    def _close_text(self) -> list[bytes]:
        if not self.text_open:
            return []
        self.text_open = False
        index = next(i for i, item in enumerate(self.output) if item["id"] == self.item_id)
        text = "".join(self.text)
        item = _text_item(self.item_id, text)
        self.output[index] = item
        return [
            self._event(
                "response.output_text.done",
                item_id=self.item_id,
                output_index=index,
                content_index=0,
                text=text,
            ),
            self._event(
                "response.content_part.done",
                item_id=self.item_id,
                output_index=index,
                content_index=0,
                part=item["content"][0],
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = [] if self.first is not None else self._start(chunk)
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if int(choice.get("index") or 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if not self.text_open and not self.text:
                    out += self._open_text()
                self.text.append(text)
                index = len(self.output) - 1
                out.append(
                    self._event(
                        "response.output_text.delta",
                        item_id=self.item_id,
                        output_index=index,
                        content_index=0,
                        delta=text,
                    )
                )
            for call in delta.get("tool_calls") or []:
                out += self._call_delta(call)
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
        return out

    def _call_delta(self, call: Mapping[str, Any]) -> list[bytes]:
        out = self._close_text()
        index = int(call.get("index") or 0)
        function = call.get("function") or {}
        if index not in self.calls:
            item = _call_item(
                {"id": call.get("id"), "function": {"name": function.get("name")}}, "in_progress"
            )
            item["arguments"] = ""
            self.calls[index] = item
            self.output.append(item)
            out.append(
                self._event(
                    "response.output_item.added", output_index=len(self.output) - 1, item=dict(item)
                )
            )
        item = self.calls[index]
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    delta=function["arguments"],
                )
            )
        return out

    def end(self) -> list[bytes]:
        out = [] if self.first is not None else self._start({})
        out += self._close_text()
        for item in self.calls.values():
            item["status"] = "completed"
            index = self.output.index(item)
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            out.append(self._event("response.output_item.done", output_index=index, item=item))
        response = self._response("completed", self.output)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return [*out, self._event(kind, response=response)]


class ResponsesAdapter:
    protocol = Protocol.RESPONSES

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> NeutralRequest:
        return parse_responses(body, headers)

    def render(self, answer: Mapping[str, Any], request: NeutralRequest) -> dict[str, Any]:
        message = first_message(answer)
        output: list[dict[str, Any]] = []
        if answer_text(answer):
            output.append(_text_item(f"msg_{uuid.uuid4().hex[:24]}", answer_text(answer)))
        output += [_call_item(c) for c in message.get("tool_calls") or []]
        return response_object(answer, request, output, "completed")

    def renderer(self, request: NeutralRequest) -> ResponsesStream:
        return ResponsesStream(request)

    def error(self, error: GatewayError) -> dict[str, Any]:
        return openai_error(error)

    def stream_error(self, error: GatewayError) -> bytes:
        """The ``error`` event (with an ``error`` object too, which the SDKs raise on)."""
        event = {
            "type": "error",
            "code": error.code or error.type,
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
            **openai_error(error),
        }
        return sse(event, "error")
