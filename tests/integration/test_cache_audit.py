"""Audited semantic hits through two real proxies sharing a Redis cache tier.

A wrong entry is planted in Redis (its answer replaced, as a stale or poisoned entry would
be); the other proxy serves it to a paraphrase as a semantic hit, the audit asks the model
afresh off the request path, finds the answers disagree and evicts the entry: the next
paraphrase is a miss. A right entry passes its audit and stays.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from extensions.cache.service import Entry
from tests.integration.test_cache import chat
from tests.support.redis_server import RedisServer
from tests.support.stack import Proxy, SimProvider, derive_gateway_config, proxy_pair

pytestmark = pytest.mark.integration
WRONG = "Paris is the capital of France."


@pytest.fixture(scope="module")
def audit_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("audit-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def audited_pair(
    log_dir: Path,
    sim: SimProvider,
    audit_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proxy, Proxy]]:
    def edit(data: dict[str, Any]) -> None:
        data["redis"] = {"url": audit_redis.url, "socket_timeout_ms": 200}
        data["cache"]["tier"] = "shared"
        data["cache"]["semantic"]["audit"] = {
            "enabled": True,
            "sample_rate": 1.0,
            "answer_threshold": 0.3,
        }

    config = derive_gateway_config(tmp_path_factory.mktemp("audit"), edit)
    yield from proxy_pair(log_dir, sim, config, "audit")


# the simulator's answers are random words: two answers to one question agree at 0.45-0.75
# (cosine), an unrelated sentence at about 0; real models' answers agree far more


def audits(proxy: Proxy) -> list[dict[str, Any]]:
    lines = proxy.process.log_path.read_text(errors="replace").splitlines()
    return [
        json.loads(line[line.index("{") :]) for line in lines if '"event": "cache_audit"' in line
    ]


async def wait_for_audits(proxy: Proxy, count: int) -> list[dict[str, Any]]:
    for _ in range(100):
        found = audits(proxy)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} audits expected, found {audits(proxy)}")


def plant(server: RedisServer, query: str, answer: str) -> None:
    """Replace the answer of the shared tier's entry for ``query``."""
    client = redis.Redis.from_url(server.url)
    for key in client.scan_iter("*c:*"):
        raw = client.get(key)
        entry = Entry.from_bytes(raw) if isinstance(raw, bytes) else None
        if entry is not None and entry.query == query:
            entry.response["choices"][0]["message"]["content"] = answer
            client.set(key, entry.to_bytes(), keepttl=True)
            return
    raise AssertionError(f"no entry for {query!r}")


async def test_a_planted_wrong_entry_is_found_and_evicted(
    audited_pair: tuple[Proxy, Proxy], audit_redis: RedisServer, clean_sim: SimProvider
) -> None:
    one, two = audited_pair
    redis.Redis.from_url(audit_redis.url).flushdb()
    right, h1, _ = await chat(one, "gpt-sim-mini", "How do I change the email on my account?")
    assert h1["x-gateway-cache"] == "MISS"
    served, h2, _ = await chat(two, "gpt-sim-mini", "How can I change the email on my account?")
    assert h2["x-gateway-cache"] == "HIT_SEMANTIC" and served == right
    [passed] = await wait_for_audits(two, 1)
    assert passed["result"] == "pass", passed

    question = "How do I turn on two-factor authentication?"
    _, h3, _ = await chat(one, "gpt-sim-mini", question)
    assert h3["x-gateway-cache"] == "MISS"
    plant(audit_redis, question, WRONG)  # before the other proxy ever read the entry
    served, h4, _ = await chat(two, "gpt-sim-mini", "How can I turn on two-factor authentication?")
    assert h4["x-gateway-cache"] == "HIT_SEMANTIC" and served == WRONG
    failed = (await wait_for_audits(two, 2))[-1]
    assert failed["result"] == "fail (evicted)" and failed["precision"] == 0.5
    again, h5, _ = await chat(two, "gpt-sim-mini", "How can I turn on two-factor authentication?")
    assert h5["x-gateway-cache"] == "MISS" and again != WRONG
