"""The texts of OpenAI-format chat messages, and copies of the messages with new texts.

A message's ``content`` is a string or a list of parts; only ``{"type": "text"}``
parts are text. Tool-call arguments, names and images are not read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Slot = tuple[int, int | None]  # message index, part index (None: string content)


def _slots(messages: Sequence[Any]) -> Iterator[tuple[Slot, str]]:
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield (i, None), content
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, Mapping) and part.get("type") == "text":
                    text = part.get("text")
                    if isinstance(text, str):
                        yield (i, j), text


def message_texts(messages: Sequence[Any]) -> list[str]:
    """Every text of ``messages``, in order (the order ``with_texts`` expects)."""
    return [text for _, text in _slots(messages)]


def with_texts(messages: Sequence[Any], texts: Sequence[str]) -> list[Any]:
    """``messages`` with their texts replaced by ``texts`` (one per ``message_texts`` entry).

    Changed messages are copied; the others, and the input, are left as they are.
    """
    out = list(messages)
    for ((i, j), old), new in zip(_slots(messages), texts, strict=True):
        if new == old:
            continue
        message = dict(out[i])
        if j is None:
            message["content"] = new
        else:
            parts = list(message["content"])
            parts[j] = {**parts[j], "text": new}
            message["content"] = parts
        out[i] = message
    return out
