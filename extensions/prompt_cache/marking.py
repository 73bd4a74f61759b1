"""Pure: mark a request's stable prefix for explicit provider prompt caching.

The stable prefix is the system prompt (the router's and the app's): it is marked with
``cache_control`` when it is long enough for the provider to cache it. LiteLLM turns the
marker into Anthropic's ``cache_control`` block or a Gemini ``cachedContents`` resource
(with ``ttl``). A request that already marks something is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extensions.prompt_cache.settings import GroupCaching, Mode

CHARS_PER_TOKEN = 4  # a conservative estimate: a prefix is marked only if clearly long enough


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
    return ""


def _marked(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, Mapping) and p.get("cache_control") for p in content
        ):
            return True
    return False


def mark_prefix(messages: list[dict[str, Any]], settings: GroupCaching | None,
                gemini: bool) -> list[dict[str, Any]]:  # fmt: skip
    """``messages`` with the last system message marked, when explicit caching applies."""
    if settings is None or settings.mode is not Mode.EXPLICIT or _marked(messages):
        return messages
    systems = [i for i, m in enumerate(messages) if m.get("role") == "system"]
    if not systems:
        return messages
    prefix = sum(len(_text(messages[i].get("content"))) for i in systems)
    if prefix < settings.min_tokens * CHARS_PER_TOKEN:
        return messages
    last = systems[-1]
    marker: dict[str, Any] = {"type": "ephemeral"}
    if gemini and settings.ttl_s is not None:
        marker["ttl"] = f"{settings.ttl_s}s"
    content = messages[last].get("content")
    parts: list[dict[str, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str)
        else [dict(p) for p in content or []]
    )  # fmt: skip
    parts[-1] = {**parts[-1], "cache_control": marker}
    out = list(messages)
    out[last] = {**messages[last], "content": parts}
    return out
