"""What the caching adapter keeps: only complete, single-choice answers within the size rule."""

from __future__ import annotations

import time
from typing import Any

import pytest

from extensions.cache.keys import chat_key
from extensions.cache.policy import ClientControl, Plan
from extensions.cache.service import ResponseCache
from extensions.cache.settings import CacheSettings, Rules
from extensions.cache.store import MemoryStore
from extensions.hooks.caching import CachingHook, Pending, Ticket, rechunk, text_chunks

pytestmark = pytest.mark.unit


def hook(max_tokens: int = 4096) -> CachingHook:
    settings = CacheSettings(enabled=True, rules=Rules(max_tokens_cached=max_tokens))
    return CachingHook(ResponseCache(settings, MemoryStore(10), None), None, {})


def pending(store: bool = True) -> Pending:
    body = {"messages": [{"role": "user", "content": "q"}]}
    ticket = Ticket("gpt-sim", chat_key("gpt-sim", "global", body), Plan(True, store),
                    ClientControl(), "t1")  # fmt: skip
    return Pending(ticket, None, None, 60, None, None, time.monotonic())


def answer(finish: str = "stop", content: str | None = "hello", tokens: int = 5,
           choices: int = 1) -> dict[str, Any]:  # fmt: skip
    choice = {"index": 0, "finish_reason": finish,
              "message": {"role": "assistant", "content": content}}  # fmt: skip
    return {"choices": [choice] * choices, "usage": {"completion_tokens": tokens}}


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        (answer(), True),
        (answer(finish="length"), True),
        (answer(finish="content_filter"), False),
        (answer(content=""), False),
        (answer(choices=2), False),
    ],
)
async def test_only_complete_answers_are_stored(response: dict[str, Any], kept: bool) -> None:
    h = hook()
    assert await h.stored(pending(), response, "gpt-sim") is kept
    assert (await h.cache.exact(pending().ticket.key.exact) is not None) is kept


async def test_no_store_plan_and_size_rule() -> None:
    assert await hook().stored(pending(store=False), answer(), "gpt-sim") is False
    assert await hook(max_tokens=3).stored(pending(), answer(tokens=4), "gpt-sim") is False


def test_text_chunks_keep_every_character() -> None:
    text = "one two  three\\nfour five six seven eight nine"
    pieces = text_chunks(text)
    assert "".join(pieces) == text and len(pieces) >= 2


async def test_rechunk_splits_a_single_text_chunk() -> None:
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    async def one_chunk():  # type: ignore[no-untyped-def]
        yield ModelResponseStream(choices=[StreamingChoices(
            index=0, delta=Delta(role="assistant", content="a b c d e f g h i j"))])  # fmt: skip

    parts = [c async for c in rechunk(one_chunk())]
    assert len(parts) >= 2
    assert "".join(p.choices[0].delta.content for p in parts) == "a b c d e f g h i j"
