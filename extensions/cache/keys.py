"""Pure: the canonical form of what changes an answer, and the cache keys made from it.

The exact key covers everything that can change the answer: the model or router
asked for, every message, tools, sampling parameters and response format, plus
the scope. The semantic namespace is the same without the last user message,
which is matched by meaning instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extensions.cache.settings import Scope

# OpenAI chat parameters (and common provider extras) that can change the answer.
ANSWER_PARAMS = frozenset({
    "temperature", "top_p", "top_k", "n", "stop", "max_tokens", "max_completion_tokens",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "seed", "response_format", "tools", "tool_choice", "parallel_tool_calls", "functions",
    "function_call", "reasoning_effort", "thinking", "modalities", "audio", "prediction",
    "web_search_options", "verbosity", "service_tier",
})  # fmt: skip
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call")
EMBEDDING_PARAMS = frozenset({"input", "dimensions", "encoding_format"})


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)  # fmt: skip


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:40]


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Only the fields that reach the model; a plain-text content list becomes a string."""
    out = []
    for m in messages:
        item = {k: m[k] for k in MESSAGE_FIELDS if m.get(k) is not None}
        content = item.get("content")
        if isinstance(content, list) and all(
            isinstance(p, Mapping) and p.get("type") == "text" for p in content
        ):
            item["content"] = "".join(str(p.get("text", "")) for p in content)
        out.append(item)
    return out


def scope_id(scope: Scope, team: str | None, key: str | None) -> str:
    """The partition an entry lives in; an unknown team or key gets a partition of its own."""
    if scope is Scope.GLOBAL:
        return "global"
    if scope is Scope.TEAM and team:
        return f"team:{team}"
    return f"key:{key or 'anonymous'}"


def last_user_index(messages: Sequence[Mapping[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


@dataclass(frozen=True, slots=True)
class RequestKey:
    """What identifies a chat request for both caches."""

    exact: str  # key of the exact cache
    namespace: str  # semantic partition: all but the last user message
    query: str  # the last user message (matched by meaning)


def chat_key(target: str, scope: str, body: Mapping[str, Any]) -> RequestKey:
    messages = normalize_messages(body.get("messages") or [])
    params = {k: body[k] for k in sorted(ANSWER_PARAMS) if body.get(k) is not None}
    exact = _digest("chat", scope, target, _canon(params), _canon(messages))
    idx = last_user_index(messages)
    query = ""
    context = messages
    if idx is not None:
        content = messages[idx].get("content")
        query = content if isinstance(content, str) else _canon(content)
        context = [*messages[:idx], {"role": "user", "content": None}, *messages[idx + 1 :]]
    namespace = _digest("sem", scope, target, _canon(params), _canon(context))
    return RequestKey(exact, namespace, query)


def embedding_key(target: str, scope: str, body: Mapping[str, Any]) -> str:
    params = {k: body[k] for k in sorted(EMBEDDING_PARAMS) if body.get(k) is not None}
    return _digest("emb", scope, target, _canon(params))
