"""Two proxies sharing a three-master Redis Cluster, seen only through HTTP (the openai SDK,
status codes and the x-gateway-cache header).

- The shared cache tier: stored through one proxy, found through the other (exact and
  semantic: payloads and vector sets on the cluster).
- Rate limits counted in the cluster: exactly N of M concurrent requests admitted across
  both proxies.
- One master killed under load: cache traffic never fails (entries on the other masters are
  still found), a key whose limit counters live on the dead master gets 503 + Retry-After
  (``on_redis_failure: closed``) while a key whose counters live elsewhere is served as
  usual; after the restart everything is served again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.test_access import As
from tests.integration.test_cache import chat, unique
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.stack import NO_CACHE, Proxy, SimProvider, derive_gateway_config, proxy_pair

pytestmark = pytest.mark.integration

RETRY_AFTER_S = 0.5  # redis.retry_after_s: how long a failed master is bypassed
RPM = 5
DEAD = 1  # the master killed under load
KEYS = {
    "free": "sk-test-cl-free-1",
    "race": "sk-test-cl-race-2",
    "victim": "sk-test-cl-victim-3",
    "survivor": "sk-test-cl-survivor-4",
}
ENV = {f"TEST_CL_{alias.upper()}": key for alias, key in KEYS.items()}
FAST_MINI = {
    "api": "openai",
    "ttft_ms": 2,
    "tokens_per_second": 20000,
    "answer_words": {"min": 10, "max": 20},
}
# distinct topics: no warm question is a semantic match for another
TOPICS = (
    "what a load balancer does",
    "how DNS resolution works",
    "what a reverse proxy does",
    "how photosynthesis works",
    "what a refund policy is",
    "how TLS certificates work",
    "what eventual consistency means",
    "how a hash table works",
    "what a mutex is for",
    "how garbage collection works",
    "how volcanoes form",
    "why the sky is blue",
    "how vaccines train immunity",
    "what inflation measures",
    "how a jet engine works",
    "what a black hole is",
    "how bees make honey",
    "why leaves change colour",
    "how a bicycle stays upright",
    "what compound interest is",
    "how tides are caused",
    "how a refrigerator cools",
    "what a sonnet is",
    "how coffee is decaffeinated",
    "how glaciers move",
    "what a supply chain is",
    "how noise cancelling works",
    "why bread rises",
    "how a compass works",
    "what a haiku is",
)


def team_on(cluster: LocalRedisCluster, node: int, stem: str) -> str:
    """A team name whose limit counters (hash tag ``{rl:team:<name>}``) live on ``node``."""
    return next(
        f"{stem}{i}" for i in range(10_000) if cluster.node_of(f"{{rl:team:{stem}{i}}}") == node
    )


@pytest.fixture(scope="module")
def cluster_pair(
    log_dir: Path,
    sim: SimProvider,
    redis_cluster: LocalRedisCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proxy, Proxy]]:
    victim_team = team_on(redis_cluster, DEAD, "victims")
    survivor_team = team_on(redis_cluster, (DEAD + 1) % 3, "survivors")

    def edit(data: dict[str, Any]) -> None:
        data["redis"] = {
            "url": redis_cluster.url,
            "socket_timeout_ms": 200,
            "retry_after_s": RETRY_AFTER_S,
        }
        data["cache"]["tier"] = "shared"
        data["access"] = {
            "limits": {"store": "redis", "on_redis_failure": "closed"},
            "teams": {victim_team: {"rpm": 100_000}, survivor_team: {"rpm": 100_000}},
            "keys": [
                {"alias": "free", "owner": "o", "env": "TEST_CL_FREE"},
                {"alias": "race", "owner": "o", "env": "TEST_CL_RACE", "rpm": RPM},
                {"alias": "victim", "owner": "o", "env": "TEST_CL_VICTIM", "team": victim_team},
                {
                    "alias": "survivor",
                    "owner": "o",
                    "env": "TEST_CL_SURVIVOR",
                    "team": survivor_team,
                },
            ],
        }

    redis_cluster.flush()
    config = derive_gateway_config(tmp_path_factory.mktemp("cluster"), edit)
    yield from proxy_pair(log_dir, sim, config, "cluster", ENV)


async def test_entries_stored_through_one_proxy_are_found_through_the_other(
    cluster_pair: tuple[Proxy, Proxy], clean_sim: SimProvider
) -> None:
    one, two = cluster_pair
    text = unique("What does a reverse proxy do")
    first, h1, _ = await chat(one, "gpt-sim", text)
    assert h1["x-gateway-cache"] == "MISS"
    await asyncio.sleep(0.3)  # stored when LiteLLM logs the answer
    answer, h2, _ = await chat(two, "gpt-sim", text)
    assert h2["x-gateway-cache"] == "HIT_EXACT" and answer == first
    para_first, _, _ = await chat(one, "gpt-sim", "How do I clear the cache of my web browser?")
    await asyncio.sleep(0.3)
    para, h3, _ = await chat(two, "gpt-sim", "How can I clear the cache of my web browser?")
    assert h3["x-gateway-cache"] == "HIT_SEMANTIC" and para == para_first
    assert clean_sim.stats()["total"] == 2


async def attempt(proxy: Proxy, key: str) -> int:
    try:
        await chat(As(proxy, key), "gpt-sim", unique("limit probe"), extra_body=NO_CACHE)
    except openai.RateLimitError:
        return 429
    return 200


async def test_limit_is_exact_across_two_proxies(cluster_pair: tuple[Proxy, Proxy]) -> None:
    into_minute = time.time() % 60
    if into_minute > 50:  # counted per calendar minute: stay within one
        await asyncio.sleep(60.5 - into_minute)
    one, two = cluster_pair
    results = await asyncio.gather(*[attempt(p, KEYS["race"]) for p in (one, two) * 7])
    assert sorted(results) == [200] * RPM + [429] * (14 - RPM)


@dataclass
class Sent:
    kind: str
    started: float
    ended: float = 0.0
    status: int = 0
    cache: str = ""
    retry_after: str | None = None
    body: Any = None
    text: str = ""


async def post_chat(http: httpx.AsyncClient, alias: str, text: str, kind: str) -> Sent:
    sent = Sent(kind, time.monotonic(), text=text)
    body: dict[str, Any] = {
        "model": "gpt-sim-mini",
        "messages": [{"role": "user", "content": text}],
    }
    if alias != "free":
        body.update(NO_CACHE)
    try:
        auth = {"Authorization": f"Bearer {KEYS[alias]}"}
        r = await http.post("/v1/chat/completions", json=body, headers=auth)
    except httpx.HTTPError as exc:
        sent.status, sent.body = -1, repr(exc)
    else:
        sent.status, sent.cache = r.status_code, r.headers.get("x-gateway-cache", "")
        sent.retry_after = r.headers.get("retry-after")
        try:
            sent.body = r.json()
        except ValueError:
            sent.body = r.text[:300]
    sent.ended = time.monotonic()
    return sent


def content(sent: Sent) -> str:
    try:
        return str(sent.body["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        return ""


async def test_a_master_killed_under_load(
    cluster_pair: tuple[Proxy, Proxy], redis_cluster: LocalRedisCluster, clean_sim: SimProvider
) -> None:
    one, two = cluster_pair
    clean_sim.set_model("sim-gpt-mini", FAST_MINI)
    limits = httpx.Limits(max_connections=20)
    async with (
        httpx.AsyncClient(base_url=one.base_url, timeout=20, limits=limits) as on_one,
        httpx.AsyncClient(base_url=two.base_url, timeout=20, limits=limits) as on_two,
    ):
        # stored through proxy one: found through proxy two only in the cluster
        warm = [unique(f"Explain {topic}") for topic in TOPICS]
        stored = await asyncio.gather(*[post_chat(on_one, "free", t, "store") for t in warm])
        assert all(s.status == 200 and s.cache == "MISS" for s in stored), [
            (s.status, s.cache, s.body) for s in stored if s.status != 200 or s.cache != "MISS"
        ][:3]
        answers = {s.text: content(s) for s in stored}
        await asyncio.sleep(0.5)  # stored when LiteLLM logs each answer

        sent: list[Sent] = []
        stop = asyncio.Event()

        async def worker(alias: str) -> None:
            while not stop.is_set():
                text = unique(f"{alias} asks {TOPICS[len(sent) % len(TOPICS)]}")
                sent.append(await post_chat(on_two, alias, text, alias))
                await asyncio.sleep(0.02)

        workers = [asyncio.create_task(worker(a)) for a in ("free", "victim", "survivor") * 2]
        try:
            await asyncio.sleep(1.0)
            before = [await post_chat(on_two, "free", t, "warm") for t in warm[:3]]
            killed = time.monotonic()
            await asyncio.to_thread(redis_cluster.kill, DEAD)
            await asyncio.sleep(0.3)
            gate = asyncio.Semaphore(4)

            async def ask(text: str) -> Sent:
                async with gate:
                    return await post_chat(on_two, "free", text, "warm")

            during = await asyncio.gather(*[ask(t) for t in warm[3:]])
            await asyncio.sleep(max(0.0, killed + 2.0 - time.monotonic()))
        finally:
            restart_started = time.monotonic()
            await asyncio.to_thread(redis_cluster.restart, DEAD)
        try:
            await asyncio.sleep(RETRY_AFTER_S + 1.5)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        after = [
            await post_chat(on_two, a, unique("after"), a) for a in ("free", "victim", "survivor")
        ]

    summary = Counter((s.kind, s.status, s.cache) for s in [*sent, *before, *during, *after])
    # cache traffic: never an error; entries on the masters still up are found
    cache_traffic = [s for s in [*sent, *before, *during, *after] if s.kind in ("free", "warm")]
    assert all(s.status == 200 and content(s) for s in cache_traffic), summary
    assert all(s.cache == "HIT_EXACT" for s in before), summary
    exact_hits = [s for s in during if s.cache == "HIT_EXACT"]
    assert exact_hits and len(exact_hits) < len(during), summary  # about two thirds
    assert all(content(s) == answers[s.text] for s in exact_hits)
    # limits, fail-closed: the key counted on the dead master gets 503, the other is served
    down = [s for s in sent if s.started >= killed + 0.1 and s.ended <= restart_started]
    victims = [s for s in down if s.kind == "victim"]
    assert len(victims) >= 3 and all(s.status == 503 for s in victims), summary
    assert all(int(s.retry_after or 0) >= 1 for s in victims)
    assert all("limit store unavailable" in s.body["error"]["message"] for s in victims)
    survivors = [s for s in down if s.kind == "survivor"]
    assert len(survivors) >= 3 and all(s.status == 200 for s in survivors), summary
    assert all(s.status == 200 for s in sent if s.ended < killed), summary
    assert [s.status for s in after] == [200, 200, 200], summary
    dead_node = f"shard 127.0.0.1:{redis_cluster.nodes[DEAD].port}"
    down_line, back_line = f"Redis unavailable ({dead_node})", f"Redis is back ({dead_node})"
    log = await two.process.log_with(down_line, back_line)
    assert down_line in log and back_line in log
