"""Rate limits through the real proxy: 429s, team limits, exactness across two proxies
sharing one Redis, and the Redis-down policy (fail-closed by default)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.integration.test_access import As
from tests.integration.test_cache import chat, stream, unique
from tests.support.redis_server import RedisServer
from tests.support.stack import NO_CACHE, Proxy, SimProvider, derive_gateway_config, proxy_pair

pytestmark = pytest.mark.integration

KEY_A, KEY_B, KEY_SOLO = "sk-test-limit-a-11", "sk-test-limit-b-22", "sk-test-limit-solo-33"
KEY_SPENDER = "sk-test-limit-spender-44"
KEY_TOKENS = "sk-test-limit-tokens-55"
BUDGET_USD = 0.001
# Budget requests cap the answer at 25 tokens (20 simulated words are almost surely longer), so
# each costs 25 x $0.00001 plus a few prompt tokens, about $0.00028: the 4th answer
# crosses the budget, whatever words the simulated provider draws.
SPEND_MAX_TOKENS = 25
RPM = 4


def limited_config(tmp: Path, redis_url: str) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["redis"] = {"url": redis_url, "socket_timeout_ms": 200, "retry_after_s": 0.5}
        data["access"] = {
            "limits": {"store": "redis", "on_redis_failure": "closed"},
            "teams": {"shared": {"rpm": RPM}},
            "keys": [
                {"alias": "a", "owner": "o", "team": "shared", "env": "TEST_LIMIT_A"},
                {"alias": "b", "owner": "o", "team": "shared", "env": "TEST_LIMIT_B"},
                {"alias": "solo", "owner": "o", "env": "TEST_LIMIT_SOLO", "rpm": RPM},
                {"alias": "spender", "owner": "o", "env": "TEST_LIMIT_SPENDER",
                 "daily_budget_usd": BUDGET_USD},
                {"alias": "tokens", "owner": "o", "env": "TEST_LIMIT_TOKENS", "tpm": 30},
            ],
        }  # fmt: skip

    return derive_gateway_config(tmp, edit)


ENV = {"TEST_LIMIT_A": KEY_A, "TEST_LIMIT_B": KEY_B, "TEST_LIMIT_SOLO": KEY_SOLO,
       "TEST_LIMIT_SPENDER": KEY_SPENDER, "TEST_LIMIT_TOKENS": KEY_TOKENS}  # fmt: skip


@pytest.fixture(scope="module")
def limit_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("limit-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limited_pair(
    log_dir: Path, sim: SimProvider, limit_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proxy, Proxy]]:  # fmt: skip
    config = limited_config(tmp_path_factory.mktemp("limits"), limit_redis.url)
    yield from proxy_pair(log_dir, sim, config, "limits", ENV)


@pytest.fixture
def fresh_window(limit_redis: RedisServer) -> None:
    """Empty counters, and at least 20 s left in the current minute (limits count per
    calendar minute: a test must not straddle two windows)."""
    import time

    import redis

    into_minute = time.time() % 60
    if into_minute > 40:
        time.sleep(60.5 - into_minute)
    redis.Redis.from_url(limit_redis.url).flushdb()


async def attempt(proxy: Proxy, key: str) -> str:
    try:
        await chat(As(proxy, key), "gpt-sim", unique("limit probe"), extra_body=NO_CACHE)
    except openai.RateLimitError as exc:
        assert "Rate limit reached" in str(exc)
        assert int(exc.response.headers["retry-after"]) >= 1
        return "429"
    return "200"


async def test_rpm_refuses_with_rate_limit_error(
    limited_pair: tuple[Proxy, Proxy], fresh_window: None
) -> None:
    one, _ = limited_pair
    results = [await attempt(one, KEY_SOLO) for _ in range(RPM + 2)]
    assert results == ["200"] * RPM + ["429"] * 2


async def test_team_limit_shared_by_two_keys(
    limited_pair: tuple[Proxy, Proxy], fresh_window: None
) -> None:
    one, _ = limited_pair
    results = [await attempt(one, key) for key in (KEY_A, KEY_B) * RPM]
    assert results.count("200") == RPM and results[:RPM] == ["200"] * RPM


async def test_limit_is_exact_across_two_proxies(
    limited_pair: tuple[Proxy, Proxy], fresh_window: None
) -> None:
    one, two = limited_pair
    results = await asyncio.gather(*[attempt(p, KEY_SOLO) for p in (one, two) * RPM])
    assert results.count("200") == RPM and results.count("429") == RPM


async def test_cache_hits_count_too(limited_pair: tuple[Proxy, Proxy], fresh_window: None) -> None:
    """Admission comes before the cache: a cache hit is a request like any other."""
    one, _ = limited_pair
    text = unique("cached question")
    for _ in range(RPM):
        await chat(As(one, KEY_SOLO), "gpt-sim", text)
    with pytest.raises(openai.RateLimitError):
        await chat(As(one, KEY_SOLO), "gpt-sim", text)


async def test_redis_down_fails_closed(
    limited_pair: tuple[Proxy, Proxy], limit_redis: RedisServer
) -> None:
    one, _ = limited_pair
    limit_redis.kill()
    try:
        with pytest.raises(openai.InternalServerError) as info:
            await chat(As(one, KEY_SOLO), "gpt-sim", unique("while redis is down"))
        assert info.value.status_code == 503
        assert "limit store unavailable" in str(info.value)
        answer, _, _ = await chat(one, "gpt-sim", unique("master key: no limits"))
        assert answer.startswith("Simulated reply")
    finally:
        limit_redis.start()
    await asyncio.sleep(0.7)
    assert await attempt(one, KEY_SOLO) == "200"


async def test_budget_exhausted_on_one_proxy_refuses_on_both(
    limited_pair: tuple[Proxy, Proxy], fresh_window: None
) -> None:
    one, two = limited_pair
    answered = 0
    for _ in range(10):
        try:
            await chat(
                As(one, KEY_SPENDER),
                "gpt-sim",
                unique("spend"),
                extra_body=NO_CACHE,
                max_tokens=SPEND_MAX_TOKENS,
            )
        except openai.RateLimitError as exc:
            message = str(exc)
            assert "daily budget of key:spender ($0.00)" in message and "resets at" in message
            assert int(exc.response.headers["retry-after"]) >= 1
            break
        answered += 1
        await asyncio.sleep(0.3)  # spend is charged when LiteLLM logs the answer
    else:
        pytest.fail("the budget never ran out")
    assert 3 <= answered <= 5  # 4 when each charge lands before the next request
    with pytest.raises(openai.RateLimitError):
        await chat(As(two, KEY_SPENDER), "gpt-sim", unique("spend elsewhere"), extra_body=NO_CACHE)


async def test_tokens_per_minute_count_streamed_usage(
    limited_pair: tuple[Proxy, Proxy], fresh_window: None
) -> None:
    """A streamed answer's tokens (about 40-80 here) use up a 30-token-per-minute key."""
    one, two = limited_pair
    pieces, _ = await stream(As(one, KEY_TOKENS), "gpt-sim", unique("tokens"),
                             extra_body=NO_CACHE)  # fmt: skip
    assert pieces
    await asyncio.sleep(0.5)  # counted when LiteLLM logs the completed stream
    with pytest.raises(openai.RateLimitError) as info:
        await chat(As(two, KEY_TOKENS), "gpt-sim", unique("more tokens"), extra_body=NO_CACHE)
    assert "tokens per minute" in str(info.value)
