"""Pure: the neutral answer forms and the conversions between them.

The neutral answer is an OpenAI chat completion (a dict); a neutral stream is a
sequence of OpenAI ``chat.completion.chunk`` dicts. ``Accumulator`` folds a stream
back into a completion (for the cache and the usage); ``completion_chunks`` cuts a
completion the gateway already has (a cache hit, a router answer) into a stream.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

WORDS_PER_CHUNK = 4


def text_chunks(text: str, words_per_chunk: int = WORDS_PER_CHUNK) -> list[str]:
    """``text`` in pieces of a few words (whitespace kept), as a model would stream it."""
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]


def new_completion_id() -> str:
    return f"chatcmpl-gw-{uuid.uuid4().hex[:24]}"


def completion(model: str, text: str, finish_reason: str = "stop") -> dict[str, Any]:
    """An answer the gateway gives itself, as a chat completion with zero usage."""
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def first_message(body: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = body.get("choices") or []
    if not choices or not isinstance(choices[0], Mapping):
        return {}
    message = choices[0].get("message")
    return message if isinstance(message, Mapping) else {}


def finish_reason_of(body: Mapping[str, Any]) -> str | None:
    choices = body.get("choices") or []
    if choices and isinstance(choices[0], Mapping):
        reason = choices[0].get("finish_reason")
        return str(reason) if reason else None
    return None


def answer_text(body: Mapping[str, Any]) -> str:
    content = first_message(body).get("content")
    return content if isinstance(content, str) else ""


def completion_chunks(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A complete answer as stream chunks: role, text in pieces, tool calls, finish, usage."""
    base = {
        "id": body.get("id") or new_completion_id(),
        "object": "chat.completion.chunk",
        "created": body.get("created") or int(time.time()),
        "model": body.get("model"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    message = first_message(body)
    yield chunk({"role": "assistant", "content": ""})
    for piece in text_chunks(str(message.get("content") or "")):
        yield chunk({"content": piece})
    calls = message.get("tool_calls") or []
    if calls:
        yield chunk({"tool_calls": [{**c, "index": i} for i, c in enumerate(calls)]})
    yield chunk({}, finish_reason_of(body) or "stop")
    yield {**base, "choices": [], "usage": body.get("usage")}


class Accumulator:
    """Folds stream chunks into the completion they add up to."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.choices_seen: set[int] = set()

    def add(self, chunk: Mapping[str, Any]) -> None:
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        self.created = self.created or chunk.get("created")
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = dict(chunk["usage"])
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index") or 0)
            self.choices_seen.add(index)
            if index != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                self._add_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def _add_call(self, call: Mapping[str, Any]) -> None:
        slot = self.calls.setdefault(
            int(call.get("index") or 0),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        if function.get("name"):
            slot["function"]["name"] += function["name"]
        if function.get("arguments"):
            slot["function"]["arguments"] += function["arguments"]

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        body: dict[str, Any] = {
            "id": self.id or new_completion_id(),
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return body

    @property
    def single_choice(self) -> bool:
        return self.choices_seen <= {0}
