"""Every Redis-backed store on a real three-master Redis Cluster, without a proxy.

Each store works on the cluster; every multi-key operation stays in one hash slot (a
key's and its team's counters share the team's tag); the limits stay exact under a
race of concurrent admits from two links (two workers); one master killed: the caches
miss instead of raising, the limits follow ``fail_open``, the keys on the other masters
keep working, and once the master is back (empty) everything is exact again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from redis.crc import key_slot

from extensions.access.budgets import (
    Budget,
    Budgets,
    BudgetStoreUnavailable,
    RedisSpend,
    SpendCounter,
)
from extensions.access.limits import RedisLimits, SubjectLimits
from extensions.access.usage import Charge, RedisUsage, Usage
from extensions.backends.redis import RedisLink
from extensions.backends.settings import RedisSettings
from extensions.cache.store import RedisStore
from extensions.cache.vectors import RedisVectorIndex
from extensions.observe.timeline import RedisTimeline
from extensions.router.handoff import RedisStreamHandoffSink
from tests.support.redis_cluster import LocalRedisCluster

pytestmark = pytest.mark.integration

RETRY_AFTER_S = 0.3
DIM = 16


def on_node(
    cluster: LocalRedisCluster,
    node: int,
    make: Callable[[int], str],
    tag: Callable[[str], str] = lambda name: name,
) -> str:
    """The first ``make(i)`` whose hash tag ``tag(name)`` lands on ``node``."""
    return next(make(i) for i in range(10_000) if cluster.node_of(tag(make(i))) == node)


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return np.asarray(v / np.linalg.norm(v), dtype=np.float32)


def settings(cluster: LocalRedisCluster) -> RedisSettings:
    return RedisSettings(url=cluster.url, socket_timeout_ms=200, retry_after_s=RETRY_AFTER_S)


@pytest.fixture
async def link(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisLink]:
    redis_cluster.flush()
    one = RedisLink(settings(redis_cluster))
    yield one
    await one.close()


@pytest.fixture
async def second_link(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisLink]:
    """Another worker's connection pool."""
    other = RedisLink(settings(redis_cluster))
    yield other
    await other.close()


def rl_tag(group: str) -> str:
    return "{rl:" + group + "}"


def team_limits(team: str, rpm: int) -> list[SubjectLimits]:
    """A key with its own limit in a team with a team limit: both counted together."""
    group = f"team:{team}"
    return [
        SubjectLimits(f"key:{team}-app", rpm=10 * rpm, group=group),
        SubjectLimits(group, rpm=rpm, max_parallel=1000, group=group),
    ]


async def admitted(stores: list[RedisLimits], limits: list[SubjectLimits], n: int) -> int:
    now = time.time()
    verdicts = await asyncio.gather(
        *[stores[i % len(stores)].admit(limits, f"req-{i}", now) for i in range(n)]
    )
    return sum(v.allowed for v in verdicts)


async def test_cluster_runs_vector_sets_on_every_master(
    redis_cluster: LocalRedisCluster, link: RedisLink
) -> None:
    index = RedisVectorIndex(link, max_entries=100)
    for node in range(3):
        namespace = on_node(redis_cluster, node, lambda i: f"ns{i}", lambda n: f"gw:v:{n}")
        for j in range(5):
            await index.add(namespace, f"entry-{node}-{j}", vector(j), ttl_s=60)
        found = await index.search(namespace, vector(3), k=2)
        assert found[0].entry_id == f"entry-{node}-3" and found[0].similarity > 0.98
        assert redis_cluster.keys(node) == [f"gw:v:{namespace}"]
        await index.remove(namespace, f"entry-{node}-3")
        assert (await index.search(namespace, vector(3), k=1))[0].entry_id != f"entry-{node}-3"


async def test_cache_entries_spread_over_the_masters(
    redis_cluster: LocalRedisCluster, link: RedisLink
) -> None:
    store = RedisStore(link)
    for i in range(60):
        await store.set(f"entry{i}", f"answer {i}".encode(), ttl_s=60)
    assert [await store.get(f"entry{i}") for i in range(60)] == [
        f"answer {i}".encode() for i in range(60)
    ]
    per_node = [len(redis_cluster.keys(n)) for n in range(3)]
    assert sum(per_node) == 60 and min(per_node) >= 5, per_node
    await store.delete("entry0")
    assert await store.get("entry0") is None


async def test_limits_are_exact_under_a_race_of_two_workers(
    redis_cluster: LocalRedisCluster, link: RedisLink, second_link: RedisLink
) -> None:
    """Two fresh links, so this is also the first burst on a new cluster client: before
    RedisLink initialised the client first, redis-py sent such a burst to random nodes and
    failed some commands with ConnectionError or AttributeError."""
    stores = [RedisLimits(link, fail_open=False), RedisLimits(second_link, fail_open=False)]
    teams = [
        on_node(redis_cluster, node, lambda i: f"team{i}", lambda t: rl_tag(f"team:{t}"))
        for node in range(3)
    ]
    results = await asyncio.gather(*[admitted(stores, team_limits(t, 20), 50) for t in teams])
    assert results == [20, 20, 20]
    for node, team in enumerate(teams):
        keys = redis_cluster.keys(node)
        # the key's and the team's counters: in one slot, the team's, on the expected master
        assert any(f":key:{team}-app:r:" in k for k in keys) and any(":team:" in k for k in keys)
        assert {key_slot(k.encode()) for k in keys} == {key_slot(rl_tag(f"team:{team}").encode())}
    # the in-flight set of the team: released requests free their slots
    await stores[0].release(team_limits(teams[0], 20)[1:], "req-0")
    in_flight = f"gw:{rl_tag('team:' + teams[0])}:team:{teams[0]}:p"
    assert redis_cluster.nodes[0].client().zcard(in_flight) == 19


async def test_budgets_usage_timeline_and_stream_on_the_cluster(
    redis_cluster: LocalRedisCluster, link: RedisLink
) -> None:
    teams = [
        on_node(redis_cluster, node, lambda i: f"t{i}", lambda t: f"{{spend:team:{t}}}")
        for node in range(3)
    ]
    by_alias = {
        f"app{n}": [
            Budget(f"key:app{n}", daily_usd=1.0, group=f"team:{t}"),
            Budget(f"team:{t}", daily_usd=0.5, group=f"team:{t}"),
        ]
        for n, t in enumerate(teams)
    }
    budgets = Budgets(RedisSpend(link, fail_open=False), by_alias)
    for n, usd in enumerate((0.2, 0.5, 0.6)):
        await budgets.charge(f"app{n}", usd)
    assert [(await budgets.check(f"app{n}")).allowed for n in range(3)] == [True, False, False]
    left = await budgets.remaining()  # reads every team: one MGET per team's slot
    assert left[f"team:{teams[0]}"]["daily"]["spent_usd"] == pytest.approx(0.2)
    assert left["key:app2"]["daily"]["spent_usd"] == pytest.approx(0.6)

    usage = Usage(RedisUsage(link))
    await usage.record(Charge("app0", teams[0], "gpt-sim", tokens=12, spend_usd=0.01))
    await usage.record(Charge("app0", teams[0], "gpt-sim", tokens=8, spend_usd=0.01))
    report = await usage.report()
    assert report["key"]["app0"]["requests"] == 2 and report["key"]["app0"]["tokens"] == 20

    timeline = RedisTimeline(link)
    minute = int(time.time()) // 60
    await timeline.add({minute: {"n": 2, "err": 1}, minute - 1: {"n": 1}})
    await timeline.add({minute: {"n": 1}})
    expected = {minute - 1: {"n": 1.0}, minute: {"n": 3.0, "err": 1.0}}
    assert await timeline.read(1, [minute - 1, minute, minute + 1]) == expected
    five: dict[int, dict[str, float]] = {}
    for m, fields in expected.items():
        for name, value in fields.items():
            five.setdefault(m // 5, {}).setdefault(name, 0.0)
            five[m // 5][name] += value
    assert await timeline.read(5, sorted(five)) == five

    sink = RedisStreamHandoffSink(redis_cluster.url, "gateway:handoffs", max_len=1000)
    await sink.deliver({"id": "handoff-1", "queue": "billing"})
    node = redis_cluster.nodes[redis_cluster.node_of("gateway:handoffs")].client()
    entries: Any = node.xrange("gateway:handoffs")
    assert [json.loads(fields["record"])["id"] for _, fields in entries] == ["handoff-1"]


async def test_a_master_down_degrades_its_keys_only_and_recovers_exactly(
    redis_cluster: LocalRedisCluster, link: RedisLink, caplog: pytest.LogCaptureFixture
) -> None:
    dead, alive = 1, 2
    cache, index = RedisStore(link), RedisVectorIndex(link, max_entries=100)
    closed, opened = RedisLimits(link, fail_open=False), RedisLimits(link, fail_open=True)
    spend = RedisSpend(link, fail_open=False)

    def entry(node: int) -> str:
        return on_node(redis_cluster, node, lambda i: f"e{i}", lambda e: f"gw:c:{e}")

    def namespace(node: int) -> str:
        return on_node(redis_cluster, node, lambda i: f"n{i}", lambda n: f"gw:v:{n}")

    def team(node: int) -> str:
        return on_node(redis_cluster, node, lambda i: f"x{i}", lambda t: rl_tag(f"team:{t}"))

    def spend_counters(node: int) -> list[SpendCounter]:
        group = on_node(redis_cluster, node, lambda i: f"team:s{i}", lambda g: f"{{spend:{g}}}")
        return list(Budget(group, daily_usd=1.0, group=group).counters("20250101", "202501"))

    for node in (dead, alive):
        await cache.set(entry(node), b"stored", ttl_s=60)
        await index.add(namespace(node), "v1", vector(1), ttl_s=60)
    assert await admitted([closed], team_limits(team(dead), 5), 3) == 3

    redis_cluster.kill(dead)
    try:
        # caches: the dead master's keys miss, nothing raises, the others still answer
        assert await cache.get(entry(dead)) is None
        await cache.set(entry(dead), b"lost", ttl_s=60)
        assert await index.search(namespace(dead), vector(1), k=1) == []
        await index.add(namespace(dead), "v2", vector(2), ttl_s=60)
        assert await cache.get(entry(alive)) == b"stored"
        assert (await index.search(namespace(alive), vector(1), k=1))[0].entry_id == "v1"
        # limits: fail-closed refuses, fail-open admits, other teams stay exact
        verdict = await closed.admit(team_limits(team(dead), 5), "during", time.time())
        assert not verdict.allowed and verdict.limit == "unavailable"
        assert (await opened.admit(team_limits(team(dead), 5), "during", time.time())).allowed
        assert await admitted([closed], team_limits(team(alive), 4), 10) == 4
        # budgets: the dead master's groups are unknown (fail-closed raises), others read
        with pytest.raises(BudgetStoreUnavailable):
            await spend.spent(spend_counters(dead))
        assert await spend.spent(spend_counters(alive)) == [0.0, 0.0]
        await RedisTimeline(link).add({1: {"n": 1}})  # wherever it lives: never raises
        assert link.down == [f"127.0.0.1:{redis_cluster.nodes[dead].port}"]
    finally:
        await asyncio.to_thread(redis_cluster.restart, dead)
    await asyncio.sleep(RETRY_AFTER_S + 0.1)

    # back, and empty: fresh counters, exact again; the caches store and find again
    assert await admitted([closed], team_limits(team(dead), 5), 12) == 5
    await cache.set(entry(dead), b"again", ttl_s=60)
    assert await cache.get(entry(dead)) == b"again"
    await index.add(namespace(dead), "v3", vector(3), ttl_s=60)
    assert (await index.search(namespace(dead), vector(3), k=1))[0].entry_id == "v3"
    assert link.down == [] and link.available
    assert "Redis unavailable (shard 127.0.0.1:" in caplog.text
    assert "Redis is back (shard 127.0.0.1:" in caplog.text


async def test_the_other_masters_serve_throughout_a_kill_and_a_restart(
    redis_cluster: LocalRedisCluster, link: RedisLink
) -> None:
    """Traffic for every master at once while the first is killed and restarted: the keys
    on the others never fail, whatever redis-py does to recover (a restarting master
    answers CLUSTERDOWN until it has rejoined; pipelines to a dead one fail; the first
    master is where redis-py read its command table), and a worker starting meanwhile
    (its first seed down) is served too."""
    dead = 0
    limits, cache, usage = RedisLimits(link, fail_open=False), RedisStore(link), RedisUsage(link)
    teams = [
        on_node(redis_cluster, n, lambda i: f"y{i}", lambda t: rl_tag(f"team:{t}"))
        for n in range(3)
    ]
    entries = [
        on_node(redis_cluster, n, lambda i: f"f{i}", lambda e: f"gw:c:{e}") for n in range(3)
    ]
    days = [
        on_node(redis_cluster, n, lambda i: f"d{i}", lambda d: f"gw:usage:{d}") for n in range(3)
    ]
    for node in range(3):
        await cache.set(entries[node], b"kept", ttl_s=60)
    failed: list[tuple[str, int]] = []
    done = Counter[str]()
    stop = asyncio.Event()

    async def traffic(node: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            lim = team_limits(teams[node], 1_000_000)
            verdict = await limits.admit(lim, f"r{node}-{i}", time.time())
            await limits.release(lim[1:], f"r{node}-{i}")  # a pipeline
            found = await cache.get(entries[node])
            await usage.add(days[node], {"requests": 1})  # a pipeline
            if node != dead and (not verdict.allowed or found != b"kept"):
                failed.append((str(verdict), node))
            done[f"{node}"] += 1
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(traffic(n)) for n in range(3) for _ in range(3)]
    try:
        await asyncio.sleep(0.5)
        redis_cluster.kill(dead)
        await asyncio.sleep(1.5)
        fresh = RedisLink(settings(redis_cluster))  # a worker starting now: its seed is down
        try:
            assert await RedisStore(fresh).get(entries[1]) == b"kept"
        finally:
            await fresh.close()
        await asyncio.to_thread(redis_cluster.restart, dead)
        await asyncio.sleep(RETRY_AFTER_S + 0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not failed, failed[:5]
    assert min(done[f"{n}"] for n in (1, 2)) >= 100, done
    assert link.down == []
