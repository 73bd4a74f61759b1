"""Pure cache logic: keys, eviction, TTLs, policy, verification, lookups over small fakes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from extensions.cache.keys import chat_key, scope_id
from extensions.cache.policy import ClientControl, Plan, plan_intent, plan_request
from extensions.cache.service import Entry, ResponseCache
from extensions.cache.settings import (
    CacheSettings,
    Eviction,
    IntentCache,
    Rules,
    Scope,
    Verification,
)
from extensions.cache.store import MemoryStore
from extensions.cache.vectors import MemoryVectorIndex
from extensions.cache.verify import features, same_question

pytestmark = pytest.mark.unit


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- keys -------------------------------------------------------------------------------


def test_exact_key_covers_what_changes_the_answer() -> None:
    base = chat_key("m", "global", body("hi"))
    assert chat_key("m", "global", body("hi", stream=True, user="u", metadata={"a": 1})) == base
    for other in (
        chat_key("m2", "global", body("hi")),
        chat_key("m", "team:a", body("hi")),
        chat_key("m", "global", body("hi ")),
        chat_key("m", "global", body("hi", temperature=0.5)),
        chat_key("m", "global", body("hi", response_format={"type": "json_object"})),
        chat_key("m", "global", body("hi", max_tokens=5)),
    ):
        assert other.exact != base.exact


def test_content_parts_equal_plain_text() -> None:
    parts = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert chat_key("m", "g", parts).exact == chat_key("m", "g", body("hi")).exact


def test_semantic_namespace_ignores_only_the_last_user_message() -> None:
    a = chat_key("m", "g", body("what is the capital of France"))
    b = chat_key("m", "g", body("capital city of France?"))
    assert a.namespace == b.namespace and a.query != b.query
    sys_a = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}]
    }
    sys_b = {
        "messages": [{"role": "system", "content": "be long"}, {"role": "user", "content": "x"}]
    }
    assert chat_key("m", "g", sys_a).namespace != chat_key("m", "g", sys_b).namespace
    assert (
        chat_key("m", "team:a", body("x")).namespace != chat_key("m", "team:b", body("x")).namespace
    )


def test_scope_ids() -> None:
    assert scope_id(Scope.GLOBAL, "t", "k") == "global"
    assert scope_id(Scope.TEAM, "t", "k") == "team:t"
    assert scope_id(Scope.TEAM, None, "k") == "key:k"  # no team: never shared beyond the key
    assert scope_id(Scope.KEY, "t", "k") == "key:k"


# -- memory store: eviction order and TTL -----------------------------------------------


async def test_lru_evicts_least_recently_used() -> None:
    s = MemoryStore(2, Eviction.LRU)
    await s.set("a", b"1", 60)
    await s.set("b", b"2", 60)
    assert await s.get("a") == b"1"
    await s.set("c", b"3", 60)
    assert s.keys() == ["a", "c"]


async def test_lfu_evicts_least_frequently_used() -> None:
    s = MemoryStore(2, Eviction.LFU)
    await s.set("a", b"1", 60)
    await s.set("b", b"2", 60)
    for _ in range(3):
        await s.get("b")
    await s.get("a")
    await s.set("c", b"3", 60)
    assert sorted(s.keys()) == ["b", "c"]


async def test_fifo_evicts_oldest_even_if_used() -> None:
    s = MemoryStore(2, Eviction.FIFO)
    await s.set("a", b"1", 60)
    await s.set("b", b"2", 60)
    await s.get("a")
    await s.set("c", b"3", 60)
    assert s.keys() == ["b", "c"]
    assert s.evictions == 1


async def test_ttl_expiry() -> None:
    clock = Clock()
    s = MemoryStore(10, clock=clock)
    await s.set("a", b"1", 5)
    clock.now += 4.9
    assert await s.get("a") == b"1"
    clock.now += 0.2
    assert await s.get("a") is None
    assert len(s) == 0


# -- policy -----------------------------------------------------------------------------


def test_client_controls_follow_litellm_and_http() -> None:
    assert ClientControl.parse({"no-cache": True}, None).no_cache
    assert ClientControl.parse({"no-store": True}, None).no_store
    assert ClientControl.parse({"ttl": 30}, None).ttl_s == 30
    c = ClientControl.parse(None, "no-store, max-age=0")
    assert c.no_store and c.max_age_s == 0 and not c.no_cache
    assert ClientControl.parse({"ttl": "junk"}, "bogus").ttl_s is None


def test_rules_bypass_with_reason() -> None:
    rules = Rules(max_temperature=0.7, max_user_turns=2)
    ok = ClientControl()
    assert plan_request(rules, ok, body("x")) == Plan(True, True)
    assert plan_request(rules, ok, body("x", temperature=0.9)).reason == "temperature above 0.7"
    assert plan_request(rules, ok, body("x", tools=[{"type": "function"}])).bypass
    long = {"messages": [{"role": "user", "content": "a"}] * 3}
    assert plan_request(rules, ok, long).reason == "more than 2 user turns"
    assert plan_request(rules, ClientControl(no_cache=True), body("x")) == Plan(
        False, True, "client: no-cache"
    )
    assert plan_request(rules, ClientControl(no_store=True), body("x")).store is False


def test_intent_never_cached() -> None:
    plan = plan_intent(Plan(True, True), "orders", IntentCache(enabled=False))
    assert plan.bypass and plan.reason == "intent 'orders' is never cached"
    assert plan_intent(Plan(True, True), "x", IntentCache()) == Plan(True, True)


# -- verification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "failed"),
    [
        ("What is the capital of Vietnam?", "What is the capital of Laos?", "entities"),
        ("How to lose weight in 2 weeks?", "How to lose weight in 3 weeks?", "numbers"),
        ("Can I travel with a passport?", "Can I travel without a passport?", "negation"),
        ("How is Messi better than Ronaldo?", "How is Ronaldo better than Messi?", "word_order"),
        ("What is the best cab service in pune?", "Which is the best cab service in Pune?", None),
        ("How do I learn Python quickly?", "how can I learn python fast", None),
    ],
)
def test_verification_checks(a: str, b: str, failed: str | None) -> None:
    assert same_question(features(a), features(b), Verification()) == failed


def test_verification_can_be_switched_off() -> None:
    a, b = features("capital of Vietnam"), features("capital of Laos")
    assert same_question(a, b, Verification(enabled=False)) is None
    assert same_question(a, b, Verification(entities=False)) is None


# -- lookups over the in-memory store and index ------------------------------------------


def unit(v: list[float]) -> np.ndarray:
    x = np.asarray(v, dtype=np.float32)
    return x / np.linalg.norm(x)


def entry(query: str, intent: str | None = None, created: float | None = None) -> Entry:
    return Entry({"choices": [{"message": {"content": f"answer to {query}"}}]}, query, intent,
                 "m", created or time.time())  # fmt: skip


async def test_semantic_hit_threshold_intent_and_verification() -> None:
    settings = CacheSettings(enabled=True)
    cache = ResponseCache(settings, MemoryStore(100), MemoryVectorIndex(3, 100))
    key = chat_key("m", "g", body("What is the capital of France?"))
    await cache.put(key, unit([1, 0, 0]), entry(key.query, "geo"), 60)
    para = chat_key("m", "g", body("what's the capital city of France"))
    near = unit([1, 0.1, 0])
    hit = await cache.semantic(para, near, 0.9, "geo")
    assert hit.entry is not None and hit.entry.query == key.query and hit.similarity > 0.99
    assert (await cache.semantic(para, unit([1, 1, 0]), 0.9, "geo")).entry is None
    other_intent = await cache.semantic(para, near, 0.9, "billing")
    assert other_intent.entry is None and other_intent.rejected_by == "intent"
    laos = chat_key("m", "g", body("What is the capital of Laos?"))
    refused = await cache.semantic(laos, near, 0.9, "geo")
    assert refused.entry is None and refused.rejected_by == "entities"
    other_scope = chat_key("m", "team:x", body("what's the capital city of France"))
    assert (await cache.semantic(other_scope, near, 0.9)).entry is None


async def test_evicted_payload_drops_its_vector() -> None:
    store = MemoryStore(1)
    index = MemoryVectorIndex(3, 100)
    cache = ResponseCache(CacheSettings(enabled=True), store, index)
    a = chat_key("m", "g", body("first question"))
    b = chat_key("m", "g", body("second question"))
    await cache.put(a, unit([1, 0, 0]), entry(a.query), 60)
    await cache.put(b, unit([0, 1, 0]), entry(b.query), 60)  # evicts a's payload
    assert len(index) == 2
    assert (await cache.semantic(a, unit([1, 0, 0]), 0.5)).entry is None
    assert len(index) == 1


async def test_max_age_refuses_old_entries() -> None:
    clock = Clock()
    cache = ResponseCache(CacheSettings(enabled=True), MemoryStore(10), None, clock=clock)
    key = chat_key("m", "g", body("q"))
    await cache.put(key, None, entry("q", created=clock.now), 60)
    clock.now += 30
    assert await cache.exact(key.exact, max_age_s=60) is not None
    assert await cache.exact(key.exact, max_age_s=10) is None


def test_memory_index_bounded_fifo() -> None:
    index = MemoryVectorIndex(3, 2)
    index.add_now("ns", "a", unit([1, 0, 0]))
    index.add_now("ns", "b", unit([0, 1, 0]))
    index.add_now("other", "c", unit([0, 0, 1]))
    assert len(index) == 2 and index.evictions == 1
    assert [n.entry_id for n in index.search_now("ns", unit([1, 0, 0]), 5)] == ["b"]
