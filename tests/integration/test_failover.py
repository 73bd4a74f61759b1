"""Retries, fallbacks and cooldowns of the shipped router settings, with faults
injected in the simulated provider and requests sent through the real proxy.

The proxy here runs config/litellm.yaml with only the time constants shortened
(timeouts and cooldown), so the tests do not wait 30 s for a cooldown to end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest

from tests.support.stack import Proxy, SimProvider, derive_gateway_config, derive_litellm_config

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0
COOLDOWN_S = 5.0
ALLOWED_FAILS = 2  # config/litellm.yaml
ALL_CHAT_UPSTREAMS = ("sim-gpt-a", "sim-gpt-b", "sim-gpt-mini", "sim-claude", "sim-gemini")
ASK = [{"role": "user", "content": "Is the gateway up?"}]
ALWAYS_500 = {"faults": [{"kind": "http_500", "rate": 1.0}]}


@pytest.fixture(scope="module")
def fault_gateway(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    config = derive_litellm_config(
        tmp_path_factory.mktemp("failover") / "litellm.yaml",
        {"timeout": TIMEOUT_S, "stream_timeout": TIMEOUT_S, "cooldown_time": COOLDOWN_S},
    )
    tmp = tmp_path_factory.mktemp("failover-gateway")
    gateway_config = derive_gateway_config(tmp, lambda data: data["cache"].update(enabled=False))
    proxy = Proxy(log_dir, sim, litellm_config=config, gateway_config=gateway_config,
                  name="failover-proxy").start()  # fmt: skip
    yield proxy
    proxy.stop()


@pytest.fixture
async def faults(sim: SimProvider) -> AsyncIterator[SimProvider]:
    """Clean provider; after the test, wait out any cooldown the test caused."""
    sim.reset()
    yield sim
    sim.reset()
    await asyncio.sleep(COOLDOWN_S + 0.5)


async def test_primary_500_fails_over_and_headers_tell(
    fault_gateway: Proxy, faults: SimProvider
) -> None:
    faults.set_model("sim-claude", ALWAYS_500)
    raw = await fault_gateway.client().chat.completions.with_raw_response.create(
        model="claude-sim",
        messages=ASK,  # type: ignore[arg-type]
    )
    resp = raw.parse()
    assert (resp.choices[0].message.content or "").startswith("Simulated reply from sim-gemini")
    assert raw.headers["x-gateway-deployment"] == "gemini-sim"
    assert raw.headers["x-gateway-attempted-fallbacks"] == "1"
    assert faults.count("sim-claude") == 1  # no retry on 500 when a fallback exists


async def test_primary_timeout_fails_over_within_timeout(
    fault_gateway: Proxy, faults: SimProvider
) -> None:
    faults.set_model("sim-claude", {"faults": [{"kind": "timeout", "rate": 1.0, "hang_s": 60}]})
    started = time.monotonic()
    raw = await fault_gateway.client().chat.completions.with_raw_response.create(
        model="claude-sim",
        messages=ASK,  # type: ignore[arg-type]
    )
    elapsed = time.monotonic() - started
    assert raw.headers["x-gateway-deployment"] == "gemini-sim"
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 2.5, elapsed


async def test_429_is_retried_after_retry_after(fault_gateway: Proxy, faults: SimProvider) -> None:
    faults.set_model(
        "sim-gemini",
        {"faults": [{"kind": "http_429", "rate": 1.0, "first_n": 1, "retry_after_s": 1}]},
    )
    started = time.monotonic()
    raw = await fault_gateway.client().chat.completions.with_raw_response.create(
        model="gemini-sim",
        messages=ASK,  # type: ignore[arg-type]
    )
    elapsed = time.monotonic() - started
    assert raw.headers["x-gateway-deployment"] == "gemini-sim"  # the same model, not a fallback
    assert faults.count("sim-gemini") == 2
    assert elapsed >= 1.0, f"retried before Retry-After elapsed ({elapsed:.2f}s)"
    assert elapsed < 6.0


async def test_stream_fails_over_before_first_chunk(
    fault_gateway: Proxy, faults: SimProvider
) -> None:
    faults.set_model("sim-claude", ALWAYS_500)
    stream = await fault_gateway.client().chat.completions.create(
        model="claude-sim",
        messages=ASK,
        stream=True,  # type: ignore[arg-type]
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Simulated reply from sim-gemini")
    assert faults.count("sim-claude") == 1
    assert faults.count("sim-gemini") == 1


async def test_everything_down_is_a_prompt_openai_error(
    fault_gateway: Proxy, faults: SimProvider
) -> None:
    for model in ALL_CHAT_UPSTREAMS:
        faults.set_model(model, ALWAYS_500)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        await fault_gateway.client().chat.completions.create(
            model="gpt-sim",
            messages=ASK,  # type: ignore[arg-type]
        )
    assert time.monotonic() - started < 10
    assert info.value.status_code in {429, 500, 502, 503}
    body = info.value.body
    assert isinstance(body, dict) and "message" in body


async def test_everything_down_streaming_is_a_prompt_error(
    fault_gateway: Proxy, faults: SimProvider
) -> None:
    for model in ALL_CHAT_UPSTREAMS:
        faults.set_model(model, ALWAYS_500)
    started = time.monotonic()
    with pytest.raises(openai.APIError):
        stream = await fault_gateway.client().chat.completions.create(
            model="gpt-sim",
            messages=ASK,
            stream=True,  # type: ignore[arg-type]
        )
        async for _ in stream:
            pass
    assert time.monotonic() - started < 10


async def test_failing_deployment_is_cooled_down_then_returns(
    fault_gateway: Proxy, faults: SimProvider
) -> None:
    client = fault_gateway.client()
    faults.set_model("sim-gpt-a", ALWAYS_500)

    async def ask(n: int) -> None:
        for i in range(n):
            resp = await client.chat.completions.create(
                model="gpt-sim", messages=[{"role": "user", "content": f"q{i}"}]
            )
            assert resp.choices[0].message.content  # every request is answered

    for _ in range(40):  # until gpt-sim-a has failed more than allowed_fails times
        await ask(1)
        if faults.count("sim-gpt-a") > ALLOWED_FAILS:
            break
    cooled_at = time.monotonic()
    failed = faults.count("sim-gpt-a")
    assert failed == ALLOWED_FAILS + 1
    await ask(8)
    assert time.monotonic() - cooled_at < COOLDOWN_S, "too slow to observe the cooldown"
    assert faults.count("sim-gpt-a") == failed, "a cooled-down deployment got traffic"
    faults.clear_model("sim-gpt-a")
    await asyncio.sleep(max(0.0, cooled_at + COOLDOWN_S + 0.5 - time.monotonic()))
    await ask(16)
    assert faults.count("sim-gpt-a") > failed, "deployment did not return after its cooldown"
