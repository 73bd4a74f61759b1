"""Faults under load, through the real proxy, a real Redis and the simulated provider.

Two proxies share one Redis (shared cache tier, limits in Redis) and differ only in
``access.limits.on_redis_failure``; their router settings are config/litellm.yaml's with
short timeouts and cooldowns.

- Redis killed while requests flow: the caches are bypassed without errors, limits in Redis
  follow ``on_redis_failure`` (closed: 503 + Retry-After; open: admitted), and everything
  recovers once Redis is back.
- Clients that hang up mid-stream: the upstream stream is cancelled, nothing is cached, no
  parallel-request slot leaks and the proxy keeps serving.
- Upstream faults: 30% of the primary deployments' calls fail (500, 429, timeouts, dropped
  connections) and the fallbacks of config/litellm.yaml still answer every request.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.test_cache import unique
from tests.support.redis_server import RedisServer
from tests.support.stack import (
    NO_CACHE,
    Proxy,
    SimProvider,
    derive_gateway_config,
    derive_litellm_config,
    running,
)

pytestmark = pytest.mark.integration

ANSWER_PREFIX = "Simulated reply from "
TIMEOUT_S = 1.5  # router_settings.timeout and stream_timeout of the proxies here


# -- Redis killed under load -------------------------------------------------------------

FREE_KEY = "sk-test-faults-free-1a"  # no limits
LIMITED_KEY = "sk-test-faults-lim-2b"  # an rpm limit counted in Redis
PARALLEL_KEY = "sk-test-faults-par-3c"  # max_parallel, counted in Redis
KEY_ENV = {"TEST_FAULTS_FREE": FREE_KEY, "TEST_FAULTS_LIMITED": LIMITED_KEY,
           "TEST_FAULTS_PARALLEL": PARALLEL_KEY}  # fmt: skip
MAX_PARALLEL = 2
RETRY_AFTER_S = 0.5  # redis.retry_after_s: how long a failed Redis is bypassed
FAST_MINI = {"api": "openai", "ttft_ms": 2, "tokens_per_second": 20000,
             "answer_words": {"min": 10, "max": 20}}  # fmt: skip
# stored through one proxy before the outage, asked once each on the other
WARM_TOPICS = (
    "what a load balancer does", "how DNS resolution works", "what a reverse proxy does",
    "how photosynthesis works", "what a refund policy is", "how TLS certificates work",
)  # fmt: skip
# never asked before: semantically far from the warm ones, so that no semantic lookup
# copies a warm entry into the asking proxy's memory tier
FRESH_TOPICS = (
    "what eventual consistency means", "how a hash table works", "what a mutex is for",
    "how garbage collection works", "how volcanoes form", "why the sky is blue",
)  # fmt: skip


def redis_gateway_config(tmp: Path, redis_url: str, on_failure: str) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["redis"] = {"url": redis_url, "socket_timeout_ms": 200,
                         "retry_after_s": RETRY_AFTER_S}  # fmt: skip
        data["cache"]["tier"] = "shared"
        data["access"] = {
            "limits": {"store": "redis", "on_redis_failure": on_failure},
            "keys": [
                {"alias": "free", "owner": "o", "env": "TEST_FAULTS_FREE"},  # no limits
                {"alias": "limited", "owner": "o", "env": "TEST_FAULTS_LIMITED",
                 "rpm": 100000},  # counted in Redis, never reached
                {"alias": "parallel", "owner": "o", "env": "TEST_FAULTS_PARALLEL",
                 "max_parallel": MAX_PARALLEL},
            ],
        }  # fmt: skip

    return derive_gateway_config(tmp, edit)


@pytest.fixture(scope="module")
def faults_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("faults-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_proxies(
    log_dir: Path, sim: SimProvider, faults_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proxy, Proxy]]:  # fmt: skip
    """(open, closed): two proxies on one Redis (shared cache tier, limits in Redis) that
    differ only in ``access.limits.on_redis_failure``; the shipped router settings with
    short timeouts and cooldowns. ``allowed_fails`` is raised from the shipped 2: at a
    30% fault rate LiteLLM otherwise cools down every deployment, the healthy last
    resort included, and answers 429 "No deployments available" (README, known
    limits)."""
    litellm_config = derive_litellm_config(
        tmp_path_factory.mktemp("faults") / "litellm.yaml",
        {"timeout": TIMEOUT_S, "stream_timeout": TIMEOUT_S, "cooldown_time": 5,
         "allowed_fails": 10},
    )  # fmt: skip
    opened, closed = (
        Proxy(log_dir, sim, litellm_config=litellm_config, extra_env=KEY_ENV,
              gateway_config=redis_gateway_config(tmp_path_factory.mktemp(f"redis-{policy}"),
                                                  faults_redis.url, policy),
              name=f"faults-{policy}")
        for policy in ("open", "closed")
    )  # fmt: skip
    yield from running(opened, closed)


@dataclass
class Sent:
    kind: str
    started: float
    ended: float = 0.0
    status: int = 0
    cache: str = ""
    retry_after: str | None = None
    body: Any = None
    warm: bool = False
    text: str = ""


def chat_body(text: str, model: str = "gpt-sim-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def post_chat(http: httpx.AsyncClient, key: str, body: dict[str, Any], kind: str,
                    warm: bool = False) -> Sent:  # fmt: skip
    sent = Sent(kind, time.monotonic(), warm=warm, text=body["messages"][-1]["content"])
    try:
        r = await http.post("/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {key}"})  # fmt: skip
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


def answered(sent: Sent) -> bool:
    try:
        return bool(sent.body["choices"][0]["message"]["content"].startswith(ANSWER_PREFIX))
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


@dataclass
class Timeline:
    kill_started: float = float("inf")
    killed: float = float("inf")
    restart_started: float = float("inf")
    restarted: float = float("inf")
    sent: list[Sent] = field(default_factory=list)

    def before_kill(self, s: Sent) -> bool:
        return s.ended < self.kill_started

    def while_down(self, s: Sent) -> bool:
        return s.started >= self.killed and s.ended <= self.restart_started

    def recovered(self, s: Sent) -> bool:
        return s.started >= self.restarted + RETRY_AFTER_S + 1.0


async def test_redis_killed_under_load(
    redis_proxies: tuple[Proxy, Proxy], faults_redis: RedisServer, clean_sim: SimProvider
) -> None:
    """Concurrent traffic on both proxies while Redis is killed and restarted:

    - cache traffic (a key without limits, on the fail-closed proxy): never an error, never
      a hit while Redis is down (entries stored through the other proxy live only in Redis),
      hits again before and after;
    - a limited key on the fail-closed proxy: 200, then 503 + Retry-After while Redis is
      down, then 200 again;
    - a limited key on the fail-open proxy: always admitted.
    """
    open_proxy, closed_proxy = redis_proxies
    clean_sim.set_model("sim-gpt-mini", FAST_MINI)
    limits = httpx.Limits(max_connections=20)
    async with (
        httpx.AsyncClient(base_url=open_proxy.base_url, timeout=20, limits=limits) as on_open,
        httpx.AsyncClient(base_url=closed_proxy.base_url, timeout=20, limits=limits) as on_closed,
    ):
        # entries stored through the open proxy: in Redis (and that proxy's memory) only
        warm = [unique(f"Explain {WARM_TOPICS[i % len(WARM_TOPICS)]}") for i in range(90)]
        gate = asyncio.Semaphore(6)

        async def store(text: str) -> Sent:
            async with gate:
                return await post_chat(on_open, FREE_KEY, chat_body(text), "warm-up")

        stored = await asyncio.gather(*[store(t) for t in warm])
        assert all(s.status == 200 and s.cache == "MISS" for s in stored), [
            (s.status, s.cache) for s in stored if s.status != 200 or s.cache != "MISS"
        ][:5]
        await asyncio.sleep(0.5)  # stored when LiteLLM logs each answer

        line = Timeline()
        stop = asyncio.Event()
        warm_left = iter(warm)

        async def cache_worker(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                text = next(warm_left, None) if i % 2 else None
                fresh = unique(f"Explain {FRESH_TOPICS[(n + i) % len(FRESH_TOPICS)]}")
                body = chat_body(text or fresh)
                sent = await post_chat(on_closed, FREE_KEY, body, "cache", warm=bool(text))
                line.sent.append(sent)
                await asyncio.sleep(0.02)

        async def limited_worker(http: httpx.AsyncClient, kind: str) -> None:
            while not stop.is_set():
                body = {**chat_body(unique("limited key under load")), **NO_CACHE}
                line.sent.append(await post_chat(http, LIMITED_KEY, body, kind))
                await asyncio.sleep(0.02)

        workers = [asyncio.create_task(cache_worker(n)) for n in range(3)]
        workers += [asyncio.create_task(limited_worker(on_closed, "closed")) for _ in range(2)]
        workers += [asyncio.create_task(limited_worker(on_open, "open")) for _ in range(2)]
        try:
            await asyncio.sleep(1.5)
            line.kill_started = time.monotonic()
            await asyncio.to_thread(faults_redis.kill)
            line.killed = time.monotonic()
            await asyncio.sleep(2.5)
        finally:
            line.restart_started = time.monotonic()
            await asyncio.to_thread(faults_redis.start)
            line.restarted = time.monotonic()
        try:
            await asyncio.sleep(RETRY_AFTER_S + 2.5)
        finally:
            stop.set()
            await asyncio.gather(*workers)

        # after the restart: shared entries again (the restarted Redis is empty)
        deadline = time.monotonic() + 8
        while True:
            text = unique("Explain what a load balancer does")
            await post_chat(on_open, FREE_KEY, chat_body(text), "after")
            await asyncio.sleep(0.3)
            again = await post_chat(on_closed, FREE_KEY, chat_body(text), "after")
            if again.cache == "HIT_EXACT" or time.monotonic() > deadline:
                break
        assert again.cache == "HIT_EXACT", "shared cache did not resume after Redis came back"
        assert answered(again)

    by_kind: dict[str, list[Sent]] = {}
    for s in line.sent:
        by_kind.setdefault(s.kind, []).append(s)
    summary = {k: Counter((s.status, s.cache) for s in v) for k, v in by_kind.items()}

    # cache traffic of a key without limits: never an error; while Redis is down nothing is
    # found in it (entries stored through the other proxy are missed, not errors)
    cache = by_kind["cache"]
    assert all(s.status == 200 and answered(s) for s in cache), summary
    down = [s for s in cache if line.while_down(s)]
    assert len(down) >= 10 and sum(s.warm for s in down) >= 5, summary
    hit_while_down = [(s.text, s.cache) for s in down if s.cache.startswith("HIT")]
    assert not hit_while_down, hit_while_down
    warm_before = [s for s in cache if s.warm and line.before_kill(s)]
    assert warm_before and all(s.cache == "HIT_EXACT" for s in warm_before), summary
    # and a hit is always the answer stored for that very question
    stored_answers = {s.text: s.body["choices"][0]["message"]["content"] for s in stored}
    for s in cache:
        if s.cache.startswith("HIT"):
            assert s.body["choices"][0]["message"]["content"] == stored_answers.get(s.text), s

    # a limited key, fail-closed: 503 with Retry-After while Redis is down, 200 otherwise
    closed = by_kind["closed"]
    assert all(s.status in (200, 503) for s in closed), summary
    assert all(s.status == 200 for s in closed if line.before_kill(s)), summary
    closed_down = [s for s in closed if line.while_down(s)]
    assert len(closed_down) >= 5, summary
    for s in closed_down:
        assert s.status == 503, summary
        assert s.retry_after is not None and int(s.retry_after) >= 1
        assert "limit store unavailable" in s.body["error"]["message"]
    closed_back = [s for s in closed if line.recovered(s)]
    assert closed_back and all(s.status == 200 for s in closed_back), summary

    # a limited key, fail-open: admitted throughout
    opened = by_kind["open"]
    assert len([s for s in opened if line.while_down(s)]) >= 5, summary
    assert all(s.status == 200 and answered(s) for s in opened), summary

    for proxy in (open_proxy, closed_proxy):
        log = await proxy.process.log_with("Redis unavailable", "Redis is back")
        assert "Redis unavailable" in log and "Redis is back" in log


# -- clients that hang up mid-stream -----------------------------------------------------

# about 20 s per answer: still streaming long after the client has hung up
SLOW_MINI = {"api": "openai", "ttft_ms": 5, "tokens_per_second": 4,
             "answer_words": {"min": 40, "max": 60}}  # fmt: skip


async def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return bool(condition())


async def hang_up_after_first_chunk(http: httpx.AsyncClient, key: str, text: str) -> str:
    """Stream a chat answer, read the first content chunk, close the connection; returns
    the text received."""
    body = {**chat_body(text), "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {key}"}) as r:  # fmt: skip
        assert r.status_code == 200, await r.aread()
        received = ""
        async for line in r.aiter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                received = line
                break
    return received  # leaving the block closes the (unfinished) response


@pytest.fixture
async def closed_client(redis_proxies: tuple[Proxy, Proxy]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=redis_proxies[1].base_url, timeout=20) as http:
        yield http


async def test_client_disconnect_mid_stream_cancels_upstream(
    redis_proxies: tuple[Proxy, Proxy], closed_client: httpx.AsyncClient, clean_sim: SimProvider
) -> None:
    """Three rounds of two streams (a key with max_parallel 2) whose clients hang up after
    the first chunk of a 20-second answer: each upstream stream is cancelled within seconds,
    the key's parallel slots are released, the half-read answer is not cached and the proxy
    keeps serving."""
    _, proxy = redis_proxies
    clean_sim.set_model("sim-gpt-mini", SLOW_MINI)
    texts = [unique("Explain how DNS resolution works") for _ in range(3 * MAX_PARALLEL)]
    for round_ in range(3):
        batch = texts[round_ * MAX_PARALLEL : (round_ + 1) * MAX_PARALLEL]
        got = await asyncio.gather(
            *[hang_up_after_first_chunk(closed_client, PARALLEL_KEY, t) for t in batch]
        )
        assert all(got), "no content before hanging up"
        closed = await wait_for(lambda: clean_sim.stats()["streams"]["open"] == 0, 5.0)
        assert closed, f"upstream streams still open after the client left: {clean_sim.stats()}"
    streams = clean_sim.stats()["streams"]
    assert streams["started"] == len(texts) and streams["cancelled"] == len(texts), streams
    assert streams["completed"] == 0

    clean_sim.set_model("sim-gpt-mini", FAST_MINI)
    # nothing was cached from the half-read streams
    r = await post_chat(closed_client, PARALLEL_KEY, chat_body(texts[0]), "repeat")
    assert r.status == 200 and answered(r), r.body
    assert r.cache == "MISS"
    # ...while a complete answer is (the query is cacheable)
    await asyncio.sleep(0.3)  # stored once the answer completed (after the response)
    r = await post_chat(closed_client, PARALLEL_KEY, chat_body(texts[0]), "repeat")
    assert r.cache in ("HIT_EXACT", "HIT_SEMANTIC"), r.cache
    # no parallel slot leaked: the key still gets MAX_PARALLEL requests in at once
    question = chat_body(unique("Explain what a mutex is for"))
    results = await asyncio.gather(
        *[post_chat(closed_client, PARALLEL_KEY, question, "after") for _ in range(MAX_PARALLEL)]
    )
    assert [s.status for s in results] == [200] * MAX_PARALLEL, [s.body for s in results]
    metrics = await closed_client.get(
        "/metrics", headers={"Authorization": f"Bearer {proxy.master_key}"}
    )
    assert metrics.status_code == 200 and "gateway_requests" in metrics.text
    assert clean_sim.stats()["streams"]["open"] == 0


# -- upstream faults: 30% of calls fail, fallbacks answer everything -----------------------

FAULTY = {  # the primary deployments (upstream model -> wire format); sim-gpt-mini stays healthy
    "sim-gpt-a": "openai", "sim-gpt-b": "openai", "sim-claude": "anthropic",
    "sim-gemini": "gemini",
}  # fmt: skip
# rules are tried in order, the first that fires wins: about 30% of calls fail in all
MIXED_FAULTS = [
    {"kind": "http_500", "rate": 0.09},
    {"kind": "http_429", "rate": 0.09, "retry_after_s": 0.2},
    {"kind": "timeout", "rate": 0.08, "hang_s": 30},
    {"kind": "drop", "rate": 0.09},  # non-streaming: half a body; streams: cut before any event
]
FAULT_KINDS = {"http_500", "http_429", "timeout", "drop"}
REQUESTS = 60
CONCURRENCY = 8


@dataclass
class Outcome:
    model: str
    stream: bool
    status: int = 0
    text: str = ""
    error: str = ""
    fallbacks: int = 0


async def one_request(client: openai.AsyncOpenAI, model: str, stream: bool, i: int) -> Outcome:
    out = Outcome(model, stream)
    messages: Any = [{"role": "user", "content": unique(f"Question {i} about gateways")}]
    try:
        if stream:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=messages, stream=True, extra_body=NO_CACHE
            )
            out.status = raw.status_code
            out.fallbacks = int(raw.headers.get("x-gateway-attempted-fallbacks") or 0)
            pieces = []
            async for chunk in raw.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
            out.text = "".join(pieces)
        else:
            raw_plain = await client.chat.completions.with_raw_response.create(
                model=model, messages=messages, extra_body=NO_CACHE
            )
            out.status = raw_plain.status_code
            out.fallbacks = int(raw_plain.headers.get("x-gateway-attempted-fallbacks") or 0)
            out.text = raw_plain.parse().choices[0].message.content or ""
    except openai.APIError as exc:
        out.status = getattr(exc, "status_code", None) or -1
        out.error = f"{type(exc).__name__}: {exc}"[:300]
    return out


async def test_thirty_percent_upstream_faults_every_request_answered(
    redis_proxies: tuple[Proxy, Proxy], clean_sim: SimProvider
) -> None:
    """60 requests (a third of them streamed), 8 at a time, to gpt-sim, claude-sim and
    gemini-sim while about 30% of their deployments' calls fail: every one is answered.
    (Last in this module: the cooldowns it causes would otherwise meet the other tests.)"""
    for model, api in FAULTY.items():
        clean_sim.set_model(model, {"api": api, "faults": MIXED_FAULTS})
    client = redis_proxies[1].client(timeout=30)
    gate = asyncio.Semaphore(CONCURRENCY)
    groups = ("gpt-sim", "claude-sim", "gemini-sim")

    async def limited(i: int) -> Outcome:
        async with gate:
            return await one_request(client, groups[i % 3], stream=i % 3 == 1 or i % 5 == 0, i=i)

    started = time.monotonic()
    try:
        outcomes = await asyncio.gather(*[limited(i) for i in range(REQUESTS)])
    finally:
        stats = clean_sim.stats()
        for model in FAULTY:
            clean_sim.clear_model(model)
    elapsed = time.monotonic() - started

    failed = [o for o in outcomes if o.status != 200 or not o.text.startswith(ANSWER_PREFIX)]
    why = Counter(f"{o.status} {o.error[:90]}" for o in failed)
    assert not failed, f"{len(failed)} of {REQUESTS} requests not answered: {why.most_common(4)}"
    assert sum(o.stream for o in outcomes) >= 15
    # the faults really happened, every kind of them, and fallbacks absorbed them
    faulted = sum(stats["by_fault"].values())
    calls_to_faulty = sum(stats["by_model"].get(m, 0) for m in FAULTY)
    assert set(stats["by_fault"]) == FAULT_KINDS, stats["by_fault"]
    assert 0.15 <= faulted / calls_to_faulty <= 0.45, (faulted, calls_to_faulty)
    assert sum(o.fallbacks > 0 for o in outcomes) >= 5
    assert elapsed < 50, f"{REQUESTS} requests took {elapsed:.1f}s"
